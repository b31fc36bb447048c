#pragma once
/// \file
/// GpuFlow: a coupling flow evaluated and trained on one CUDA device, with the sampler and loss
/// API of the CPU `fort::Flow`.
///
///   auto cpu = fort::Flow(StandardNormal<float>(66), Repeat<SplineCoupling<float>>(...));
///   fort::cuda::GpuFlow gpu(cpu, {.device = 0});        // architecture + parameters copied
///   auto [x, log_p] = gpu.sample_and_log_prob(200000, fort::Random(1));   // host results
///   gpu.copy_params_to(cpu);                            // explicit device → host copy
///
/// Supported architectures: `Flow<StandardNormal<S, D>, Repeat<Coupling<T, D>>>` with T any
/// element transform whose object is trivially copyable (AffineTransform, AdditiveTransform,
/// RationalQuadraticTransform) and S float (the fast path; cuBLAS SGEMM) or double. Masks may
/// differ per coupling, so permutations between couplings are expressed by the masks.
///
/// Every function with a host batch argument copies it to the device and the results back; the
/// `*_device` functions take device pointers and leave everything on the device (ordered on the
/// flow's stream; call synchronize() before reading results from another stream).
///
/// Direction as everywhere in fort: forward = noise → data (sampling), inverse = data → noise.

#include <string>
#include <type_traits>
#include <utility>

#include "fort/cuda/buffer.hpp"
#include "fort/cuda/engine.hpp"
#include "fort/cuda/exec.hpp"

namespace fort::cuda {

template <class Transform>
class GpuFlow {
 public:
  using Scalar = typename Transform::Scalar;
  using S = Scalar;
  static_assert(std::is_trivially_copyable_v<Transform>, "fort::cuda::GpuFlow: the element transform must be "
                                                         "trivially copyable to be passed to kernels");
  static_assert(std::is_same_v<S, float> || std::is_same_v<S, double>, "fort::cuda::GpuFlow: float or double");
  using Engine = FlowEngine<Transform, CudaExec>;

  /// Builds the device flow from a CPU flow: same architecture, a copy of its parameters.
  template <int D>
  explicit GpuFlow(const Flow<StandardNormal<S, D>, Repeat<Coupling<Transform, D>>>& cpu, DeviceOptions opt = {})
      : signature_(cpu.signature()), engine_(FlowLayout<Transform>(cpu), CudaExec(opt)) {
    copy_params_from(cpu);
  }

  Index dim() const { return engine_.dim(); }
  Index num_params() const { return engine_.num_params(); }
  int device() const { return engine_.exec().options().device; }
  cudaStream_t stream() const { return engine_.exec().stream(); }
  const std::string& signature() const { return signature_; }
  Engine& engine() { return engine_; }

  // ---- parameters: explicit copies only -----------------------------------------------------

  /// Host → device: the parameters of a CPU flow of the same architecture.
  template <class CpuFlow>
  void copy_params_from(const CpuFlow& cpu) {
    check_same(cpu);
    set_params(cpu.params());
  }
  /// Device → host: writes this flow's parameters into a CPU flow of the same architecture.
  template <class CpuFlow>
  void copy_params_to(CpuFlow& cpu) const {
    check_same(cpu);
    cpu.set_params(params());
  }
  /// Device → host copy of the flat parameter vector.
  Vector<S> params() const {
    guard();
    Vector<S> p(num_params());
    engine_.get_params(p.data());
    return p;
  }
  /// Host → device copy of a flat parameter vector.
  void set_params(const Vector<S>& p) {
    detail::require(p.size() == num_params(), "cuda::GpuFlow", "parameter vector has ", p.size(),
                    " values, expected ", num_params());
    detail::require_finite(p, "cuda::GpuFlow", "parameter vector");
    guard();
    engine_.set_params(p.data());
  }
  S* device_params() { return engine_.params(); }
  const S* device_params() const { return engine_.params(); }

  // ---- host API (copies in and out) -----------------------------------------------------------

  std::pair<Batch<S>, Vector<S>> forward(ConstBatchRef<S> z) { return pass<true>(z); }
  std::pair<Batch<S>, Vector<S>> inverse(ConstBatchRef<S> x) { return pass<false>(x); }

  /// Samples (the CPU flow's draws: row i uses draws of sample offset + i) and log-densities.
  std::pair<Batch<S>, Vector<S>> sample_and_log_prob(Index n, const Random& rng, std::uint64_t offset = 0) {
    detail::require(n >= 0, "cuda::GpuFlow", "sample count must be >= 0, got ", n);
    guard();
    grow(n);
    engine_.sample_and_log_prob(rng, offset, n, x_.data(), lp_.data());
    Batch<S> x(n, dim());
    Vector<S> lp(n);
    engine_.exec().download(x_.data(), x.data(), n * dim());
    engine_.exec().download(lp_.data(), lp.data(), n);
    return {std::move(x), std::move(lp)};
  }
  Batch<S> sample(Index n, const Random& rng, std::uint64_t offset = 0) {
    return sample_and_log_prob(n, rng, offset).first;
  }

  Vector<S> log_prob(ConstBatchRef<S> x) {
    check_cols(x);
    guard();
    const Index n = x.rows();
    grow(n);
    upload_rows(in_, x);
    engine_.log_prob(in_.data(), n, lp_.data());
    Vector<S> lp(n);
    engine_.exec().download(lp_.data(), lp.data(), n);
    return lp;
  }

  /// The FORT regression loss of a batch and (when `grad` is given) its gradient, as
  /// fort::training_loss computes them. Supported terms: regression and log-det penalty.
  LossTerms training_loss(ConstBatchRef<S> x0, ConstBatchRef<S> x1, const LossOptions& opt,
                          Vector<S>* grad = nullptr) {
    check_cols(x0);
    check_cols(x1);
    detail::require(x0.rows() == x1.rows(), "cuda::GpuFlow", "x0 has ", x0.rows(), " rows, x1 has ", x1.rows());
    guard();
    const Index n = x0.rows();
    grow(n);
    upload_rows(in_, x0);
    upload_rows(x_, x1);
    if (grad && Index(grad_.size()) != num_params()) grad_ = DeviceBuffer<S>(std::size_t(num_params()), stream());
    const LossTerms t = engine_.regression_loss(in_.data(), x_.data(), n, opt, grad ? grad_.data() : nullptr);
    if (grad) {
      grad->resize(num_params());
      engine_.exec().download(grad_.data(), grad->data(), num_params());
    }
    return t;
  }

  // ---- device API (device pointers, no copies) ------------------------------------------------

  void forward_device(const S* z, S* x, S* log_det, Index n, bool record = false) {
    guard();
    engine_.forward(z, x, log_det, n, record);
  }
  void inverse_device(const S* x, S* z, S* log_det, Index n, bool record = false) {
    guard();
    engine_.inverse(x, z, log_det, n, record);
  }
  void sample_and_log_prob_device(Index n, const Random& rng, std::uint64_t offset, S* x, S* log_p) {
    guard();
    engine_.sample_and_log_prob(rng, offset, n, x, log_p);
  }
  void log_prob_device(const S* x, Index n, S* log_p) {
    guard();
    engine_.log_prob(x, n, log_p);
  }
  /// Loss on device batches; the gradient (num_params values, device memory) is overwritten.
  LossTerms training_loss_device(const S* x0, const S* x1, Index n, const LossOptions& opt, S* grad) {
    guard();
    return engine_.regression_loss(x0, x1, n, opt, grad);
  }

  /// A trivially copyable view of this flow's device arrays for the caller's own kernels
  /// (FlowView::sample_point / log_prob_point per thread). Valid while this flow lives and its
  /// parameters are not reallocated (set_params keeps the same allocation).
  FlowView<Transform> view() const { return engine_.view(); }
  /// Scalars of per-thread scratch the view's *_point functions need.
  Index point_scratch_size() const { return engine_.layout().scratch_size(); }

  void synchronize() const { engine_.exec().synchronize(); }

 private:
  void guard() const { set_device(device()); }
  template <class CpuFlow>
  void check_same(const CpuFlow& cpu) const {
    detail::require(cpu.signature() == signature_, "cuda::GpuFlow", "CPU flow '", cpu.signature(),
                    "' has a different architecture from this GPU flow '", signature_, "'");
  }
  void check_cols(const ConstBatchRef<S>& b) const {
    detail::require_cols(b, dim(), "cuda::GpuFlow", "batch");
  }
  void grow(Index n) {
    const std::size_t nd = std::size_t(n * dim());
    if (in_.size() < nd) in_ = DeviceBuffer<S>(nd, stream());
    if (x_.size() < nd) x_ = DeviceBuffer<S>(nd, stream());
    if (lp_.size() < std::size_t(n)) lp_ = DeviceBuffer<S>(std::size_t(n), stream());
  }
  void upload_rows(DeviceBuffer<S>& dst, const ConstBatchRef<S>& b) {
    // A row-major Ref with unit inner stride and outer stride = dim() is one contiguous block.
    if (b.outerStride() == dim()) {
      dst.copy_from_host(b.data(), std::size_t(b.size()));
    } else {
      const Batch<S> tmp = b;
      dst.copy_from_host(tmp.data(), std::size_t(tmp.size()));
    }
  }
  template <bool Forward>
  std::pair<Batch<S>, Vector<S>> pass(ConstBatchRef<S> in) {
    check_cols(in);
    guard();
    const Index n = in.rows();
    grow(n);
    upload_rows(in_, in);
    if (Forward) engine_.forward(in_.data(), x_.data(), lp_.data(), n);
    else engine_.inverse(in_.data(), x_.data(), lp_.data(), n);
    Batch<S> out(n, dim());
    Vector<S> ld(n);
    engine_.exec().download(x_.data(), out.data(), n * dim());
    engine_.exec().download(lp_.data(), ld.data(), n);
    return {std::move(out), std::move(ld)};
  }

  std::string signature_;
  Engine engine_;
  DeviceBuffer<S> in_, x_, lp_, grad_;
};

/// Adam / AdamW on a GpuFlow's device parameters (fort::Adam's update, one thread per parameter).
template <class Transform>
class GpuAdam {
 public:
  using S = typename Transform::Scalar;
  GpuAdam(GpuFlow<Transform>& flow, AdamOptions opt = {})
      : flow_(&flow), adam_(flow.engine().exec(), flow.num_params(), opt), grad_(std::size_t(flow.num_params()), flow.stream()) {}

  /// One training step on device batches x0, x1 [n, D]: loss, gradient, update at rate lr.
  LossTerms step_device(const S* x0, const S* x1, Index n, const LossOptions& opt, double lr) {
    const LossTerms t = flow_->training_loss_device(x0, x1, n, opt, grad_.data());
    adam_.step(flow_->device_params(), grad_.data(), lr);
    return t;
  }
  /// Update from a gradient already in device memory (num_params values).
  void step(const S* grad_device, double lr) { adam_.step(flow_->device_params(), grad_device, lr); }
  Index steps() const { return adam_.steps(); }

 private:
  GpuFlow<Transform>* flow_;
  EngineAdam<S, CudaExec> adam_;
  DeviceBuffer<S> grad_;
};

/// Deduction: GpuFlow gpu(cpu_flow);
template <class S, int D, class Transform>
GpuFlow(const Flow<StandardNormal<S, D>, Repeat<Coupling<Transform, D>>>&, DeviceOptions = {}) -> GpuFlow<Transform>;

}  // namespace fort::cuda
