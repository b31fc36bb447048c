#pragma once
/// \file
/// A flat, trivially copyable description of a coupling flow — `Flow<StandardNormal<S, D>,
/// Repeat<Coupling<T, D>>>` — and the per-sample functions that evaluate it from raw pointers.
///
/// This header needs no CUDA: `FlowLayout` (host, owns std::vectors) is built from a CPU flow,
/// and `FlowView` (pointers + sizes) reads it. Under nvcc every `FlowView` member is
/// `__host__ __device__`, so a user's kernel can call `sample_point` / `log_prob_point` per
/// particle or thread with the view's pointers in device memory (see fort/cuda/flow.hpp:
/// `GpuFlow::view()`). On the host the same code runs over host pointers; the CPU tests use that
/// to check the view against `Flow::forward_point` / `inverse_point`.
///
/// The element transforms (affine, additive, rational-quadratic) are the very `FORT_HOST_DEVICE`
/// member functions the CPU coupling layer calls, so there is one implementation of that math.

#include <cstdint>
#include <vector>

#include "fort/core/config.hpp"
#include "fort/core/random.hpp"
#include "fort/flows/distributions.hpp"
#include "fort/flows/flow.hpp"
#include "fort/flows/repeat.hpp"
#include "fort/layers/coupling.hpp"
#include "fort/nn/activation.hpp"

namespace fort::cuda {

/// One coupling layer of a flow, as plain integers (offsets into the flow's arrays).
struct CouplingDesc {
  std::int32_t param_offset;  ///< first parameter of this coupling's conditioner in the flow params
  std::int32_t n_pass;        ///< passed-through coordinates (= conditioner input size)
  std::int32_t n_trans;       ///< transformed coordinates
  std::int32_t pass_offset;   ///< into FlowView::indices: n_pass coordinate indices
  std::int32_t trans_offset;  ///< into FlowView::indices: n_trans coordinate indices
  std::int32_t depth;         ///< hidden layers of the conditioner
  std::int32_t width;         ///< hidden units
  std::int32_t activation;    ///< fort::Activation as int
  std::int32_t residual;      ///< MLPConfig::residual
  std::int32_t out;           ///< conditioner outputs = n_trans · params_per_dim

  /// Input size of dense layer k (0 ≤ k ≤ depth).
  FORT_HOST_DEVICE std::int32_t layer_in(std::int32_t k) const { return k == 0 ? n_pass : width; }
  /// Output size of dense layer k.
  FORT_HOST_DEVICE std::int32_t layer_out(std::int32_t k) const { return k == depth ? out : width; }
  /// Offset of dense layer k's weights inside this coupling's parameter block (W then b).
  FORT_HOST_DEVICE std::int32_t layer_offset(std::int32_t k) const {
    std::int32_t off = 0;
    for (std::int32_t i = 0; i < k; ++i) off += layer_in(i) * layer_out(i) + layer_out(i);
    return off;
  }
  /// Same rule as MLP: skip connection between equal-size hidden layers only.
  FORT_HOST_DEVICE bool layer_residual(std::int32_t k) const {
    return residual != 0 && k < depth && layer_in(k) == layer_out(k);
  }
};

/// Pointers and sizes of a coupling flow. Trivially copyable: pass it to a kernel by value.
/// All pointers must be readable where the member functions run (device memory on the GPU).
template <class Transform>
struct FlowView {
  using Scalar = typename Transform::Scalar;
  using S = Scalar;

  const S* params = nullptr;                ///< the flow's flat parameter vector
  const CouplingDesc* couplings = nullptr;  ///< n_couplings entries, forward order
  const std::int32_t* indices = nullptr;    ///< mask coordinate lists
  const Transform* transforms = nullptr;    ///< one element transform per coupling
  std::int32_t dim = 0;
  std::int32_t n_couplings = 0;
  std::int32_t scratch_size = 0;  ///< scalars of scratch the *_point functions need

  /// x = f(z) for one sample; log_det = log|det ∂x/∂z|. `scratch` holds scratch_size scalars.
  FORT_HOST_DEVICE void forward_point(const S* z, S* x, S& log_det, S* scratch) const {
    point<true>(z, x, log_det, scratch);
  }

  /// z = f⁻¹(x) for one sample; log_det = log|det ∂z/∂x|.
  FORT_HOST_DEVICE void inverse_point(const S* x, S* z, S& log_det, S* scratch) const {
    point<false>(x, z, log_det, scratch);
  }

  /// log p(x) of one sample (inverse pass).
  FORT_HOST_DEVICE S log_prob_point(const S* x, S* scratch) const {
    S* z = scratch;
    S ld = 0;
    point<false>(x, z, ld, scratch + dim);
    return base_log_prob(z) + ld;
  }

  /// Draws sample `index` of `rng` (the same draws as the CPU Flow::sample_point) into x and
  /// returns its log-density.
  FORT_HOST_DEVICE S sample_point(const Random& rng, std::uint64_t index, S* x, S* scratch) const {
    S* z = scratch;
    for (std::int32_t j = 0; j < dim; ++j) z[j] = S(rng.normal(index * std::uint64_t(dim) + std::uint64_t(j)));
    S ld = 0;
    point<true>(z, x, ld, scratch + dim);
    return base_log_prob(z) - ld;
  }

  /// log N(z; 0, I), summed in the same order as StandardNormal::log_prob_point.
  FORT_HOST_DEVICE S base_log_prob(const S* z) const {
    S sq = 0;
    for (std::int32_t j = 0; j < dim; ++j) sq += z[j] * z[j];
    return S(-0.5) * sq - S(0.5 * detail::log_two_pi) * S(dim);
  }

 private:
  // Scratch layout (scalars): [z or two state buffers: 2·dim] [passed: max n_pass]
  // [theta: max out] [MLP: 2·max width]; sizes fixed by FlowLayout::scratch_size().
  template <bool Forward>
  FORT_HOST_DEVICE void point(const S* in, S* out, S& log_det, S* scratch) const {
    log_det = 0;
    S* bufs[2] = {scratch, scratch + dim};
    std::int32_t max_pass = 0, max_out = 0;
    for (std::int32_t c = 0; c < n_couplings; ++c) {
      max_pass = couplings[c].n_pass > max_pass ? couplings[c].n_pass : max_pass;
      max_out = couplings[c].out > max_out ? couplings[c].out : max_out;
    }
    S* passed = scratch + 2 * dim;
    S* theta = passed + max_pass;
    S* mlp = theta + max_out;
    const S* cur = in;
    for (std::int32_t s = 0; s < n_couplings; ++s) {
      const std::int32_t c = Forward ? s : n_couplings - 1 - s;
      S* next = (s + 1 == n_couplings) ? out : bufs[s % 2];
      coupling_point<Forward>(couplings[c], transforms[c], cur, next, log_det, passed, theta, mlp);
      cur = next;
    }
  }

  template <bool Forward>
  FORT_HOST_DEVICE void coupling_point(const CouplingDesc& d, const Transform& tr, const S* in, S* out, S& log_det,
                                       S* passed, S* theta, S* mlp) const {
    const std::int32_t* pa = indices + d.pass_offset;
    const std::int32_t* tc = indices + d.trans_offset;
    for (std::int32_t j = 0; j < d.n_pass; ++j) passed[j] = in[pa[j]];
    conditioner_point(d, passed, theta, mlp);
    for (std::int32_t j = 0; j < d.n_pass; ++j) out[pa[j]] = in[pa[j]];
    const std::int32_t k = std::int32_t(tr.params_per_dim());
    for (std::int32_t j = 0; j < d.n_trans; ++j) {
      if constexpr (Forward) tr.forward(in[tc[j]], theta + j * k, out[tc[j]], log_det);
      else tr.inverse(in[tc[j]], theta + j * k, out[tc[j]], log_det);
    }
  }

  /// The conditioner MLP on one input, as MLP::forward_point computes it.
  FORT_HOST_DEVICE void conditioner_point(const CouplingDesc& d, const S* x, S* y, S* scratch) const {
    const S* p = params + d.param_offset;
    const std::int32_t w = d.width > 1 ? d.width : 1;
    S* bufs[2] = {scratch, scratch + w};
    const S* h = x;
    const Activation act = Activation(d.activation);
    for (std::int32_t k = 0; k <= d.depth; ++k) {
      const std::int32_t in = d.layer_in(k), nout = d.layer_out(k);
      const S* W = p + d.layer_offset(k);
      const S* b = W + in * nout;
      S* z = (k == d.depth) ? y : bufs[k % 2];
      for (std::int32_t i = 0; i < nout; ++i) {
        S acc = 0;
        for (std::int32_t j = 0; j < in; ++j) acc += W[i * in + j] * h[j];
        z[i] = acc + b[i];
      }
      if (k < d.depth) {
        const bool skip = d.layer_residual(k);
        for (std::int32_t i = 0; i < nout; ++i) z[i] = detail::activate(act, z[i]) + (skip ? h[i] : S(0));
      }
      h = z;
    }
  }
};

/// Host-side arrays behind a FlowView, built from a CPU coupling flow. The GPU flow uploads
/// these; `host_view(params)` points a view at them for CPU use.
template <class Transform>
struct FlowLayout {
  using S = typename Transform::Scalar;
  std::vector<CouplingDesc> couplings;
  std::vector<std::int32_t> indices;
  std::vector<Transform> transforms;
  Index dim = 0;
  Index num_params = 0;

  FlowLayout() = default;

  /// From a CPU flow whose layers are `Repeat<Coupling<Transform, D>>` over a standard normal.
  template <int D>
  explicit FlowLayout(const Flow<StandardNormal<S, D>, Repeat<Coupling<Transform, D>>>& flow)
      : FlowLayout(flow.transform()) {}

  template <int D>
  explicit FlowLayout(const Repeat<Coupling<Transform, D>>& layers) {
    dim = layers.dim();
    num_params = layers.num_params();
    for (Index i = 0; i < layers.size(); ++i) {
      const auto& c = layers.block(i);
      const auto& mlp = c.conditioner();
      CouplingDesc d{};
      d.param_offset = narrow(layers.param_offset(i));
      d.n_pass = narrow(Index(c.mask().passed().size()));
      d.n_trans = narrow(Index(c.mask().transformed().size()));
      d.pass_offset = narrow(Index(indices.size()));
      for (Index v : c.mask().passed()) indices.push_back(narrow(v));
      d.trans_offset = narrow(Index(indices.size()));
      for (Index v : c.mask().transformed()) indices.push_back(narrow(v));
      d.depth = narrow(mlp.config().depth);
      d.width = narrow(mlp.config().width);
      d.activation = std::int32_t(mlp.config().activation);
      d.residual = mlp.config().residual ? 1 : 0;
      d.out = narrow(mlp.out());
      detail::require(d.layer_offset(d.depth + 1) == narrow(mlp.num_params()), "cuda::FlowLayout",
                      "conditioner parameter layout of coupling ", i, " is not the expected MLP layout");
      couplings.push_back(d);
      transforms.push_back(c.transform());
    }
  }

  Index size() const { return Index(couplings.size()); }
  Index max_pass() const { return max_of([](const CouplingDesc& d) { return d.n_pass; }); }
  Index max_out() const { return max_of([](const CouplingDesc& d) { return d.out; }); }
  Index max_width() const { return max_of([](const CouplingDesc& d) { return d.width > 1 ? d.width : 1; }); }

  /// Scalars of per-sample scratch for FlowView's *_point functions.
  Index scratch_size() const { return 3 * dim + max_pass() + max_out() + 2 * max_width(); }

  /// A view over these host arrays and `params` (host memory).
  FlowView<Transform> host_view(const S* params) const {
    return view(params, couplings.data(), indices.data(), transforms.data());
  }

  /// A view over arrays that mirror these ones (for example their device copies).
  FlowView<Transform> view(const S* params, const CouplingDesc* c, const std::int32_t* idx,
                           const Transform* tr) const {
    FlowView<Transform> v;
    v.params = params;
    v.couplings = c;
    v.indices = idx;
    v.transforms = tr;
    v.dim = narrow(dim);
    v.n_couplings = narrow(size());
    v.scratch_size = narrow(scratch_size());
    return v;
  }

 private:
  static std::int32_t narrow(Index v) {
    detail::require(v >= 0 && v <= Index(INT32_MAX), "cuda::FlowLayout", "size ", v, " does not fit in int32");
    return std::int32_t(v);
  }
  template <class F>
  Index max_of(F f) const {
    Index m = 0;
    for (const auto& d : couplings) m = std::max<Index>(m, f(d));
    return m;
  }
};

}  // namespace fort::cuda
