#pragma once
/// \file
/// ActNorm: per-coordinate affine map with data-dependent initialisation (Kingma & Dhariwal
/// 2018, "Glow: Generative Flow with Invertible 1x1 Convolutions", section 3.1).
///
///   forward (noise → data):  y = x ⊙ exp(s) + b            log|det ∂y/∂x| = Σ_j s_j
///   inverse (data → noise):  x = (y − b) ⊙ exp(−s)         log|det ∂x/∂y| = −Σ_j s_j
///
/// Parameters: [s (D values), b (D values)], in that order. `init_params` sets all of them to
/// zero, which is the identity map.
///
/// Shapes: x, y [N, D]; log_det [N] (the log-det is added to it).
///
/// Data-dependent initialisation: `initialize_from_data(p, y)` receives data on the layer's data
/// side and sets b = column mean of y and s = log(column standard deviation of y), so that the
/// inverse maps y to zero mean and unit variance per coordinate. The standard deviation is the
/// population one (divisor N), so the normalised data has variance exactly 1 up to rounding.
/// Statistics are accumulated in double with a corrected two-pass algorithm on values scaled by
/// the column's largest magnitude, so huge offsets and huge or tiny scales stay accurate.
/// A column counts as constant when its standard deviation is at most
///   4 · ε · max_i |y_ij|      (ε = machine epsilon of Scalar; the spread is rounding noise)
/// or below the smallest normal number of Scalar; such a column gets s = 0 (it is only shifted by
/// its mean), never −inf or NaN. At least 2 rows and finite data are required (fort::Error
/// otherwise).
///
/// State: one integer, the "initialised" flag (0 or 1). It is set by `initialize_from_data`;
/// calling `initialize_from_data` on a layer whose flag is already 1 is a no-op (the parameters
/// are left as they are, after the span and shape checks), so re-running a flow's data
/// initialisation, or loading a trained model (its state carries the flag) and initialising
/// again, never overwrites trained parameters. `set_state({0})` re-arms it.

#include <cmath>
#include <limits>
#include <span>
#include <string>

#include "fort/core/concepts.hpp"
#include "fort/core/error.hpp"

namespace fort {

template <class S, int D = Dynamic>
class ActNorm {
  static_assert(std::floating_point<S>, "fort::ActNorm: Scalar must be float or double");
  static_assert(detail::valid_dim<D>, "fort::ActNorm: Dim must be >= 1 or fort::Dynamic");

 public:
  using Scalar = S;
  static constexpr int Dim = D;

  /// The noise-side points x of the recorded pass (the input going forward, the output going
  /// back), which is all either backward pass needs.
  struct Cache {
    Batch<Scalar, Dim> x;
  };

  explicit ActNorm(Index dim = (D == Dynamic ? 0 : D)) : dim_(dim) {
    detail::require(dim >= 1, where(), "dim must be >= 1, got ", dim);
    detail::require(Dim == Dynamic || dim == Dim, where(), "dim is ", dim, ", expected ", Dim,
                    " (the compile-time Dim)");
  }

  Index dim() const { return dim_; }
  Index num_params() const { return 2 * dim_; }
  /// True once `initialize_from_data` has run (or a state with the flag set was loaded).
  bool initialized() const { return initialized_; }

  std::string signature() const { return detail::concat("ActNorm(dim=", dim_, ")"); }

  State state() const { return State{initialized_ ? 1 : 0}; }
  void set_state(std::span<const std::int64_t> s) {
    detail::require(s.size() == 1, where(), "state has ", s.size(), " entries, expected 1 (the initialised flag)");
    detail::require(s[0] == 0 || s[0] == 1, where(), "state entry 0 (the initialised flag) is ", s[0],
                    ", expected 0 or 1");
    initialized_ = s[0] == 1;
  }

  /// Zeros: the identity map.
  void init_params(Grads<Scalar> p, const Random&) const {
    check_params(p.size());
    std::fill(p.begin(), p.end(), Scalar(0));
  }

  void forward(Params<Scalar> p, ConstBatchRef<Scalar, Dim> x, BatchRef<Scalar, Dim> y, VectorRef<Scalar> log_det,
               Cache* cache = nullptr) const {
    check_io(p.size(), x, y, log_det);
    Row scale(dim_);
    const Scalar sum_s = exp_s(p, scale, Scalar(1));
    if (cache) cache->x = x;  // before y is written: x and y may be the same buffer
    y.array() = (x.array().rowwise() * scale.array()).rowwise() + shift(p).array();
    log_det.array() += sum_s;
  }

  void inverse(Params<Scalar> p, ConstBatchRef<Scalar, Dim> y, BatchRef<Scalar, Dim> x, VectorRef<Scalar> log_det,
               Cache* cache = nullptr) const {
    check_io(p.size(), y, x, log_det);
    Row inv_scale(dim_);
    const Scalar sum_s = exp_s(p, inv_scale, Scalar(-1));
    x.array() = (y.array().rowwise() - shift(p).array()).rowwise() * inv_scale.array();
    log_det.array() -= sum_s;
    if (cache) cache->x = x;
  }

  /// y = x e^s + b:  dL/dx = dL/dy e^s,  dL/ds_j = Σ_n dL/dy_nj x_nj e^{s_j} + Σ_n dL/dld_n,
  /// dL/db_j = Σ_n dL/dy_nj.
  void backward_forward(Params<Scalar> p, const Cache& cache, ConstBatchRef<Scalar, Dim> dL_dy,
                        ConstVectorRef<Scalar> dL_dlog_det, BatchRef<Scalar, Dim> dL_dx, Grads<Scalar> dL_dp) const {
    check_backward(p, cache, dL_dy, dL_dlog_det, dL_dx, dL_dp);
    Row scale(dim_);
    exp_s(p, scale, Scalar(1));
    const Scalar sum_ld = dL_dlog_det.sum();
    // Parameter gradients first: dL_dy and dL_dx may be the same buffer.
    const Row gs = (dL_dy.array() * cache.x.array()).colwise().sum();
    const Row gb = dL_dy.colwise().sum();
    for (Index j = 0; j < dim_; ++j) {
      dL_dp[std::size_t(j)] += gs[j] * scale[j] + sum_ld;
      dL_dp[std::size_t(dim_ + j)] += gb[j];
    }
    dL_dx.array() = dL_dy.array().rowwise() * scale.array();
  }

  /// x = (y − b) e^{−s}:  dL/dy = dL/dx e^{−s},  dL/ds_j = −Σ_n dL/dx_nj x_nj − Σ_n dL/dld_n,
  /// dL/db_j = −e^{−s_j} Σ_n dL/dx_nj.
  void backward_inverse(Params<Scalar> p, const Cache& cache, ConstBatchRef<Scalar, Dim> dL_dx,
                        ConstVectorRef<Scalar> dL_dlog_det, BatchRef<Scalar, Dim> dL_dy, Grads<Scalar> dL_dp) const {
    check_backward(p, cache, dL_dx, dL_dlog_det, dL_dy, dL_dp);
    Row inv_scale(dim_);
    exp_s(p, inv_scale, Scalar(-1));
    const Scalar sum_ld = dL_dlog_det.sum();
    const Row gs = (dL_dx.array() * cache.x.array()).colwise().sum();
    const Row gb = dL_dx.colwise().sum();
    for (Index j = 0; j < dim_; ++j) {
      dL_dp[std::size_t(j)] -= gs[j] + sum_ld;
      dL_dp[std::size_t(dim_ + j)] -= gb[j] * inv_scale[j];
    }
    dL_dy.array() = dL_dx.array().rowwise() * inv_scale.array();
  }

  Index point_scratch_size() const { return 0; }

  void forward_point(Params<Scalar> p, const Scalar* x, Scalar* y, Scalar& log_det, Scalar*) const {
    Scalar sum_s = 0;
    for (Index j = 0; j < dim_; ++j) {
      const Scalar s = p[std::size_t(j)];
      y[j] = x[j] * std::exp(s) + p[std::size_t(dim_ + j)];
      sum_s += s;
    }
    log_det += sum_s;
  }

  void inverse_point(Params<Scalar> p, const Scalar* y, Scalar* x, Scalar& log_det, Scalar*) const {
    Scalar sum_s = 0;
    for (Index j = 0; j < dim_; ++j) {
      const Scalar s = p[std::size_t(j)];
      x[j] = (y[j] - p[std::size_t(dim_ + j)]) * std::exp(-s);
      sum_s += s;
    }
    log_det -= sum_s;
  }

  /// Sets b = mean and s = log(std) per column of the data-side batch `y` (see the file
  /// comment), then marks the layer initialised. A no-op when already initialised.
  void initialize_from_data(Grads<Scalar> p, ConstBatchRef<Scalar, Dim> y) {
    check_params(p.size());
    detail::require_cols(y, dim_, where(), "initialisation data");
    if (initialized_) return;
    const Index n = y.rows();
    detail::require(n >= 2, where(), "initialisation data has ", n, " rows, expected at least 2");
    detail::require_finite(y.reshaped(), where(), "initialisation data");
    constexpr double eps = std::numeric_limits<Scalar>::epsilon();
    constexpr double tiny = std::numeric_limits<Scalar>::min();
    for (Index j = 0; j < dim_; ++j) {
      double scale = 0;
      for (Index i = 0; i < n; ++i) scale = std::max(scale, std::abs(double(y(i, j))));
      double mean = 0, log_std = 0;
      bool constant = scale == 0;
      if (!constant) {
        // Corrected two-pass mean and variance of y / scale (values in [−1, 1]).
        double sum = 0;
        for (Index i = 0; i < n; ++i) sum += double(y(i, j)) / scale;
        const double m = sum / double(n);
        double sum_d = 0, sum_d2 = 0;
        for (Index i = 0; i < n; ++i) {
          const double d = double(y(i, j)) / scale - m;
          sum_d += d;
          sum_d2 += d * d;
        }
        // Σd is the rounding error of the first pass: it refines the mean and the variance.
        const double var = std::max(0.0, (sum_d2 - sum_d * sum_d / double(n)) / double(n));
        const double rel_std = std::sqrt(var);  // std / scale
        mean = (m + sum_d / double(n)) * scale;
        constant = rel_std <= 4 * eps || rel_std * scale < tiny;
        if (!constant) log_std = std::log(rel_std) + std::log(scale);
      }
      p[std::size_t(j)] = static_cast<Scalar>(constant ? 0.0 : log_std);
      p[std::size_t(dim_ + j)] = static_cast<Scalar>(mean);
    }
    initialized_ = true;
  }

 private:
  using Row = Eigen::Matrix<Scalar, 1, Dim>;

  static std::string where() { return "ActNorm"; }

  /// out_j = exp(sign · s_j); returns Σ s_j (the same summation order as the per-point path).
  Scalar exp_s(const Params<Scalar>& p, Row& out, Scalar sign) const {
    Scalar sum = 0;
    for (Index j = 0; j < dim_; ++j) {
      out[j] = std::exp(sign * p[std::size_t(j)]);
      sum += p[std::size_t(j)];
    }
    return sum;
  }
  Eigen::Map<const Row> shift(const Params<Scalar>& p) const { return Eigen::Map<const Row>(p.data() + dim_, dim_); }

  void check_params(std::size_t size) const {
    detail::require(Index(size) == num_params(), where(), "parameter span has ", size, " values, expected ",
                    num_params(), " (s and b, ", dim_, " each)");
  }

  template <class In, class Out, class LD>
  void check_io(std::size_t np, const In& in, const Out& out, const LD& log_det) const {
    check_params(np);
    detail::require_cols(in, dim_, where(), "input");
    detail::require_shape(out, in.rows(), dim_, where(), "output");
    detail::require(log_det.size() == in.rows(), where(), "log_det has ", log_det.size(), " entries, expected ",
                    in.rows());
  }

  template <class G, class LD, class GOut>
  void check_backward(const Params<Scalar>& p, const Cache& cache, const G& dL_dout, const LD& dL_dld,
                      const GOut& dL_din, const Grads<Scalar>& dL_dp) const {
    check_params(p.size());
    check_params(dL_dp.size());
    const Index n = dL_dout.rows();
    detail::require(cache.x.rows() == n && cache.x.cols() == dim_, where(),
                    "backward called without a recorded forward pass on a batch of ", n, " rows (the cache holds ",
                    cache.x.rows(), " rows)");
    detail::require_shape(dL_dout, n, dim_, where(), "dL/d(output)");
    detail::require_shape(dL_din, n, dim_, where(), "dL/d(input)");
    detail::require(dL_dld.size() == n, where(), "dL/dlog_det has ", dL_dld.size(), " entries, expected ", n);
  }

  Index dim_;
  bool initialized_ = false;
};

}  // namespace fort
