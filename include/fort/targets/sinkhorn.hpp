#pragma once
/// \file
/// Entropic optimal transport between point clouds: log-domain Sinkhorn.
///
///   P* = argmin over P ≥ 0 with P 1 = a, Pᵀ 1 = b of  Σ_ij P_ij c_ij + ε KL(P ‖ a ⊗ b),
///   c_ij = ‖x0_i − x1_j‖²,
///
/// for x0 [N, D], x1 [M, D] with weights a [N], b [M] (uniform by default; normalised to sum 1).
/// N and M may differ. The plan is kept in dual form, P_ij = a_i b_j exp((f_i + g_j − c_ij) / ε),
/// and the potentials are updated alternately by log-sum-exp (Cuturi, NeurIPS 2013; the log
/// domain as in Peyré & Cuturi, "Computational Optimal Transport", 2019, §4.4):
///
///   g_j = −ε log Σ_i a_i exp((f_i − c_ij) / ε),   f_i = −ε log Σ_j b_j exp((g_j − c_ij) / ε).
///
/// After a g-update the column marginals are exact; the run stops when the row marginals r_i
/// satisfy Σ_i |r_i − a_i| ≤ tolerance (an L1 error on probability vectors), or after
/// max_iterations (an error by default: a silent cap is a known failure mode).
///
/// For ε → 0 the entropic cost tends to the exact OT cost; for uniform weights and N = M,
/// exact ≤ transport_cost ≤ exact + ε log N. Small ε needs many iterations (near-ties between
/// pairings can make convergence as slow as 1/iterations); `epsilon_start` anneals ε
/// geometrically from a larger value, warm-starting each stage with the last potentials.
///
/// Complexity: O(N·M·D) time per iteration (costs are recomputed, two exp per entry), O((N+M)·D)
/// memory: the N×M cost matrix and plan are never stored (except by `sinkhorn_plan`).
/// Arithmetic in double for float input too. Deterministic; single-threaded.
///
/// Targets for FORT: `sinkhorn_sample_targets` draws one target index per row from the plan's
/// conditional P_i· / r_i with a counter-based `Random` (draw i for row i: independent of
/// evaluation order); `sinkhorn_barycentric_targets` returns the conditional means Σ_j P_ij x1_j / r_i.
/// The conditional of row i is b_j exp((g_j − c_ij)/ε) normalised; it does not involve a_i, so
/// rows of zero weight get targets too. Columns of zero weight are never chosen.
///
/// Errors (fort::Error): different dimensions, N = 0, M = 0, D = 0, NaN/Inf coordinates,
/// coordinates whose squared distances overflow, weights of the wrong size, negative or
/// non-finite weights or a zero total, ε ≤ 0 or so small that c/ε overflows, bad options,
/// no convergence (unless allowed), results that do not match the point clouds.

#include <algorithm>
#include <cmath>
#include <limits>
#include <string_view>
#include <vector>

#include "fort/core/error.hpp"
#include "fort/core/random.hpp"
#include "fort/core/types.hpp"
#include "fort/targets/point_cost.hpp"

namespace fort {

struct SinkhornOptions {
  /// Entropic regularisation ε (> 0). With `relative_epsilon` it is multiplied by the mean cost
  /// Σ_ij a_i b_j c_ij (or used as is when that mean is 0).
  double epsilon = 0.05;
  bool relative_epsilon = true;
  /// Stop when the L1 row-marginal error Σ_i |r_i − a_i| is at most this (> 0).
  double tolerance = 1e-6;
  /// Iteration budget (≥ 1), shared by all annealing stages. One iteration = one g- and one
  /// f-update.
  Index max_iterations = 10000;
  /// If > epsilon (same units as epsilon), ε is annealed: stages at epsilon_start,
  /// epsilon_start · epsilon_decay, ... above epsilon, each warm-starting the next, then the
  /// final stage at epsilon. 0 = off. Often much faster for small ε (one test problem: 38
  /// iterations instead of > 100000 at ε = 1e-3 · mean cost).
  double epsilon_start = 0.0;
  double epsilon_decay = 0.5;  ///< in (0, 1)
  /// Intermediate annealing stages stop at marginal error max(tolerance, stage_tolerance): they
  /// only provide warm starts.
  double stage_tolerance = 1e-2;
  /// If false, a run that hits max_iterations returns with converged = false instead of throwing.
  bool throw_on_no_convergence = true;
};

struct SinkhornResult {
  Vector<double> f;  ///< row potentials [N], cost units
  Vector<double> g;  ///< column potentials [M], cost units
  Vector<double> a;  ///< normalised row weights [N] (sum 1)
  Vector<double> b;  ///< normalised column weights [M] (sum 1)
  double epsilon = 0.0;         ///< the absolute ε of the final stage
  double marginal_error = 0.0;  ///< Σ_i |r_i − a_i| for the returned potentials (columns exact)
  Index iterations = 0;         ///< iterations over all stages
  bool converged = false;
  double transport_cost = 0.0;  ///< Σ_ij P_ij c_ij (the plan's cost, without the entropy term)
  double dual_objective = 0.0;  ///< Σ_i a_i f_i + Σ_j b_j g_j (the entropic OT value at convergence)
};

namespace detail {

/// Squared Euclidean costs between two clouds of possibly different sizes, both shifted by the
/// same point (distances are unchanged; magnitudes and rounding stay small). x1 is stored
/// coordinate-major so that a cost row is a few vectorised passes.
class CloudCost {
 public:
  template <class D0, class D1>
  CloudCost(const Eigen::MatrixBase<D0>& x0, const Eigen::MatrixBase<D1>& x1, std::string_view where)
      : n_(x0.rows()), m_(x1.rows()), dim_(x0.cols()) {
    require(x0.cols() == x1.cols(), where, "x0 has dimension ", x0.cols(), " and x1 has dimension ", x1.cols(),
            "; expected the same dimension");
    require(n_ >= 1, where, "x0 has no points (N = 0); expected N >= 1");
    require(m_ >= 1, where, "x1 has no points (M = 0); expected M >= 1");
    require(dim_ >= 1, where, "points have dimension 0; expected D >= 1");
    require_finite_points(x0, "x0", where);
    require_finite_points(x1, "x1", where);
    // Scaled before summing so that coordinates near the double limit cannot overflow the centre.
    const Eigen::RowVectorXd centre = (x0.template cast<double>() / double(2 * n_)).colwise().sum() +
                                      (x1.template cast<double>() / double(2 * m_)).colwise().sum();
    x0_ = x0.template cast<double>().rowwise() - centre;
    x1t_ = (x1.template cast<double>().rowwise() - centre).transpose();
    const double max_sq = std::max(x0_.rowwise().squaredNorm().maxCoeff(), x1t_.colwise().squaredNorm().maxCoeff());
    max_cost_bound_ = 4.0 * max_sq;  // ‖p − q‖² ≤ (‖p‖ + ‖q‖)²
    // allFinite first: a NaN (inf − inf) must not slip past maxCoeff's comparisons.
    require(x0_.allFinite() && x1t_.allFinite() && std::isfinite(max_cost_bound_ * double(std::max(n_, m_))), where,
            "coordinates are too large: squared distances would overflow double (largest squared norm after "
            "centering is ",
            max_sq, "); rescale the data");
  }

  Index rows() const { return n_; }
  Index cols() const { return m_; }
  Index dim() const { return dim_; }
  double max_cost_bound() const { return max_cost_bound_; }

  /// out[j] = ‖x0_i − x1_j‖² for all j < M.
  void row(Index i, double* out) const { detail::squared_distance_row(x0_, i, x1t_, out); }


  /// Σ_ij a_i b_j c_ij in closed form: Σ a‖x0‖² + Σ b‖x1‖² − 2 (Σ a x0)·(Σ b x1).
  double mean_cost(const Vector<double>& a, const Vector<double>& b) const {
    const Eigen::RowVectorXd ma = a.transpose() * x0_, mb = (x1t_ * b).transpose();
    const double value = a.dot(x0_.rowwise().squaredNorm()) + b.dot(x1t_.colwise().squaredNorm().transpose()) -
                         2.0 * ma.dot(mb);
    return std::max(0.0, value);
  }

 private:
  Index n_, m_, dim_;
  double max_cost_bound_ = 0.0;
  Matrix<double> x0_;   // [N, D]
  Matrix<double> x1t_;  // [D, M]
};

/// Weights as a normalised double vector: uniform when `given` is null.
template <class W>
Vector<double> normalised_weights(const Eigen::MatrixBase<W>* given, Index count, const char* name, const char* of,
                                  std::string_view where) {
  if (given == nullptr) return Vector<double>::Constant(count, 1.0 / double(count));
  require(given->rows() == 1 || given->cols() == 1, where, name, " has shape [", given->rows(), ", ",
          given->cols(), "]; expected a vector");
  require(given->size() == count, where, name, " has ", given->size(), " entries, expected ", count,
          " (one per point of ", of, ")");
  const Eigen::MatrixXd values = given->template cast<double>();  // any expression; linear access
  Vector<double> w(count);
  for (Index k = 0; k < count; ++k) {
    const double value = values(k);
    require(std::isfinite(value) && value >= 0.0, where, name, "[", k, "] is ", value,
            "; expected finite non-negative weights");
    w[k] = value;
  }
  const double total = w.sum();
  require(total > 0.0 && std::isfinite(total), where, name, " sums to ", total, "; expected a positive finite total");
  return w / total;  // both marginals now sum to 1 up to one rounding, whatever their input totals
}

/// Log-sum-exp of t[0..m) (entries may be −inf; at least one must be finite).
inline double log_sum_exp(const double* t, Index m) {
  const Eigen::Map<const Eigen::ArrayXd> v(t, m);
  const double top = v.maxCoeff();
  return top + std::log((v - top).exp().sum());
}

/// The Sinkhorn iterations at a fixed absolute ε, continuing from (f, g).
class SinkhornSolver {
 public:
  SinkhornSolver(const CloudCost& cost, const Vector<double>& a, const Vector<double>& b)
      : cost_(cost), n_(cost.rows()), m_(cost.cols()), log_a_(a.array().log()), log_b_(b.array().log()), a_(a),
        c_(m_), t_(m_), col_max_(m_), col_sum_(m_), s_(n_) {}

  /// Runs until the row-marginal error ≤ tol or `budget` iterations; returns iterations used.
  /// On return g is fresh (columns exact) and `error` belongs to the returned (f, g).
  Index run(double eps, double tol, Index budget, Vector<double>& f, Vector<double>& g, double& error) {
    error = std::numeric_limits<double>::infinity();
    for (Index it = 1; it <= budget; ++it) {
      update_g(eps, f, g);
      error = row_pass(eps, f, g);
      if (error <= tol || it == budget) return it;  // f stays the one that `error` describes
      f = -eps * s_;
    }
    return budget;
  }

  /// Σ_ij P_ij c_ij.
  double transport_cost(double eps, const Vector<double>& f, const Vector<double>& g) {
    double total = 0.0;
    for (Index i = 0; i < n_; ++i) {
      if (a_[i] == 0.0) continue;
      cost_.row(i, c_.data());
      t_ = (log_a_[i] + log_b_.array() + (f[i] + g.array() - c_.array()) / eps).matrix();
      total += (t_.array().exp() * c_.array()).sum();
    }
    return total;
  }

 private:
  /// g_j = −ε LSE_i(log a_i + (f_i − c_ij)/ε) without storing the cost matrix. Fast path: the
  /// sums are taken relative to the current g, Σ_i exp(log a_i + (f_i + g_j − c_ij)/ε), which
  /// is the column marginal over b_j and so neither overflows nor underflows once f has been
  /// updated from g (vectorised exp, one pass). Columns whose sum leaves a safe range (first
  /// iteration, far outliers) are redone by a streaming log-sum-exp, which is always stable.
  /// Rows of zero weight contribute nothing.
  void update_g(double eps, const Vector<double>& f, Vector<double>& g) {
    constexpr double lo = 1e-200, hi = 1e200;
    col_sum_.setZero();
    for (Index i = 0; i < n_; ++i) {
      if (a_[i] == 0.0) continue;
      cost_.row(i, c_.data());
      col_sum_.array() += (log_a_[i] + (f[i] + g.array() - c_.array()) / eps).exp();
    }
    redo_.clear();
    for (Index j = 0; j < m_; ++j) {
      if (col_sum_[j] >= lo && col_sum_[j] <= hi) {
        g[j] -= eps * std::log(col_sum_[j]);
      } else {
        redo_.push_back(j);
      }
    }
    if (redo_.empty()) return;
    for (const Index j : redo_) {
      col_max_[j] = -std::numeric_limits<double>::infinity();
      col_sum_[j] = 0.0;
    }
    for (Index i = 0; i < n_; ++i) {
      if (a_[i] == 0.0) continue;
      cost_.row(i, c_.data());
      const double base = log_a_[i] + f[i] / eps;
      for (const Index j : redo_) {
        const double t = base - c_[j] / eps;
        if (t <= col_max_[j]) {
          col_sum_[j] += std::exp(t - col_max_[j]);
        } else {
          col_sum_[j] = col_sum_[j] * std::exp(col_max_[j] - t) + 1.0;
          col_max_[j] = t;
        }
      }
    }
    for (const Index j : redo_) g[j] = -eps * (col_max_[j] + std::log(col_sum_[j]));
  }

  /// s_i = LSE_j(log b_j + (g_j − c_ij)/ε) (the next f is −ε s) and the row-marginal error of the
  /// current (f, g): r_i = a_i exp(f_i/ε + s_i).
  double row_pass(double eps, const Vector<double>& f, const Vector<double>& g) {
    double error = 0.0;
    for (Index i = 0; i < n_; ++i) {
      cost_.row(i, c_.data());
      t_ = log_b_ + (g - c_) / eps;
      s_[i] = log_sum_exp(t_.data(), m_);
      if (a_[i] > 0.0) error += std::abs(a_[i] * std::exp(f[i] / eps + s_[i]) - a_[i]);
    }
    return error;
  }

  const CloudCost& cost_;
  Index n_, m_;
  Vector<double> log_a_, log_b_, a_;
  Vector<double> c_, t_, col_max_, col_sum_, s_;
  std::vector<Index> redo_;  // columns for the stable fallback
};

inline void validate_options(const SinkhornOptions& o, std::string_view where) {
  require(std::isfinite(o.epsilon) && o.epsilon > 0.0, where, "epsilon is ", o.epsilon, "; expected finite > 0");
  require(std::isfinite(o.tolerance) && o.tolerance > 0.0, where, "tolerance is ", o.tolerance,
          "; expected finite > 0");
  require(o.max_iterations >= 1, where, "max_iterations is ", o.max_iterations, "; expected >= 1");
  require(std::isfinite(o.epsilon_start) && o.epsilon_start >= 0.0, where, "epsilon_start is ", o.epsilon_start,
          "; expected finite >= 0 (0 = no annealing)");
  require(o.epsilon_decay > 0.0 && o.epsilon_decay < 1.0, where, "epsilon_decay is ", o.epsilon_decay,
          "; expected in (0, 1)");
  require(std::isfinite(o.stage_tolerance) && o.stage_tolerance > 0.0, where, "stage_tolerance is ",
          o.stage_tolerance, "; expected finite > 0");
}

template <class D0, class D1, class W0, class W1>
SinkhornResult sinkhorn_impl(const Eigen::MatrixBase<D0>& x0, const Eigen::MatrixBase<D1>& x1,
                             const Eigen::MatrixBase<W0>* wa, const Eigen::MatrixBase<W1>* wb,
                             const SinkhornOptions& o) {
  constexpr std::string_view where = "sinkhorn";
  validate_options(o, where);
  const CloudCost cost(x0, x1, where);
  SinkhornResult r;
  r.a = normalised_weights(wa, cost.rows(), "a", "x0", where);
  r.b = normalised_weights(wb, cost.cols(), "b", "x1", where);
  const double mean = cost.mean_cost(r.a, r.b);
  const double scale = o.relative_epsilon && mean > 0.0 ? mean : 1.0;
  r.epsilon = o.epsilon * scale;
  require(std::isfinite(cost.max_cost_bound() / r.epsilon) && r.epsilon > 0.0, where, "epsilon ", r.epsilon,
          " (absolute) is too small for costs up to ", cost.max_cost_bound(), ": cost / epsilon overflows");

  SinkhornSolver solver(cost, r.a, r.b);
  r.f = Vector<double>::Zero(cost.rows());
  r.g = Vector<double>::Zero(cost.cols());
  Index budget = o.max_iterations;
  // Annealing stages above the final ε (warm starts to a loose tolerance; not required to
  // converge). The last iteration of the budget is always left for the final ε.
  if (o.epsilon_start > o.epsilon) {
    for (double e = o.epsilon_start; e > o.epsilon && budget > 1; e *= o.epsilon_decay) {
      const Index used =
          solver.run(e * scale, std::max(o.tolerance, o.stage_tolerance), budget - 1, r.f, r.g, r.marginal_error);
      r.iterations += used;
      budget -= used;
    }
  }
  const Index used = solver.run(r.epsilon, o.tolerance, budget, r.f, r.g, r.marginal_error);
  r.iterations += used;
  r.converged = r.marginal_error <= o.tolerance;
  require(r.converged || !o.throw_on_no_convergence, where, "no convergence after ", r.iterations,
          " iterations: marginal error ", r.marginal_error, " > tolerance ", o.tolerance, " (epsilon ", r.epsilon,
          "); increase max_iterations or epsilon, use epsilon_start, or set throw_on_no_convergence = false");
  r.transport_cost = solver.transport_cost(r.epsilon, r.f, r.g);
  r.dual_objective = r.a.dot(r.f) + r.b.dot(r.g);
  return r;
}

/// Checks that `r` belongs to clouds of this shape.
inline void require_matching(const CloudCost& cost, const SinkhornResult& r, std::string_view where) {
  require(r.f.size() == cost.rows() && r.a.size() == cost.rows(), where, "result has ", r.f.size(),
          " row potentials and ", r.a.size(), " row weights, but x0 has ", cost.rows(), " points");
  require(r.g.size() == cost.cols() && r.b.size() == cost.cols(), where, "result has ", r.g.size(),
          " column potentials and ", r.b.size(), " column weights, but x1 has ", cost.cols(), " points");
  require(std::isfinite(r.epsilon) && r.epsilon > 0.0, where, "result has epsilon ", r.epsilon,
          "; expected a result returned by sinkhorn");
}

/// log of row i's conditional, up to a constant: t_j = log b_j + (g_j − c_ij)/ε. Returns the LSE.
inline double conditional_logits(const CloudCost& cost, const SinkhornResult& r, Index i, Vector<double>& c,
                                 Vector<double>& t) {
  cost.row(i, c.data());
  t = r.b.array().log() + (r.g - c).array() / r.epsilon;
  return log_sum_exp(t.data(), t.size());
}

}  // namespace detail

/// Entropic OT between x0 [N, D] and x1 [M, D] with uniform weights. Any Eigen dense
/// expressions, float or double.
template <class D0, class D1>
SinkhornResult sinkhorn(const Eigen::MatrixBase<D0>& x0, const Eigen::MatrixBase<D1>& x1,
                        const SinkhornOptions& options = {}) {
  return detail::sinkhorn_impl<D0, D1, Eigen::VectorXd, Eigen::VectorXd>(x0, x1, nullptr, nullptr, options);
}

/// Entropic OT with weights a [N] and b [M] (non-negative, any positive totals: each is
/// normalised to sum 1, so unequal totals never make the problem infeasible).
template <class D0, class D1, class W0, class W1>
SinkhornResult sinkhorn(const Eigen::MatrixBase<D0>& x0, const Eigen::MatrixBase<D1>& x1,
                        const Eigen::MatrixBase<W0>& a, const Eigen::MatrixBase<W1>& b,
                        const SinkhornOptions& options = {}) {
  return detail::sinkhorn_impl(x0, x1, &a, &b, options);
}

/// The dense plan P [N, M] (O(N·M) memory: for small problems and checks).
template <class D0, class D1>
Matrix<double> sinkhorn_plan(const Eigen::MatrixBase<D0>& x0, const Eigen::MatrixBase<D1>& x1,
                             const SinkhornResult& r) {
  constexpr std::string_view where = "sinkhorn_plan";
  const detail::CloudCost cost(x0, x1, where);
  detail::require_matching(cost, r, where);
  Matrix<double> p(cost.rows(), cost.cols());
  Vector<double> c(cost.cols());
  for (Index i = 0; i < cost.rows(); ++i) {
    cost.row(i, c.data());
    p.row(i) = (r.a[i] * r.b.array() * ((r.f[i] + r.g.array() - c.array()) / r.epsilon).exp()).transpose();
  }
  return p;
}

/// One target index per row of x0, drawn from the plan's conditional P_i· / r_i. Row i uses
/// draw number i of `rng`: deterministic and independent of evaluation order. O(N·M·D).
template <class D0, class D1>
std::vector<Index> sinkhorn_sample_targets(const Eigen::MatrixBase<D0>& x0, const Eigen::MatrixBase<D1>& x1,
                                           const SinkhornResult& r, const Random& rng) {
  constexpr std::string_view where = "sinkhorn_sample_targets";
  const detail::CloudCost cost(x0, x1, where);
  detail::require_matching(cost, r, where);
  const Index m = cost.cols();
  std::vector<Index> target_of(static_cast<std::size_t>(cost.rows()));
  Vector<double> c(m), t(m);
  for (Index i = 0; i < cost.rows(); ++i) {
    const double lse = detail::conditional_logits(cost, r, i, c, t);
    const double u = rng.uniform(std::uint64_t(i));
    // Inverse CDF; if rounding leaves the total just below u, the last column of positive mass.
    double cumulative = 0.0;
    Index chosen = -1;
    for (Index j = 0; j < m; ++j) {
      const double p = std::exp(t[j] - lse);
      if (p <= 0.0) continue;
      chosen = j;
      cumulative += p;
      if (cumulative >= u) break;
    }
    target_of[std::size_t(i)] = chosen;
  }
  return target_of;
}

/// Barycentric projection: row i's target is Σ_j P_ij x1_j / Σ_j P_ij, in x1's scalar type.
template <class D0, class D1>
Batch<typename D1::Scalar> sinkhorn_barycentric_targets(const Eigen::MatrixBase<D0>& x0,
                                                         const Eigen::MatrixBase<D1>& x1, const SinkhornResult& r) {
  constexpr std::string_view where = "sinkhorn_barycentric_targets";
  const detail::CloudCost cost(x0, x1, where);
  detail::require_matching(cost, r, where);
  const Matrix<double> y = x1.template cast<double>();
  Batch<typename D1::Scalar> out(cost.rows(), cost.dim());
  Vector<double> c(cost.cols()), t(cost.cols());
  for (Index i = 0; i < cost.rows(); ++i) {
    const double lse = detail::conditional_logits(cost, r, i, c, t);
    const Vector<double> w = (t.array() - lse).exp();
    out.row(i) = ((w.transpose() * y) / w.sum()).template cast<typename D1::Scalar>();
  }
  return out;
}

}  // namespace fort
