#pragma once
/// \file
/// The batched coupling-flow pipeline behind `GpuFlow`, written once over an *executor*:
///
///   exec.for_each(n, f)      calls f(e) for e in [0, n)   (GPU: one thread per e)
///   exec.gemm(...), gemv(...)  column-major BLAS semantics (GPU: cuBLAS)
///   exec.copy / zero / asum, and Exec::Buffer<T> for memory
///
/// fort/cuda/exec.hpp provides the CUDA executor; `HostExec` below is a plain-loop one. The CPU
/// tests run this whole pipeline through HostExec and compare it with the CPU layers, which
/// checks the index arithmetic, the BLAS argument mapping and the backward passes of exactly the
/// code the GPU runs. Only the executor differs.
///
/// Data: [N, D] row-major. A row-major [N, C] matrix is a column-major [C, N] matrix, so with
/// weights W row-major [out, in] (MLP layout) one dense layer Z = H Wᵀ + b is the column-major
/// product Zᵀ = op(W) Hᵀ with op = transpose: gemm(T, N, out, N, in, W, lda = in, H, ldb = in).
///
/// Element kernels run one thread per (sample, transformed coordinate) in row-major order, so
/// consecutive threads touch consecutive conditioner outputs; per-sample log-dets are summed
/// afterwards by a per-row pass over [N, B] in coordinate order (the CPU layer's order).

#include <cmath>
#include <cstdint>
#include <vector>

#include "fort/core/random.hpp"
#include "fort/cuda/flow_view.hpp"
#include "fort/train/loss.hpp"
#include "fort/train/optimizer.hpp"

namespace fort::cuda {

namespace kernels {

using I64 = std::int64_t;

/// out[i, j] = x[i, idx[j]]   (e = i·P + j)
template <class S>
struct Gather {
  const S* x;
  const std::int32_t* idx;
  S* out;
  std::int32_t D, P;
  FORT_HOST_DEVICE void operator()(I64 e) const {
    const I64 i = e / P, j = e % P;
    out[e] = x[i * D + idx[j]];
  }
};

/// dst[i, idx[j]] += src[i, j]
template <class S>
struct ScatterAdd {
  const S* src;
  const std::int32_t* idx;
  S* dst;
  std::int32_t D, P;
  FORT_HOST_DEVICE void operator()(I64 e) const {
    const I64 i = e / P, j = e % P;
    dst[i * D + idx[j]] += src[e];
  }
};

/// Hidden layer epilogue: z += b (z kept as the pre-activation), h = act(z) (+ h_prev).
template <class S>
struct BiasActivation {
  S* z;
  const S* b;
  const S* h_prev;  // non-null for a residual layer
  S* h;
  std::int32_t out;
  Activation act;
  FORT_HOST_DEVICE void operator()(I64 e) const {
    const S v = z[e] + b[e % out];
    z[e] = v;
    h[e] = detail::activate(act, v) + (h_prev ? h_prev[e] : S(0));
  }
};

/// Last layer epilogue: z += b.
template <class S>
struct BiasAdd {
  S* z;
  const S* b;
  std::int32_t out;
  FORT_HOST_DEVICE void operator()(I64 e) const { z[e] += b[e % out]; }
};

/// dz = g · act'(pre)
template <class S>
struct ActivationBackward {
  const S* g;
  const S* pre;
  S* dz;
  Activation act;
  FORT_HOST_DEVICE void operator()(I64 e) const { dz[e] = g[e] * detail::activate_derivative(act, pre[e]); }
};

/// y += x
template <class S>
struct AddInPlace {
  const S* x;
  S* y;
  FORT_HOST_DEVICE void operator()(I64 e) const { y[e] += x[e]; }
};

/// One transformed element of a coupling, forward or inverse: e = i·B + j.
template <class Transform, bool Forward>
struct CouplingElement {
  using S = typename Transform::Scalar;
  Transform tr;
  const S* in;
  S* out;
  const S* theta;  // [N, B·k]
  const std::int32_t* trans;
  S* ld_elem;      // [N, B]
  std::int32_t D, B, k;
  FORT_HOST_DEVICE void operator()(I64 e) const {
    const I64 i = e / B, j = e % B;
    const I64 at = i * D + trans[j];
    S ld = 0;
    if constexpr (Forward) tr.forward(in[at], theta + e * k, out[at], ld);
    else tr.inverse(in[at], theta + e * k, out[at], ld);
    ld_elem[e] = ld;
  }
};

/// log_det[i] += Σ_j ld_elem[i, j], in coordinate order (as the CPU coupling sums).
template <class S>
struct RowSumAdd {
  const S* ld_elem;
  S* log_det;
  std::int32_t B;
  FORT_HOST_DEVICE void operator()(I64 i) const {
    S acc = 0;
    for (std::int32_t j = 0; j < B; ++j) acc += ld_elem[i * B + j];
    log_det[i] += acc;
  }
};

/// Backward of one transformed element (e = i·B + j), mirroring Coupling::backward:
/// forward:  dL/dx = a·y_x + b·ld_x,  dθ += a·y_θ + b·ld_θ   (a = dL/dy, b = dL/dld)
/// inverse:  dL/dy = (dL/dx − b·ld_x)/y_x,  dθ += −(dL/dy)·y_θ − b·ld_θ
/// `var` is the transform's own variable (the noise-side value in both directions).
/// dtheta must be zero on entry; each thread owns its k entries.
template <class Transform, bool Forward>
struct CouplingElementBackward {
  using S = typename Transform::Scalar;
  Transform tr;
  const S* var;
  const S* dout;
  const S* dld;
  S* din;
  const S* theta;
  S* dtheta;
  const std::int32_t* trans;
  std::int32_t D, B, k;
  FORT_HOST_DEVICE void operator()(I64 e) const {
    const I64 i = e / B, j = e % B;
    const I64 at = i * D + trans[j];
    const S* th = theta + e * k;
    S* g = dtheta + e * k;
    const S x = var[at];
    const S b = dld[i];
    const auto d = tr.partials(x, th);
    if constexpr (Forward) {
      const S a = dout[at];
      din[at] = a * d.dy_dx + b * d.dlog_det_dx;
      tr.pullback(x, th, d, a, b, g);
    } else {
      const S gy = (dout[at] - b * d.dlog_det_dx) / d.dy_dx;
      din[at] = gy;
      tr.pullback(x, th, d, -gy, -b, g);
    }
  }
};

/// The FORT regression loss and its gradient in one pass (e over the N·D elements; the first N
/// threads also handle the log-det term):
///   r = y − x1,  sq[e] = r²,  dL/dy[e] = c_reg·r      (c_reg = 2 w_reg / N)
///   ld_sq[i] = ld_i²,  dL/dld[i] = c_ld·ld_i          (c_ld = 2 λ_ld / N)
/// The two loss sums are reduced afterwards (exec.asum over sq and ld_sq).
template <class S>
struct RegressionLoss {
  const S* y;
  const S* x1;
  const S* ld;
  S* dL_dy;
  S* dL_dld;
  S* sq;
  S* ld_sq;
  S c_reg, c_ld;
  I64 n;
  FORT_HOST_DEVICE void operator()(I64 e) const {
    const S r = y[e] - x1[e];
    sq[e] = r * r;
    dL_dy[e] = c_reg * r;
    if (e < n) {
      ld_sq[e] = ld[e] * ld[e];
      dL_dld[e] = c_ld * ld[e];
    }
  }
};

/// Base draws: z[e] = normal draw number offset·D + e of `rng` (= Flow::sample_base's draws).
template <class S>
struct SampleNormal {
  Random rng;
  S* z;
  std::uint64_t first;
  FORT_HOST_DEVICE void operator()(I64 e) const { z[e] = S(rng.normal(first + std::uint64_t(e))); }
};

/// out[i] = log N(z_i) + sign·ld[i]   (sign −1: sampling, +1: log_prob)
template <class S>
struct BaseLogProb {
  StandardNormal<S> base;
  const S* z;
  const S* ld;
  S* out;
  std::int32_t D;
  S sign;
  FORT_HOST_DEVICE void operator()(I64 i) const { out[i] = base.log_prob_point(z + i * D) + sign * ld[i]; }
};

/// One Adam/AdamW update, the same arithmetic as fort::detail::Adam::step.
template <class S>
struct AdamUpdate {
  S* params;
  const S* grad;
  S* m;
  S* v;
  S b1, b2, wd, decay, step_size, inv_sqrt_c2, eps;
  bool coupled, decoupled;
  FORT_HOST_DEVICE void operator()(I64 k) const {
    const S g = coupled ? grad[k] + wd * params[k] : grad[k];
    m[k] = b1 * m[k] + (S(1) - b1) * g;
    v[k] = b2 * v[k] + (S(1) - b2) * g * g;
    if (decoupled) params[k] *= decay;
    params[k] -= step_size * m[k] / (std::sqrt(v[k]) * inv_sqrt_c2 + eps);
  }
};

template <class S>
struct Fill {
  S* p;
  S value;
  FORT_HOST_DEVICE void operator()(I64 e) const { p[e] = value; }
};

}  // namespace kernels

/// Plain-loop executor over host memory: the reference the CPU tests run the pipeline on.
struct HostExec {
  template <class T>
  using Buffer = std::vector<T>;

  template <class T>
  static T* data(Buffer<T>& b) { return b.data(); }
  template <class T>
  static const T* data(const Buffer<T>& b) { return b.data(); }
  template <class T>
  static void resize(Buffer<T>& b, Index n) { if (Index(b.size()) < n) b.resize(std::size_t(n)); }
  template <class T>
  void upload(Buffer<T>& b, const T* host, Index n) const { b.assign(host, host + n); }
  template <class T>
  void download(const T* src, T* host, Index n) const { std::copy(src, src + n, host); }

  template <class F>
  void for_each(Index n, const F& f) const {
    for (Index e = 0; e < n; ++e) f(std::int64_t(e));
  }
  template <class S>
  void copy(S* dst, const S* src, Index n) const { std::copy(src, src + n, dst); }
  template <class S>
  void zero(S* p, Index n) const { std::fill(p, p + n, S(0)); }
  template <class S>
  double asum(const S* p, Index n) const {
    double s = 0;
    for (Index i = 0; i < n; ++i) s += std::fabs(double(p[i]));
    return s;
  }
  /// C = α op(A) op(B) + β C, column-major (BLAS semantics).
  template <class S>
  void gemm(bool ta, bool tb, int m, int n, int k, S alpha, const S* A, int lda, const S* B, int ldb, S beta, S* C,
            int ldc) const {
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        S acc = 0;
        for (int l = 0; l < k; ++l) {
          const S a = ta ? A[l + std::int64_t(i) * lda] : A[i + std::int64_t(l) * lda];
          const S b = tb ? B[j + std::int64_t(l) * ldb] : B[l + std::int64_t(j) * ldb];
          acc += a * b;
        }
        S& c = C[i + std::int64_t(j) * ldc];
        c = alpha * acc + (beta == S(0) ? S(0) : beta * c);
      }
  }
  /// y = α op(A) x + β y, column-major A [m, n].
  template <class S>
  void gemv(bool ta, int m, int n, S alpha, const S* A, int lda, const S* x, S beta, S* y) const {
    const int rows = ta ? n : m, inner = ta ? m : n;
    for (int i = 0; i < rows; ++i) {
      S acc = 0;
      for (int l = 0; l < inner; ++l) acc += (ta ? A[l + std::int64_t(i) * lda] : A[i + std::int64_t(l) * lda]) * x[l];
      y[i] = alpha * acc + (beta == S(0) ? S(0) : beta * y[i]);
    }
  }
  void synchronize() const {}
};

/// The batched pipeline of a coupling flow on an executor. Raw pointers are in the executor's
/// memory. Workspace grows to the largest batch seen and is reused.
template <class Transform, class Exec>
class FlowEngine {
 public:
  using S = typename Transform::Scalar;
  template <class T>
  using Buffer = typename Exec::template Buffer<T>;

  FlowEngine(FlowLayout<Transform> layout, Exec exec) : layout_(std::move(layout)), exec_(std::move(exec)) {
    exec_.upload(couplings_, layout_.couplings.data(), layout_.size());
    exec_.upload(indices_, layout_.indices.data(), Index(layout_.indices.size()));
    exec_.upload(transforms_, layout_.transforms.data(), layout_.size());
    std::vector<S> zeros(std::size_t(layout_.num_params), S(0));
    exec_.upload(params_, zeros.data(), layout_.num_params);
    caches_.resize(std::size_t(layout_.size()));
  }

  const FlowLayout<Transform>& layout() const { return layout_; }
  Exec& exec() { return exec_; }
  const Exec& exec() const { return exec_; }
  Index dim() const { return layout_.dim; }
  Index num_params() const { return layout_.num_params; }
  Index size() const { return layout_.size(); }

  S* params() { return Exec::data(params_); }
  const S* params() const { return Exec::data(params_); }
  void set_params(const S* host) { exec_.upload(params_, host, num_params()); }
  void get_params(S* host) const { exec_.download(params(), host, num_params()); }

  /// A FlowView over this engine's memory (device memory for the CUDA executor).
  FlowView<Transform> view() const {
    return layout_.view(params(), Exec::data(couplings_), Exec::data(indices_), Exec::data(transforms_));
  }

  /// x = f(z), log_det = log|det ∂x/∂z| (overwritten). With `record`, keeps what
  /// backward_forward needs.
  void forward(const S* z, S* x, S* log_det, Index n, bool record = false) { run<true>(z, x, log_det, n, record); }

  /// z = f⁻¹(x), log_det = log|det ∂z/∂x| (overwritten). With `record`, keeps what
  /// backward_inverse needs.
  void inverse(const S* x, S* z, S* log_det, Index n, bool record = false) { run<false>(x, z, log_det, n, record); }

  /// VJP of the recorded forward: from dL/dx and dL/dld to dL/dz; *adds* dL/dθ into grad.
  void backward_forward(const S* dL_dx, const S* dL_dld, S* dL_dz, S* grad, Index n) {
    back<true>(dL_dx, dL_dld, dL_dz, grad, n);
  }
  /// VJP of the recorded inverse: from dL/dz and dL/dld to dL/dx; *adds* dL/dθ into grad.
  void backward_inverse(const S* dL_dz, const S* dL_dld, S* dL_dx, S* grad, Index n) {
    back<false>(dL_dz, dL_dld, dL_dx, grad, n);
  }

  /// FORT regression loss  w_reg·(1/N)Σ‖f(x0) − x1‖² + λ_ld·(1/N)Σ ld²  and, when `grad` is
  /// non-null, its gradient (overwritten). Other LossOptions terms are rejected.
  LossTerms regression_loss(const S* x0, const S* x1, Index n, const LossOptions& opt, S* grad) {
    opt.validate();
    detail::require(opt.lambda_fb == 0 && opt.beta_nll == 0 && opt.target_noise == 0, "cuda::regression_loss",
                    "only the regression and log-det terms run on the GPU (lambda_fb, beta_nll and target_noise "
                    "must be 0)");
    detail::require(n >= 1, "cuda::regression_loss", "batch must have at least one row, got ", n);
    const Index nd = n * dim();
    Exec::resize(y_, nd);
    Exec::resize(ld_, n);
    Exec::resize(dy_, nd);
    Exec::resize(dld_, n);
    Exec::resize(sq_, nd);
    Exec::resize(ldsq_, n);
    Exec::resize(dz_, nd);
    forward(x0, Exec::data(y_), Exec::data(ld_), n, grad != nullptr);
    const S c_reg = S(2.0 * opt.regression / double(n)), c_ld = S(2.0 * opt.lambda_log_det / double(n));
    exec_.for_each(nd, kernels::RegressionLoss<S>{Exec::data(y_), x1, Exec::data(ld_), Exec::data(dy_),
                                                  Exec::data(dld_), Exec::data(sq_), Exec::data(ldsq_), c_reg, c_ld,
                                                  std::int64_t(n)});
    LossTerms t;
    t.regression = exec_.asum(Exec::data(sq_), nd) / double(n);
    t.log_det = exec_.asum(Exec::data(ldsq_), n) / double(n);
    t.total = opt.regression * t.regression + opt.lambda_log_det * t.log_det;
    if (grad) {
      exec_.zero(grad, num_params());
      backward_forward(Exec::data(dy_), Exec::data(dld_), Exec::data(dz_), grad, n);
    }
    return t;
  }

  /// n samples (draws offset.. of `rng`, the CPU flow's draws) and their log-densities.
  void sample_and_log_prob(const Random& rng, std::uint64_t offset, Index n, S* x, S* log_p) {
    const Index nd = n * dim();
    Exec::resize(z_, nd);
    Exec::resize(ld_, n);
    exec_.for_each(nd, kernels::SampleNormal<S>{rng, Exec::data(z_), offset * std::uint64_t(dim())});
    forward(Exec::data(z_), x, Exec::data(ld_), n);
    exec_.for_each(n, kernels::BaseLogProb<S>{base(), Exec::data(z_), Exec::data(ld_), log_p, std::int32_t(dim()),
                                              S(-1)});
  }

  /// log p(x) per row.
  void log_prob(const S* x, Index n, S* log_p) {
    const Index nd = n * dim();
    Exec::resize(z_, nd);
    Exec::resize(ld_, n);
    inverse(x, Exec::data(z_), Exec::data(ld_), n);
    exec_.for_each(n, kernels::BaseLogProb<S>{base(), Exec::data(z_), Exec::data(ld_), log_p, std::int32_t(dim()),
                                              S(1)});
  }

 private:
  /// What one coupling keeps from a recorded pass.
  struct Cache {
    std::vector<Buffer<S>> h;    ///< input of each dense layer (h[0] = gathered passed coordinates)
    std::vector<Buffer<S>> pre;  ///< pre-activation of each hidden layer
    Buffer<S> theta;             ///< conditioner output [N, out]
  };

  StandardNormal<S> base() const { return StandardNormal<S>(dim()); }

  /// Conditioner MLP of coupling c on its gathered input h[0]; writes cache.theta.
  void conditioner(const CouplingDesc& d, Cache& cc, Index n) {
    const S* p = params() + d.param_offset;
    for (std::int32_t k = 0; k <= d.depth; ++k) {
      const int in = d.layer_in(k), out = d.layer_out(k);
      const S* W = p + d.layer_offset(k);
      const S* b = W + std::int64_t(in) * out;
      S* z = (k == d.depth) ? Exec::data(cc.theta) : Exec::data(cc.pre[std::size_t(k)]);
      exec_.gemm(true, false, out, int(n), in, S(1), W, in, Exec::data(cc.h[std::size_t(k)]), in, S(0), z, out);
      if (k == d.depth) {
        exec_.for_each(n * out, kernels::BiasAdd<S>{z, b, out});
      } else {
        const S* prev = d.layer_residual(k) ? Exec::data(cc.h[std::size_t(k)]) : nullptr;
        exec_.for_each(n * out, kernels::BiasActivation<S>{z, b, prev, Exec::data(cc.h[std::size_t(k) + 1]), out,
                                                           Activation(d.activation)});
      }
    }
  }

  void size_cache(const CouplingDesc& d, Cache& cc, Index n) {
    cc.h.resize(std::size_t(d.depth) + 1);
    cc.pre.resize(std::size_t(d.depth));
    for (std::int32_t k = 0; k <= d.depth; ++k) Exec::resize(cc.h[std::size_t(k)], n * d.layer_in(k));
    for (std::int32_t k = 0; k < d.depth; ++k) Exec::resize(cc.pre[std::size_t(k)], n * d.layer_out(k));
    Exec::resize(cc.theta, n * d.out);
  }

  template <bool Forward>
  void run(const S* in, S* out, S* log_det, Index n, bool record) {
    const Index C = size(), D = dim(), nd = n * D;
    if (n == 0) return;
    // states[c] is the noise-side value of coupling c, states[C] the data side; recorded passes
    // keep all of them, plain passes ping-pong between two.
    Exec::resize(states_, (record ? C + 1 : 2) * nd);
    recorded_n_ = record ? n : 0;
    exec_.zero(log_det, n);
    const std::int32_t* idx = Exec::data(indices_);
    for (Index s = 0; s < C; ++s) {
      const Index c = Forward ? s : C - 1 - s;
      const CouplingDesc& d = layout_.couplings[std::size_t(c)];
      // Source and destination of this step.
      const S* src;
      S* dst;
      if (record) {
        S* base_ptr = Exec::data(states_);
        if (s == 0) exec_.copy(base_ptr + (Forward ? 0 : C) * nd, in, nd);
        src = base_ptr + (Forward ? c : c + 1) * nd;
        dst = base_ptr + (Forward ? c + 1 : c) * nd;
      } else {
        src = s == 0 ? in : Exec::data(states_) + ((s + 1) % 2) * nd;
        dst = Exec::data(states_) + (s % 2) * nd;
      }
      Cache& cc = record ? caches_[std::size_t(c)] : scratch_cache_;
      size_cache(d, cc, n);
      exec_.for_each(n * d.n_pass, kernels::Gather<S>{src, idx + d.pass_offset, Exec::data(cc.h[0]), std::int32_t(D),
                                                      d.n_pass});
      conditioner(d, cc, n);
      exec_.copy(dst, src, nd);
      Exec::resize(ld_elem_, n * d.n_trans);
      const std::int32_t k = std::int32_t(layout_.transforms[std::size_t(c)].params_per_dim());
      exec_.for_each(n * d.n_trans, kernels::CouplingElement<Transform, Forward>{
                                        layout_.transforms[std::size_t(c)], src, dst, Exec::data(cc.theta),
                                        idx + d.trans_offset, Exec::data(ld_elem_), std::int32_t(D), d.n_trans, k});
      exec_.for_each(n, kernels::RowSumAdd<S>{Exec::data(ld_elem_), log_det, d.n_trans});
    }
    const S* last = record ? Exec::data(states_) + (Forward ? C : 0) * nd : Exec::data(states_) + ((C - 1) % 2) * nd;
    exec_.copy(out, last, nd);
  }

  template <bool Forward>
  void back(const S* dout_in, const S* dld, S* din_out, S* grad, Index n) {
    detail::require(recorded_n_ == n && n > 0, "cuda::FlowEngine",
                    "backward called without a recorded pass on a batch of ", n, " rows");
    const Index C = size(), D = dim(), nd = n * D;
    Exec::resize(grads_, 2 * nd);
    Exec::resize(ones_, n);
    exec_.for_each(n, kernels::Fill<S>{Exec::data(ones_), S(1)});
    const std::int32_t* idx = Exec::data(indices_);
    const S* g = dout_in;
    for (Index s = 0; s < C; ++s) {
      // Backward of forward visits couplings last to first; backward of inverse first to last.
      const Index c = Forward ? C - 1 - s : s;
      const CouplingDesc& d = layout_.couplings[std::size_t(c)];
      Cache& cc = caches_[std::size_t(c)];
      S* gin = (s + 1 == C) ? din_out : Exec::data(grads_) + (s % 2) * nd;
      const S* var = Exec::data(states_) + c * nd;
      const std::int32_t k = std::int32_t(layout_.transforms[std::size_t(c)].params_per_dim());
      Exec::resize(dtheta_, n * d.out);
      exec_.zero(Exec::data(dtheta_), n * d.out);
      exec_.copy(gin, g, nd);
      exec_.for_each(n * d.n_trans, kernels::CouplingElementBackward<Transform, Forward>{
                                        layout_.transforms[std::size_t(c)], var, g, dld, gin, Exec::data(cc.theta),
                                        Exec::data(dtheta_), idx + d.trans_offset, std::int32_t(D), d.n_trans, k});
      conditioner_backward(d, cc, n, grad + d.param_offset);
      // dL/d(passed) is in gbuf_ [N, n_pass]
      exec_.for_each(n * d.n_pass, kernels::ScatterAdd<S>{Exec::data(gbuf_[0]), idx + d.pass_offset, gin,
                                                          std::int32_t(D), d.n_pass});
      g = gin;
    }
  }

  /// MLP backward from dtheta_: adds parameter gradients at `gp`, leaves dL/dinput in gbuf_[0].
  void conditioner_backward(const CouplingDesc& d, Cache& cc, Index n, S* gp) {
    const S* p = params() + d.param_offset;
    const Index widest = std::max<Index>({Index(d.out), Index(d.width), Index(d.n_pass)});
    for (auto& b : gbuf_) Exec::resize(b, n * widest);
    Exec::resize(dzbuf_, n * widest);
    const S* g = Exec::data(dtheta_);
    int cur = 1;  // gbuf_ index that receives the next g
    for (std::int32_t k = d.depth; k >= 0; --k) {
      const int in = d.layer_in(k), out = d.layer_out(k);
      const S* W = p + d.layer_offset(k);
      S* gW = gp + d.layer_offset(k);
      S* gb = gW + std::int64_t(in) * out;
      const S* dz = g;
      if (k < d.depth) {
        exec_.for_each(n * out, kernels::ActivationBackward<S>{g, Exec::data(cc.pre[std::size_t(k)]),
                                                               Exec::data(dzbuf_), Activation(d.activation)});
        dz = Exec::data(dzbuf_);
      }
      const S* h = Exec::data(cc.h[std::size_t(k)]);
      // dW (col-major [in, out]) += Hᵀ(col-major [in, N]) · dZ(col-major [out, N])ᵀ
      exec_.gemm(false, true, in, out, int(n), S(1), h, in, dz, out, S(1), gW, in);
      // db += Σ_i dz[i, :]
      exec_.gemv(false, out, int(n), S(1), dz, out, Exec::data(ones_), S(1), gb);
      // g_prev (col-major [in, N]) = Wᵀ(col-major [in, out]) · dZ(col-major [out, N])
      const int target = (k == 0) ? 0 : cur;
      S* gprev = Exec::data(gbuf_[std::size_t(target)]);
      exec_.gemm(false, false, in, int(n), out, S(1), W, in, dz, out, S(0), gprev, in);
      if (d.layer_residual(k)) exec_.for_each(n * in, kernels::AddInPlace<S>{g, gprev});
      g = gprev;
      cur = (target == 1) ? 2 : 1;
    }
  }

  FlowLayout<Transform> layout_;
  Exec exec_;
  Buffer<CouplingDesc> couplings_;
  Buffer<std::int32_t> indices_;
  Buffer<Transform> transforms_;
  Buffer<S> params_;
  Buffer<S> states_, ld_elem_, dtheta_, grads_, ones_, dzbuf_;
  Buffer<S> y_, ld_, dy_, dld_, sq_, ldsq_, dz_, z_;
  Buffer<S> gbuf_[3];
  std::vector<Cache> caches_;
  Cache scratch_cache_;
  Index recorded_n_ = 0;
};

/// Adam / AdamW over an executor's memory: the update of fort's CPU optimizer (same options,
/// same arithmetic per parameter), one thread per parameter.
template <class S, class Exec>
class EngineAdam {
 public:
  EngineAdam(const Exec& exec, Index num_params, AdamOptions opt = {}) : exec_(exec), opt_(opt), n_(num_params) {
    opt_.validate();
    std::vector<S> zeros(std::size_t(n_), S(0));
    exec_.upload(m_, zeros.data(), n_);
    exec_.upload(v_, zeros.data(), n_);
  }
  const AdamOptions& options() const { return opt_; }
  Index steps() const { return t_; }

  /// One update of `params` (n values, executor memory) from `grad` at learning rate lr.
  void step(S* params, const S* grad, double lr) {
    detail::require(std::isfinite(lr) && lr >= 0, "cuda::Adam", "learning rate must be finite and >= 0, got ", lr);
    ++t_;
    const double c1 = 1.0 - std::pow(opt_.beta1, double(t_));
    const double c2 = 1.0 - std::pow(opt_.beta2, double(t_));
    kernels::AdamUpdate<S> u{params, grad, Exec::data(m_), Exec::data(v_), S(opt_.beta1), S(opt_.beta2),
                             S(opt_.weight_decay), S(1.0 - lr * opt_.weight_decay), S(lr / c1), S(1.0 / std::sqrt(c2)),
                             S(opt_.eps), opt_.weight_decay > 0 && !opt_.decoupled_weight_decay,
                             opt_.weight_decay > 0 && opt_.decoupled_weight_decay};
    exec_.for_each(n_, u);
  }

 private:
  Exec exec_;
  AdamOptions opt_;
  Index n_;
  typename Exec::template Buffer<S> m_, v_;
  Index t_ = 0;
};

}  // namespace fort::cuda
