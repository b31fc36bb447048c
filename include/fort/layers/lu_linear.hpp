#pragma once
/// \file
/// LULinear: a learned invertible linear map in LU parameterisation (Kingma & Dhariwal 2018,
/// "Glow", section 3.2, "LU decomposition"; the 1×1 convolution of Glow on a flat vector).
///
///   forward (noise → data):  y = W x + c,      W = P L U
///   inverse (data → noise):  x = U⁻¹ L⁻¹ Pᵀ (y − c)   (triangular solves; W⁻¹ is never formed)
///   log|det ∂y/∂x| = Σ_i u_i,   log|det ∂x/∂y| = −Σ_i u_i
///
///   P  fixed permutation matrix, P[i, π(i)] = 1, i.e. (P v)_i = v_{π(i)} (state, not trained)
///   L  unit lower triangular; its strictly lower entries are parameters
///   U  upper triangular with diagonal exp(u_i); its strictly upper entries and u are parameters
///   c  bias
///
/// Parameters, in this order (D² + D values):
///   [ L strictly lower, row by row   (L_10, L_20, L_21, L_30, ...)   D(D−1)/2 values
///     U strictly upper, row by row   (U_01, U_02, ..., U_12, ...)    D(D−1)/2 values
///     u                                                               D values
///     c                                                               D values ]
/// All zero (`init_params`) gives W = P, so the layer starts as the identity when P = I.
///
/// Shapes: x, y [N, D]; log_det [N]. With one sample per row the batched forward is a single
/// GEMM, Y = X Wᵀ + c; the batched inverse is two triangular solves on the right.
///
/// State: π, D integers (identity by default; a seeded random permutation when a fort::Random is
/// passed to the constructor), so a reloaded model gets the same P. The signature names the
/// architecture only ("LULinear(dim=D)").
///
/// The per-point path works with triangular products and substitutions directly on the
/// parameter span and `point_scratch_size() == D` scalars of caller scratch; it never allocates.
/// Input and output buffers may be the same (both paths) but must not partially overlap.

#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "fort/core/concepts.hpp"
#include "fort/core/error.hpp"
#include "fort/layers/permutation.hpp"

namespace fort {

template <class S, int D = Dynamic>
class LULinear {
  static_assert(std::floating_point<S>, "fort::LULinear: Scalar must be float or double");
  static_assert(detail::valid_dim<D>, "fort::LULinear: Dim must be >= 1 or fort::Dynamic");

 public:
  using Scalar = S;
  static constexpr int Dim = D;
  /// D×D matrices (fixed size when Dim is).
  using Square = Eigen::Matrix<Scalar, Dim, Dim>;

  /// The noise-side points x of the recorded pass (the input going forward, the output going
  /// back): both backward passes need x for dL/dW.
  struct Cache {
    Batch<Scalar, Dim> x;
  };

  /// P = identity.
  explicit LULinear(Index dim = (D == Dynamic ? 0 : D)) : dim_(dim) {
    check_dim(dim);
    perm_.resize(std::size_t(dim));
    for (Index i = 0; i < dim; ++i) perm_[std::size_t(i)] = i;
  }

  /// P = a random permutation drawn from `rng` (fort::random_permutation).
  LULinear(Index dim, const Random& rng) : dim_(dim) {
    check_dim(dim);
    perm_.resize(std::size_t(dim));
    random_permutation(std::span<Index>(perm_), rng);
  }

  Index dim() const { return dim_; }
  Index num_params() const { return dim_ * dim_ + dim_; }
  /// π of the fixed permutation P: row i of W is row π(i) of L U.
  const std::vector<Index>& permutation() const { return perm_; }

  std::string signature() const { return detail::concat("LULinear(dim=", dim_, ")"); }

  State state() const { return State(perm_.begin(), perm_.end()); }
  void set_state(std::span<const std::int64_t> s) {
    detail::require_permutation(s, dim_, where(), "state (the permutation)");
    perm_.assign(s.begin(), s.end());
  }

  /// Zeros: W = P (the identity when P = I), c = 0.
  void init_params(Grads<Scalar> p, const Random&) const {
    check_params(p.size());
    std::fill(p.begin(), p.end(), Scalar(0));
  }

  /// The factors and the weight from a parameter span (for inspection and tests).
  Square lower(Params<Scalar> p) const {
    check_params(p.size());
    Square l = Square::Identity(dim_, dim_);
    const Scalar* q = p.data() + off_lower();
    for (Index i = 1; i < dim_; ++i)
      for (Index j = 0; j < i; ++j) l(i, j) = *q++;
    return l;
  }
  Square upper(Params<Scalar> p) const {
    check_params(p.size());
    Square u = Square::Zero(dim_, dim_);
    const Scalar* q = p.data() + off_upper();
    for (Index i = 0; i < dim_; ++i) {
      u(i, i) = std::exp(p[std::size_t(off_log_diag() + i)]);
      for (Index j = i + 1; j < dim_; ++j) u(i, j) = *q++;
    }
    return u;
  }
  Square weight(Params<Scalar> p) const { return weight_from(lower(p), upper(p)); }
  /// log|det W| = Σ u_i.
  Scalar log_abs_det(Params<Scalar> p) const {
    check_params(p.size());
    return sum_log_diag(p);
  }

  void forward(Params<Scalar> p, ConstBatchRef<Scalar, Dim> x, BatchRef<Scalar, Dim> y, VectorRef<Scalar> log_det,
               Cache* cache = nullptr) const {
    check_io(p.size(), x, y, log_det);
    const Square w = weight(p);
    if (cache) cache->x = x;  // before y is written: x and y may be the same buffer
    if (x.data() == y.data() && x.size() > 0) {
      const Batch<Scalar, Dim> out = x * w.transpose();
      y = out;
    } else {
      y.noalias() = x * w.transpose();
    }
    y.rowwise() += bias(p);
    log_det.array() += sum_log_diag(p);
  }

  void inverse(Params<Scalar> p, ConstBatchRef<Scalar, Dim> y, BatchRef<Scalar, Dim> x, VectorRef<Scalar> log_det,
               Cache* cache = nullptr) const {
    check_io(p.size(), y, x, log_det);
    const Square l = lower(p), u = upper(p);
    const auto c = bias(p);
    // Row form: x_row = (y − c)_row P L⁻ᵀ U⁻ᵀ.  ((v P)_{π(i)} = v_i.)
    Batch<Scalar, Dim> z(y.rows(), dim_);
    for (Index i = 0; i < dim_; ++i) z.col(perm_[std::size_t(i)]) = y.col(i).array() - c[i];
    l.transpose().template triangularView<Eigen::UnitUpper>().template solveInPlace<Eigen::OnTheRight>(z);
    u.transpose().template triangularView<Eigen::Lower>().template solveInPlace<Eigen::OnTheRight>(z);
    x = z;
    log_det.array() -= sum_log_diag(p);
    if (cache) cache->x = x;
  }

  /// y = W x + c:  dL/dx = Wᵀ dL/dy,  dL/dW = Σ_n dL/dy_n x_nᵀ,  dL/dc = Σ_n dL/dy_n,
  /// dL/du_i gets Σ_n dL/dld_n from the log-det; dL/dW is then chained to L, U and u.
  void backward_forward(Params<Scalar> p, const Cache& cache, ConstBatchRef<Scalar, Dim> dL_dy,
                        ConstVectorRef<Scalar> dL_dlog_det, BatchRef<Scalar, Dim> dL_dx, Grads<Scalar> dL_dp) const {
    check_backward(p, cache, dL_dy, dL_dlog_det, dL_dx, dL_dp);
    const Square l = lower(p), u = upper(p);
    const Square w = weight_from(l, u);
    const Square dw = dL_dy.transpose() * cache.x;
    accumulate(l, u, dw, dL_dy.colwise().sum(), dL_dlog_det.sum(), dL_dp);
    if (dL_dy.data() == dL_dx.data() && dL_dy.size() > 0) {
      const Batch<Scalar, Dim> g = dL_dy * w;
      dL_dx = g;
    } else {
      dL_dx.noalias() = dL_dy * w;
    }
  }

  /// x = W⁻¹ (y − c): with g_y = W⁻ᵀ dL/dx,  dL/dy = g_y,  dL/dW = −Σ_n g_y,n x_nᵀ,
  /// dL/dc = −Σ_n g_y,n, and dL/du_i gets −Σ_n dL/dld_n from the log-det.
  void backward_inverse(Params<Scalar> p, const Cache& cache, ConstBatchRef<Scalar, Dim> dL_dx,
                        ConstVectorRef<Scalar> dL_dlog_det, BatchRef<Scalar, Dim> dL_dy, Grads<Scalar> dL_dp) const {
    check_backward(p, cache, dL_dx, dL_dlog_det, dL_dy, dL_dp);
    const Square l = lower(p), u = upper(p);
    // Row form: G_y = G_x W⁻¹ = G_x U⁻¹ L⁻¹ Pᵀ, by two solves on the right and a column gather.
    Batch<Scalar, Dim> a = dL_dx;
    u.template triangularView<Eigen::Upper>().template solveInPlace<Eigen::OnTheRight>(a);
    l.template triangularView<Eigen::UnitLower>().template solveInPlace<Eigen::OnTheRight>(a);
    Batch<Scalar, Dim> gy(a.rows(), dim_);
    for (Index i = 0; i < dim_; ++i) gy.col(i) = a.col(perm_[std::size_t(i)]);
    const Square dw = -(gy.transpose() * cache.x);
    accumulate(l, u, dw, -gy.colwise().sum(), -dL_dlog_det.sum(), dL_dp);
    dL_dy = gy;
  }

  Index point_scratch_size() const { return dim_; }

  void forward_point(Params<Scalar> p, const Scalar* x, Scalar* y, Scalar& log_det, Scalar* scratch) const {
    const Index d = dim_;
    const Scalar* lo = p.data() + off_lower();
    const Scalar* up = p.data() + off_upper();
    const Scalar* ud = p.data() + off_log_diag();
    const Scalar* c = p.data() + off_bias();
    Scalar* t = scratch;
    std::copy(x, x + d, t);
    // t ← U t, top row first (row i reads t_j for j ≥ i only, which are still untouched).
    for (Index i = 0; i < d; ++i) {
      Scalar acc = std::exp(ud[i]) * t[i];
      for (Index j = i + 1; j < d; ++j) acc += (*up++) * t[j];
      t[i] = acc;
    }
    // t ← L t, bottom row first (row i reads t_j for j ≤ i only).
    for (Index i = d - 1; i >= 1; --i) {
      const Scalar* row = lo + i * (i - 1) / 2;
      Scalar acc = t[i];
      for (Index j = 0; j < i; ++j) acc += row[j] * t[j];
      t[i] = acc;
    }
    for (Index i = 0; i < d; ++i) y[i] = t[perm_[std::size_t(i)]] + c[i];
    log_det += sum_log_diag(p);
  }

  void inverse_point(Params<Scalar> p, const Scalar* y, Scalar* x, Scalar& log_det, Scalar* scratch) const {
    const Index d = dim_;
    const Scalar* lo = p.data() + off_lower();
    const Scalar* up = p.data() + off_upper();
    const Scalar* ud = p.data() + off_log_diag();
    const Scalar* c = p.data() + off_bias();
    Scalar* t = scratch;
    for (Index i = 0; i < d; ++i) t[perm_[std::size_t(i)]] = y[i] - c[i];
    // L t' = t by forward substitution (unit diagonal).
    for (Index i = 1; i < d; ++i) {
      const Scalar* row = lo + i * (i - 1) / 2;
      Scalar acc = t[i];
      for (Index j = 0; j < i; ++j) acc -= row[j] * t[j];
      t[i] = acc;
    }
    // U x = t' by back substitution. Row i of the strictly upper part starts at
    // i(D−1) − i(i−1)/2.
    for (Index i = d - 1; i >= 0; --i) {
      const Scalar* row = up + i * (d - 1) - i * (i - 1) / 2;
      Scalar acc = t[i];
      for (Index j = i + 1; j < d; ++j) acc -= row[j - i - 1] * t[j];
      t[i] = acc / std::exp(ud[i]);
    }
    std::copy(t, t + d, x);
    log_det -= sum_log_diag(p);
  }

 private:
  using Row = Eigen::Matrix<Scalar, 1, Dim>;

  static std::string where() { return "LULinear"; }

  static void check_dim(Index d) {
    detail::require(d >= 1, where(), "dim must be >= 1, got ", d);
    detail::require(Dim == Dynamic || d == Dim, where(), "dim is ", d, ", expected ", Dim,
                    " (the compile-time Dim)");
  }

  Index num_triangular() const { return dim_ * (dim_ - 1) / 2; }
  Index off_lower() const { return 0; }
  Index off_upper() const { return num_triangular(); }
  Index off_log_diag() const { return 2 * num_triangular(); }
  Index off_bias() const { return 2 * num_triangular() + dim_; }

  Eigen::Map<const Row> bias(const Params<Scalar>& p) const {
    return Eigen::Map<const Row>(p.data() + off_bias(), dim_);
  }
  Scalar sum_log_diag(const Params<Scalar>& p) const {
    Scalar sum = 0;
    for (Index i = 0; i < dim_; ++i) sum += p[std::size_t(off_log_diag() + i)];
    return sum;
  }

  /// W = P L U: row i of W is row π(i) of L U.
  Square weight_from(const Square& l, const Square& u) const {
    const Square m = l.template triangularView<Eigen::UnitLower>() * u;
    Square w(dim_, dim_);
    for (Index i = 0; i < dim_; ++i) w.row(i) = m.row(perm_[std::size_t(i)]);
    return w;
  }

  /// Accumulates dL/dp from dL/dW, dL/dc and the log-det weight Σ_n dL/dld_n (with its sign):
  /// M = L U, dL/dM = Pᵀ dL/dW, dL/dL = dL/dM Uᵀ (strictly lower part),
  /// dL/dU = Lᵀ dL/dM (strictly upper part), dL/du_i = (Lᵀ dL/dM)_ii e^{u_i} + ld_weight.
  template <class DC>
  void accumulate(const Square& l, const Square& u, const Square& dw, const DC& dc, Scalar ld_weight,
                  Grads<Scalar> g) const {
    Square dm(dim_, dim_);
    for (Index i = 0; i < dim_; ++i) dm.row(perm_[std::size_t(i)]) = dw.row(i);
    const Square dl = dm * u.transpose();
    const Square du = l.transpose() * dm;
    Scalar* q = g.data() + off_lower();
    for (Index i = 1; i < dim_; ++i)
      for (Index j = 0; j < i; ++j) *q++ += dl(i, j);
    q = g.data() + off_upper();
    for (Index i = 0; i < dim_; ++i)
      for (Index j = i + 1; j < dim_; ++j) *q++ += du(i, j);
    for (Index i = 0; i < dim_; ++i) {
      g[std::size_t(off_log_diag() + i)] += du(i, i) * u(i, i) + ld_weight;
      g[std::size_t(off_bias() + i)] += dc[i];
    }
  }

  void check_params(std::size_t size) const {
    detail::require(Index(size) == num_params(), where(), "parameter span has ", size, " values, expected ",
                    num_params(), " (D² + D for D = ", dim_, ")");
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
  std::vector<Index> perm_;
};

}  // namespace fort
