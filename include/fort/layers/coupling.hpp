#pragma once
/// \file
/// Coupling layer (Dinh et al. 2015, 2017): one general mechanism for affine, additive and
/// spline couplings.
///
///   y_A = x_A,   y_B[j] = τ(x_B[j]; θ_j),   θ = MLP(x_A)
///   log|det ∂y/∂x| = Σ_j log|τ'(x_B[j]; θ_j)|
///
/// A is the passed-through part of the mask, B the transformed part, τ any ElementwiseTransform.
/// The conditioner's last layer starts at zero, so a fresh coupling is the identity for every
/// transform whose θ = 0 is the identity (all transforms in fort).
///
/// Shapes: x, y [N, D]; log_det [N]. `Dim` is D at compile time or `Dynamic`.

#include <string>
#include <vector>

#include "fort/core/concepts.hpp"
#include "fort/layers/mask.hpp"
#include "fort/layers/transforms/elementwise.hpp"
#include "fort/nn/mlp.hpp"

namespace fort {

template <ElementwiseTransform Transform, int D = Dynamic>
class Coupling {
 public:
  using Scalar = typename Transform::Scalar;
  static constexpr int Dim = D;

  /// What backward needs from a recorded pass. Kept between calls, its buffers are reused.
  struct Cache {
    Batch<Scalar, Dim> input, output;
    Matrix<Scalar> theta;
    typename MLP<Scalar>::Cache conditioner;
    /// Per-element partials, row-major [N, transformed], recorded by transforms with row kernels
    /// (RowTransform); empty otherwise (backward then recomputes them).
    std::vector<typename Transform::Partials> partials;
    mutable Matrix<Scalar> dtheta_scratch, dpassed_scratch;  ///< backward scratch, not state
  };

  Coupling(Mask mask, MLPConfig conditioner, Transform transform = Transform())
      : mask_(std::move(mask)), config_(conditioner), transform_(std::move(transform)) {
    detail::require(Dim == Dynamic || mask_.dim() == Dim, where(), "mask has ", mask_.dim(),
                    " coordinates, expected ", Dim);
    rebuild();
  }

  Index dim() const { return mask_.dim(); }
  Index num_params() const { return mlp_.num_params(); }
  const Mask& mask() const { return mask_; }
  const Transform& transform() const { return transform_; }
  const MLP<Scalar>& conditioner() const { return mlp_; }

  std::string signature() const {
    return detail::concat(transform_.name(), "Coupling(dim=", dim(), ",", transform_.signature(),
                          ",mask=", mask_.to_string(), ",", mlp_.signature(), ")");
  }

  State state() const { return mask_.state(); }
  void set_state(std::span<const std::int64_t> s) {
    detail::require(Index(s.size()) == dim(), where(), "state has ", s.size(), " entries, expected ", dim());
    mask_ = Mask::from_state(s);
    rebuild();
  }

  void init_params(Grads<Scalar> p, const Random& rng) const {
    check_params(p.size());
    mlp_.init_params(p, rng);
  }

  void forward(Params<Scalar> p, ConstBatchRef<Scalar, Dim> x, BatchRef<Scalar, Dim> y,
               VectorRef<Scalar> log_det, Cache* cache = nullptr) const {
    apply<true>(p, x, y, log_det, cache);
  }

  void inverse(Params<Scalar> p, ConstBatchRef<Scalar, Dim> y, BatchRef<Scalar, Dim> x,
               VectorRef<Scalar> log_det, Cache* cache = nullptr) const {
    apply<false>(p, y, x, log_det, cache);
  }

  /// Backward of forward: from dL/dy and dL/dlog_det to dL/dx; accumulates dL/dp.
  void backward_forward(Params<Scalar> p, const Cache& cache, ConstBatchRef<Scalar, Dim> dL_dy,
                        ConstVectorRef<Scalar> dL_dlog_det, BatchRef<Scalar, Dim> dL_dx,
                        Grads<Scalar> dL_dp) const {
    backward<true>(p, cache, dL_dy, dL_dlog_det, dL_dx, dL_dp);
  }

  /// Backward of inverse: from dL/dx and dL/dlog_det to dL/dy; accumulates dL/dp.
  void backward_inverse(Params<Scalar> p, const Cache& cache, ConstBatchRef<Scalar, Dim> dL_dx,
                        ConstVectorRef<Scalar> dL_dlog_det, BatchRef<Scalar, Dim> dL_dy,
                        Grads<Scalar> dL_dp) const {
    backward<false>(p, cache, dL_dx, dL_dlog_det, dL_dy, dL_dp);
  }

  Index point_scratch_size() const {
    return Index(mask_.passed().size()) + 2 * Index(mask_.transformed().size()) + mlp_.out() +
           mlp_.point_scratch_size();
  }

  void forward_point(Params<Scalar> p, const Scalar* x, Scalar* y, Scalar& log_det, Scalar* scratch) const {
    apply_point<true>(p, x, y, log_det, scratch);
  }
  void inverse_point(Params<Scalar> p, const Scalar* y, Scalar* x, Scalar& log_det, Scalar* scratch) const {
    apply_point<false>(p, y, x, log_det, scratch);
  }

 private:
  std::string where() const { return transform_.name() + "Coupling"; }

  void rebuild() {
    const Index k = transform_.params_per_dim();
    mlp_ = MLP<Scalar>(Index(mask_.passed().size()), Index(mask_.transformed().size()) * k, config_);
  }

  void check_params(std::size_t size) const {
    detail::require(Index(size) == num_params(), where(), "parameter span has ", size, " values, expected ",
                    num_params());
  }

  template <class In, class Out, class LD>
  void check_io(std::size_t np, const In& in, const Out& out, const LD& log_det) const {
    check_params(np);
    detail::require_cols(in, dim(), where(), "input");
    detail::require_shape(out, in.rows(), dim(), where(), "output");
    detail::require(log_det.size() == in.rows(), where(), "log_det has ", log_det.size(), " entries, expected ",
                    in.rows());
  }

  void gather_passed(const ConstBatchRef<Scalar, Dim>& x, Matrix<Scalar>& out) const {
    const auto& idx = mask_.passed();
    out.resize(x.rows(), Index(idx.size()));
    for (Index i = 0; i < x.rows(); ++i)
      for (Index j = 0; j < Index(idx.size()); ++j) out(i, j) = x(i, idx[j]);
  }

  template <bool Forward>
  void apply(Params<Scalar> p, ConstBatchRef<Scalar, Dim> in, BatchRef<Scalar, Dim> out, VectorRef<Scalar> log_det,
             Cache* cache) const {
    check_io(p.size(), in, out, log_det);
    // Recording: every buffer is the cache's, so a cache kept between calls allocates nothing.
    Matrix<Scalar> local_passed, local_theta;
    Matrix<Scalar>& theta = cache ? cache->theta : local_theta;
    if (cache) {
      gather_passed(in, cache->conditioner.input());
      mlp_.forward_recorded(p, theta, cache->conditioner);
    } else {
      gather_passed(in, local_passed);
      mlp_.forward(p, local_passed, theta);
    }
    const auto& tr = mask_.transformed();
    const Index m = Index(tr.size());
    // Each row's transformed coordinates go through the transform as one contiguous row.
    constexpr bool can_record = RowTransform<Transform>;
    if (cache) {
      if (can_record) cache->partials.resize(std::size_t(in.rows() * m));
      else cache->partials.clear();
    }
    Vector<Scalar> row_in(m), row_out(m);
    out = in;
    for (Index i = 0; i < in.rows(); ++i) {
      for (Index j = 0; j < m; ++j) row_in[j] = in(i, tr[j]);
      Scalar ld = 0;
      typename Transform::Partials* record = (can_record && cache) ? cache->partials.data() + i * m : nullptr;
      detail::transform_row<Forward>(transform_, m, row_in.data(), theta.data() + i * theta.cols(), row_out.data(),
                                     ld, record);
      for (Index j = 0; j < m; ++j) out(i, tr[j]) = row_out[j];
      log_det[i] += ld;
    }
    if (cache) {
      cache->input = in;
      cache->output = out;
    }
  }

  template <bool Forward>
  void backward(Params<Scalar> p, const Cache& cache, ConstBatchRef<Scalar, Dim> dL_dout,
                ConstVectorRef<Scalar> dL_dld, BatchRef<Scalar, Dim> dL_din, Grads<Scalar> dL_dp) const {
    const Index n = dL_dout.rows();
    check_params(p.size());
    check_params(dL_dp.size());
    detail::require(cache.input.rows() == n && cache.theta.rows() == n, where(),
                    "backward called without a recorded forward pass on a batch of ", n, " rows");
    detail::require_shape(dL_dout, n, dim(), where(), "dL/d(output)");
    detail::require_shape(dL_din, n, dim(), where(), "dL/d(input)");
    detail::require(dL_dld.size() == n, where(), "dL/dlog_det has ", dL_dld.size(), " entries, expected ", n);
    const auto& tr = mask_.transformed();
    const auto& pa = mask_.passed();
    const Index k = transform_.params_per_dim(), m = Index(tr.size());
    const bool recorded = Index(cache.partials.size()) == n * m;
    Matrix<Scalar>& dL_dtheta = cache.dtheta_scratch;
    dL_dtheta.setZero(n, cache.theta.cols());
    dL_din = dL_dout;
    for (Index i = 0; i < n; ++i) {
      const Scalar b = dL_dld[i];
      for (Index j = 0; j < m; ++j) {
        const Scalar* th = cache.theta.data() + i * cache.theta.cols() + j * k;
        Scalar* g = dL_dtheta.data() + i * dL_dtheta.cols() + j * k;
        // The transform's own variable x is the input going forward and the output going back.
        const Scalar x = Forward ? cache.input(i, tr[j]) : cache.output(i, tr[j]);
        const auto d = recorded ? cache.partials[std::size_t(i * m + j)] : transform_.partials(x, th);
        if constexpr (Forward) {
          const Scalar a = dL_dout(i, tr[j]);
          dL_din(i, tr[j]) = a * d.dy_dx + b * d.dlog_det_dx;
          transform_.pullback(x, th, d, a, b, g);
        } else {
          const Scalar gy = (dL_dout(i, tr[j]) - b * d.dlog_det_dx) / d.dy_dx;
          dL_din(i, tr[j]) = gy;
          transform_.pullback(x, th, d, -gy, -b, g);
        }
      }
    }
    Matrix<Scalar>& dL_dpassed = cache.dpassed_scratch;
    mlp_.backward(p, cache.conditioner, dL_dtheta, &dL_dpassed, dL_dp);
    for (Index i = 0; i < n; ++i)
      for (Index j = 0; j < Index(pa.size()); ++j) dL_din(i, pa[j]) += dL_dpassed(i, j);
  }

  template <bool Forward>
  void apply_point(Params<Scalar> p, const Scalar* in, Scalar* out, Scalar& log_det, Scalar* scratch) const {
    const auto& pa = mask_.passed();
    const auto& tr = mask_.transformed();
    const Index m = Index(tr.size());
    Scalar* passed = scratch;
    Scalar* row_in = passed + pa.size();
    Scalar* row_out = row_in + m;
    Scalar* theta = row_out + m;
    for (std::size_t j = 0; j < pa.size(); ++j) passed[j] = in[pa[j]];
    mlp_.forward_point(p, passed, theta, theta + mlp_.out());
    for (std::size_t j = 0; j < pa.size(); ++j) out[pa[j]] = in[pa[j]];
    for (Index j = 0; j < m; ++j) row_in[j] = in[tr[j]];
    detail::transform_row<Forward>(transform_, m, row_in, theta, row_out, log_det, nullptr);
    for (Index j = 0; j < m; ++j) out[tr[j]] = row_out[j];
  }

  Mask mask_;
  MLPConfig config_;
  Transform transform_;
  MLP<Scalar> mlp_;
};

}  // namespace fort
