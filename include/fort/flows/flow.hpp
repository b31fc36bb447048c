#pragma once
/// \file
/// Flow: a base distribution joined to a layer sequence, holding the flat parameter vector.
///
///   x = f(z),  z ~ base;       log p(x) = log p_base(z) − log|det ∂f/∂z|
///
/// `forward`/`sample` go noise → data (one pass gives samples and their log-densities);
/// `inverse`/`log_prob` go data → noise. `*_point` functions handle one sample in caller
/// buffers with caller scratch (`point_scratch_size()` scalars) and never allocate.

#include <algorithm>
#include <string>
#include <utility>

#include "fort/core/concepts.hpp"
#include "fort/flows/distributions.hpp"

namespace fort {

template <class B>
concept BaseDistribution = requires(const B& b, const typename B::Scalar* z, typename B::Scalar* out,
                                    const Random& rng) {
  typename B::Scalar;
  { b.dim() } -> std::same_as<Index>;
  { b.log_prob_point(z) } -> std::same_as<typename B::Scalar>;
  { b.log_prob_gradient_point(z, out) };
  { b.sample_point(rng, std::uint64_t(0), out) };
};

template <BaseDistribution Base, FlowLayer Transform>
class Flow {
 public:
  using Scalar = typename Transform::Scalar;
  static constexpr int Dim = Transform::Dim;
  static_assert(std::is_same_v<typename Base::Scalar, Scalar>, "fort::Flow: base and layers must share Scalar");
  using Sample = Batch<Scalar, Dim>;

  /// Builds the flow and initialises its parameters from `seed` (conditioners start at zero
  /// output, so the flow starts as the identity map up to fixed permutations).
  Flow(Base base, Transform transform, std::uint64_t seed = 0)
      : base_(std::move(base)), transform_(std::move(transform)), params_(transform_.num_params()) {
    detail::require(base_.dim() == transform_.dim(), "Flow", "base has dim ", base_.dim(), ", layers have dim ",
                    transform_.dim());
    transform_.init_params(Grads<Scalar>(params_.data(), std::size_t(params_.size())), Random(seed));
  }

  Index dim() const { return transform_.dim(); }
  Index num_params() const { return params_.size(); }
  const Base& base() const { return base_; }
  const Transform& transform() const { return transform_; }
  Transform& transform() { return transform_; }

  /// The flat trainable parameters (one contiguous vector).
  const Vector<Scalar>& params() const { return params_; }
  Vector<Scalar>& params() { return params_; }
  Params<Scalar> param_span() const { return {params_.data(), std::size_t(params_.size())}; }
  void set_params(const Vector<Scalar>& p) {
    detail::require(p.size() == params_.size(), "Flow", "parameter vector has ", p.size(), " values, expected ",
                    params_.size());
    detail::require_finite(p, "Flow", "parameter vector");
    params_ = p;
  }

  State state() const { return transform_.state(); }
  void set_state(std::span<const std::int64_t> s) { transform_.set_state(s); }
  std::string signature() const { return base_.signature() + ">" + std::string(transform_.signature()); }

  /// x = f(z) with log|det ∂x/∂z|.
  std::pair<Sample, Vector<Scalar>> forward(ConstBatchRef<Scalar, Dim> z) const {
    Sample x(z.rows(), dim());
    Vector<Scalar> ld = Vector<Scalar>::Zero(z.rows());
    by_row_blocks(z.rows(), [&](Index r0, Index rows) {
      auto xb = x.middleRows(r0, rows);
      auto lb = ld.segment(r0, rows);
      transform_.forward(param_span(), z.middleRows(r0, rows), xb, lb);
    });
    return {std::move(x), std::move(ld)};
  }

  /// z = f⁻¹(x) with log|det ∂z/∂x|.
  std::pair<Sample, Vector<Scalar>> inverse(ConstBatchRef<Scalar, Dim> x) const {
    Sample z(x.rows(), dim());
    Vector<Scalar> ld = Vector<Scalar>::Zero(x.rows());
    by_row_blocks(x.rows(), [&](Index r0, Index rows) {
      auto zb = z.middleRows(r0, rows);
      auto lb = ld.segment(r0, rows);
      transform_.inverse(param_span(), x.middleRows(r0, rows), zb, lb);
    });
    return {std::move(z), std::move(ld)};
  }

  /// n draws from the base; row i uses the counter draws of sample `offset + i`.
  Sample sample_base(Index n, const Random& rng, std::uint64_t offset = 0) const {
    detail::require(n >= 0, "Flow", "sample count must be >= 0, got ", n);
    Sample z(n, dim());
    for (Index i = 0; i < n; ++i) base_.sample_point(rng, offset + std::uint64_t(i), z.row(i).data());
    return z;
  }

  Sample sample(Index n, const Random& rng, std::uint64_t offset = 0) const {
    return sample_and_log_prob(n, rng, offset).first;
  }

  /// Samples and their log-densities from one forward pass.
  std::pair<Sample, Vector<Scalar>> sample_and_log_prob(Index n, const Random& rng, std::uint64_t offset = 0) const {
    const Sample z = sample_base(n, rng, offset);
    auto [x, ld] = forward(z);
    Vector<Scalar> log_p(n);
    for (Index i = 0; i < n; ++i) log_p[i] = base_.log_prob_point(z.row(i).data()) - ld[i];
    return {std::move(x), std::move(log_p)};
  }

  /// log p(x) for each row of x.
  Vector<Scalar> log_prob(ConstBatchRef<Scalar, Dim> x) const {
    auto [z, ld] = inverse(x);
    Vector<Scalar> log_p(x.rows());
    for (Index i = 0; i < x.rows(); ++i) log_p[i] = base_.log_prob_point(z.row(i).data()) + ld[i];
    return log_p;
  }

  /// Data-dependent initialisation (ActNorm layers) from a batch of data.
  void initialize_from_data(ConstBatchRef<Scalar, Dim> data) {
    detail::require_finite(data.reshaped(), "Flow", "initialisation data");
    if constexpr (DataInitializable<Transform>)
      transform_.initialize_from_data(Grads<Scalar>(params_.data(), std::size_t(params_.size())), data);
  }

  // ---- per-sample path: no heap allocation -------------------------------------------------

  /// Scalars of scratch the per-point functions need (allocate once, reuse for every point).
  Index point_scratch_size() const { return dim() + transform_.point_scratch_size(); }

  void forward_point(const Scalar* z, Scalar* x, Scalar& log_det, Scalar* scratch) const {
    log_det = 0;
    transform_.forward_point(param_span(), z, x, log_det, scratch + dim());
  }
  void inverse_point(const Scalar* x, Scalar* z, Scalar& log_det, Scalar* scratch) const {
    log_det = 0;
    transform_.inverse_point(param_span(), x, z, log_det, scratch + dim());
  }

  /// Draws sample `index` of stream `rng` into x and returns its log-density.
  Scalar sample_point(const Random& rng, std::uint64_t index, Scalar* x, Scalar* scratch) const {
    Scalar* z = scratch;
    base_.sample_point(rng, index, z);
    Scalar ld = 0;
    transform_.forward_point(param_span(), z, x, ld, scratch + dim());
    return base_.log_prob_point(z) - ld;
  }

  Scalar log_prob_point(const Scalar* x, Scalar* scratch) const {
    Scalar* z = scratch;
    Scalar ld = 0;
    transform_.inverse_point(param_span(), x, z, ld, scratch + dim());
    return base_.log_prob_point(z) + ld;
  }

 private:
  /// Rows are independent, so large batches go through the layers in blocks of kBlockRows: the
  /// conditioners' activations of one block stay in cache and no multi-megabyte temporaries are
  /// allocated (and page-faulted in) per layer.
  static constexpr Index kBlockRows = 256;
  template <class F>
  static void by_row_blocks(Index n, F&& f) {
    if (n <= kBlockRows) {
      f(Index(0), n);
      return;
    }
    for (Index r0 = 0; r0 < n; r0 += kBlockRows) f(r0, std::min(kBlockRows, n - r0));
  }

  Base base_;
  Transform transform_;
  Vector<Scalar> params_;
};

}  // namespace fort
