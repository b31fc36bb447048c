#pragma once
/// \file
/// Exact optimal-transport assignment for FORT's OT targets.
///
///   σ* = argmin over permutations σ of  Σ_i ‖x0_i − x1_σ(i)‖²
///
/// With equal-size uniform point sets the optimal transport plan is a permutation, so OT
/// targets are a linear assignment problem. `ot_assignment` solves it exactly (up to double
/// rounding) with a dense shortest-augmenting-path method in the style of Jonker & Volgenant
/// (Computing 38, 1987): column reduction, reduction transfer, two passes of augmenting row
/// reduction, then one Dijkstra-like shortest augmenting path (over reduced costs) per row
/// still free. It returns σ, the total cost and dual potentials (u, v) that certify optimality:
/// u_i + v_j ≤ c_ij for all i, j, with equality on the assignment. `check_assignment_optimality`
/// verifies such a certificate independently.
///
/// Complexity: O(N³) time in the worst case (much less in practice; measured times are in the
/// tests' notes), each cost-row evaluation costing O(N·D) for point clouds. Memory is O(N·D + N):
/// the N×N cost matrix is never stored; cost rows are recomputed from the points when needed.
/// Costs and potentials are accumulated in double, also for float input. Single-threaded.
///
/// Ties (duplicate points, equal costs) are broken deterministically: the result depends only
/// on the input values and their order, never on timing or a random state.
///
/// For sets too large for exact OT, `minibatch_ot_assignment` shuffles both sets with a seeded
/// counter-based permutation, cuts them into blocks and solves each block exactly: deterministic
/// for a given `Random`, but only block-wise optimal (biased towards longer pairings).
///
/// Errors (fort::Error): unequal numbers of points (exact assignment needs equal sizes; unequal
/// sizes need Sinkhorn or weighted minibatch OT, which this file does not provide), different
/// dimensions, N = 0, D = 0, NaN/Inf in either input, coordinates so large that squared
/// distances overflow, non-finite values returned by a user cost callable.

#include <algorithm>
#include <functional>
#include <utility>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string_view>
#include <vector>

#include "fort/core/error.hpp"
#include "fort/core/random.hpp"
#include "fort/core/types.hpp"
#include "fort/targets/point_cost.hpp"

namespace fort {

/// Result of an assignment solve. Row i (a prior sample x0_i) is paired with column
/// `target_of[i]` (the data point x1_σ(i)).
struct AssignmentResult {
  std::vector<Index> target_of;  ///< σ, a permutation of 0..N-1
  double total_cost = 0.0;       ///< Σ_i c(i, σ(i))
  std::vector<double> u;         ///< row potentials (empty for minibatch results)
  std::vector<double> v;         ///< column potentials (empty for minibatch results)
  std::int64_t rows_evaluated = 0;  ///< diagnostics: cost rows computed (N per full pass)
};

/// Outcome of `check_assignment_optimality`. All quantities are absolute, in cost units.
struct AssignmentCertificate {
  double max_dual_violation = 0.0;      ///< max over i, j of (u_i + v_j − c_ij), or 0 if none > 0
  double max_slackness_violation = 0.0; ///< max over i of |u_i + v_σ(i) − c_iσ(i)|
  double cost_scale = 0.0;              ///< max over i, j of |c_ij|
  double total_cost_error = 0.0;        ///< |Σ c_iσ(i) recomputed − result.total_cost|
  /// The assignment's cost exceeds the optimum by at most this (weak duality:
  /// N · max_dual_violation + Σ_i |slackness violation_i|).
  double optimality_gap_bound = 0.0;
  double total_scale = 0.0;  ///< N · cost_scale, the scale of sums of N costs

  double max_violation() const { return std::max(max_dual_violation, max_slackness_violation); }
  /// Violation relative to the cost scale.
  double relative_violation() const { return max_violation() / std::max(cost_scale, std::numeric_limits<double>::min()); }
  /// True when the certificate holds to `relative_tolerance` of the cost scale.
  bool holds(double relative_tolerance = 1e-9) const {
    return relative_violation() <= relative_tolerance && total_cost_error <= relative_tolerance * total_scale;
  }
};

namespace detail {

/// Squared Euclidean costs between two point clouds, computed on the fly. Both sets are
/// converted to double and shifted by their common mean (distances do not change; it keeps
/// magnitudes, and so rounding, small). Rows of x1 are stored coordinate-major so that a whole
/// cost row is a few vectorised passes over contiguous memory.
class SquaredEuclideanCost {
 public:
  template <class D0, class D1>
  SquaredEuclideanCost(const Eigen::MatrixBase<D0>& x0, const Eigen::MatrixBase<D1>& x1, std::string_view where)
      : n_(x0.rows()), dim_(x0.cols()) {
    validate_point_sets(x0, x1, where);
    Eigen::RowVectorXd mean = Eigen::RowVectorXd::Zero(dim_);
    for (Index i = 0; i < n_; ++i) mean += x0.row(i).template cast<double>() + x1.row(i).template cast<double>();
    mean /= double(2 * n_);
    if (!mean.allFinite()) {  // the plain sum overflowed (coordinates near the double limit)
      mean.setZero();
      for (Index i = 0; i < n_; ++i)
        mean += x0.row(i).template cast<double>() / double(2 * n_) + x1.row(i).template cast<double>() / double(2 * n_);
    }
    x0_.resize(n_, dim_);
    x1t_.resize(dim_, n_);
    double max_sq = 0.0;
    for (Index i = 0; i < n_; ++i) {
      x0_.row(i) = x0.row(i).template cast<double>() - mean;
      x1t_.col(i) = (x1.row(i).template cast<double>() - mean).transpose();
      max_sq = std::max({max_sq, x0_.row(i).squaredNorm(), x1t_.col(i).squaredNorm()});
    }
    // Every cost is at most (|a| + |b|)² ≤ 4 max|x|², and potentials sum up to N of them.
    // allFinite: a NaN from inf − inf must not slip past the comparison in std::max.
    require(x0_.allFinite() && x1t_.allFinite() && std::isfinite(4.0 * max_sq * double(n_)), where,
            "coordinates are too large: squared distances would overflow double (largest squared norm "
            "after centering is ",
            max_sq, "); rescale the data");
  }

  Index size() const { return n_; }

  /// out[j] = ‖x0_i − x1_j‖² for all j.
  void row(Index i, double* out) const { detail::squared_distance_row(x0_, i, x1t_, out); }


  /// The same cost restricted to rows x0[rows] and columns x1[cols] (already centred data).
  SquaredEuclideanCost subset(const std::vector<Index>& rows, const std::vector<Index>& cols) const {
    SquaredEuclideanCost sub;
    sub.n_ = Index(rows.size());
    sub.dim_ = dim_;
    sub.x0_.resize(sub.n_, dim_);
    sub.x1t_.resize(dim_, Index(cols.size()));
    for (Index s = 0; s < sub.n_; ++s) sub.x0_.row(s) = x0_.row(rows[s]);
    for (Index s = 0; s < Index(cols.size()); ++s) sub.x1t_.col(s) = x1t_.col(cols[s]);
    return sub;
  }

 private:
  template <class D0, class D1>
  void validate_point_sets(const Eigen::MatrixBase<D0>& x0, const Eigen::MatrixBase<D1>& x1, std::string_view where) {
    require(x0.rows() == x1.rows(), where, "x0 has ", x0.rows(), " points and x1 has ", x1.rows(),
            "; an exact OT assignment (a permutation) needs equal sizes. Unequal sizes need Sinkhorn or "
            "weighted minibatch OT, which this function does not support");
    require(x0.cols() == x1.cols(), where, "x0 has dimension ", x0.cols(), " and x1 has dimension ", x1.cols(),
            "; expected the same dimension");
    require(x0.rows() >= 1, where, "no points (N = 0); expected N >= 1");
    require(x0.cols() >= 1, where, "points have dimension 0; expected D >= 1");
    require_finite_points(x0, "x0", where);
    require_finite_points(x1, "x1", where);
  }

  SquaredEuclideanCost() = default;

  Index n_ = 0, dim_ = 0;
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> x0_;
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> x1t_;  // [D, N]: coordinate-major
};

/// Adapts a user callable cost(i, j) -> number to the row interface, rejecting non-finite costs.
template <class CostFn>
class CallableCost {
 public:
  CallableCost(Index n, CostFn& cost, std::string_view where) : n_(n), cost_(cost), where_(where) {}
  Index size() const { return n_; }
  void row(Index i, double* out) const {
    for (Index j = 0; j < n_; ++j) out[j] = (*this)(i, j);
  }
  double operator()(Index i, Index j) const {
    const double c = static_cast<double>(cost_(i, j));
    if (!std::isfinite(c)) throw Error(where_, concat("cost(", i, ", ", j, ") is ", c, "; expected a finite cost"));
    return c;
  }

 private:
  Index n_;
  CostFn& cost_;
  std::string_view where_;
};

/// Dense shortest-augmenting-path solver with lazily evaluated cost rows.
/// `Cost` provides size() and row(i, out) (out[j] = c_ij for all j); the solver never asks for a
/// single entry, so all costs it compares come from the same arithmetic.
///
/// Notation: w_ij = c_ij − v_j (cost reduced by the column price). Invariant kept throughout (up
/// to rounding): every assigned row i attains min_j w_ij at its own column. Then
/// u_i := c_iσ(i) − v_σ(i) is a feasible dual with complementary slackness on the assigned pairs,
/// and once every row is assigned the assignment is optimal.
///
/// Column prices v only ever decrease, so every w_ij only ever increases. That makes a short
/// candidate list per row — its k smallest w_ij at the time the row was last evaluated, plus the
/// (k+1)-th smallest value θ_i — a permanent lower bound: every unlisted w_ij ≥ θ_i. Row
/// minima and shortest-path steps use the list and fall back to a full O(N·D) row evaluation
/// only when the bound cannot rule out an unlisted column. The result is exactly what the dense
/// algorithm computes; most steps just cost O(k) instead of O(N·D).
template <class Cost>
class AssignmentSolver {
 public:
  /// Candidate-list length; a tuning constant (time, not correctness, depends on it).
  static constexpr Index max_candidates = 32;
  /// Full-row evaluations a list-based search may make beyond half the rows it has reached
  /// before it is redone densely; a tuning constant like max_candidates.
  static constexpr Index lazy_expansion_allowance = 8;
  /// Point clouds at least this large get the multiscale warm start (see warm_start_prices).
  static constexpr Index warm_start_min_size = 1024;

  AssignmentSolver(const Cost& cost, std::string_view where)
      : cost_(cost), where_(where), n_(cost.size()), k_(std::min(n_, max_candidates)) {}

  AssignmentResult solve() {
    allocate();
    if (n_ == 1) {
      load_row(0);
      assign(0, 0, c_[0]);
      v_[0] = 0.0;
    } else {
      bool warm = false;
      if constexpr (requires { cost_.subset(std::vector<Index>{}, std::vector<Index>{}); }) {
        if (n_ >= warm_start_min_size) {
          warm_start_prices(cost_.subset(sample_, sample_));
          warm = true;
        }
      }
      if (warm) {
        assign_from_prices();
      } else {
        column_reduction();
        reduction_transfer();
      }
      augmenting_row_reduction();
      for (const Index f : free_rows_) augment(f);
    }
    AssignmentResult result;
    result.target_of = col_of_;
    result.v = v_;
    result.u.resize(n_);
    for (Index i = 0; i < n_; ++i) {
      result.u[i] = assigned_cost_[i] - v_[col_of_[i]];
      result.total_cost += assigned_cost_[i];
    }
    result.rows_evaluated = rows_evaluated_;
    return result;
  }

 private:
  static constexpr Index none = -1;
  static constexpr double inf = std::numeric_limits<double>::infinity();

  void allocate() {
    c_.resize(n_);
    v_.assign(n_, inf);
    row_of_.assign(n_, none);
    col_of_.assign(n_, none);
    assigned_cost_.assign(n_, 0.0);
    cand_col_.resize(std::size_t(n_ * k_));
    cand_cost_.resize(std::size_t(n_ * k_));
    theta_.assign(n_, inf);
    sel_.reserve(std::size_t(n_) + 1);
    cols_.resize(n_);
    sample_.resize(std::size_t(n_ / 4));
    for (std::size_t s = 0; s < sample_.size(); ++s) sample_[s] = Index(4 * s + 1);  // strided: deterministic
    dist_.assign(n_, inf);
    pred_.assign(n_, none);
    pred_cost_.assign(n_, 0.0);
    stamp_.assign(n_, 0);
    done_.assign(n_, 0);
    level_stamp_.assign(n_, 0);
    level_.assign(n_, 0);
    w_.resize(n_);
    row_delta_.assign(n_, 0.0);
    row_base_.assign(n_, 0.0);
  }

  void load_row(Index i) {
    cost_.row(i, c_.data());
    ++rows_evaluated_;
  }

  void assign(Index i, Index j, double cij) {
    col_of_[i] = j;
    row_of_[j] = i;
    assigned_cost_[i] = cij;
  }

  /// Leaves the min(n, m + 1) smallest (w_j, j) pairs of w_ at the front of sel_ such that
  /// sel_[m] is the (m+1)-th smallest and sel_[0..m) the m smallest, and likewise sel_[k] the
  /// (k+1)-th smallest with sel_[0..k) the k smallest (needs k <= m). Pairs compare by w, then
  /// by column index, so the choice is deterministic.
  void select_smallest(Index m) {
    sel_.clear();
    const std::size_t keep = std::size_t(std::min(n_, m + 1));
    if (Index(keep) * 16 <= n_) {
      // Few wanted: one pass with a bounded max-heap, usually a single comparison per column.
      for (Index j = 0; j < n_; ++j) {
        if (sel_.size() < keep) {
          sel_.emplace_back(w_[j], j);
          std::push_heap(sel_.begin(), sel_.end());
        } else if (w_[j] < sel_.front().first) {  // equal w: the earlier (lower) index stays
          std::pop_heap(sel_.begin(), sel_.end());
          sel_.back() = {w_[j], j};
          std::push_heap(sel_.begin(), sel_.end());
        }
      }
      std::sort_heap(sel_.begin(), sel_.end());
      return;
    }
    // Many wanted: linear-time selection over all pairs.
    for (Index j = 0; j < n_; ++j) sel_.emplace_back(w_[j], j);
    if (Index(keep) < n_) std::nth_element(sel_.begin(), sel_.begin() + m, sel_.end());
    if (k_ < Index(keep)) std::nth_element(sel_.begin(), sel_.begin() + k_, sel_.begin() + Index(keep));
  }

  /// Rebuilds row i's candidate list from w_ (the freshly loaded row minus prices): its k
  /// smallest entries and θ_i, the next one. Expects select_smallest(m >= k) to have run.
  void store_candidates(Index i) {
    for (Index s = 0; s < k_; ++s) {
      cand_col_[std::size_t(i * k_ + s)] = sel_[s].second;
      cand_cost_[std::size_t(i * k_ + s)] = c_[sel_[s].second];
    }
    theta_[i] = k_ < n_ ? sel_[k_].first : inf;
  }

  void build_candidates(Index i) {
    for (Index j = 0; j < n_; ++j) w_[j] = c_[j] - v_[j];
    select_smallest(k_);
    store_candidates(i);
  }

  // 1'. Multiscale warm start (point clouds, n >= warm_start_min_size): solve the problem on
  //     every 4th point of each set (recursively, the same way), then price every column by the
  //     c-transform of the sample's row potentials, v_j = min over sampled rows s of
  //     (c_sj − u_s). These approximate the Kantorovich potential of the whole problem, so rows
  //     start next to their optimal partners and augmenting paths stay short. Without it,
  //     inputs with separated modes in low dimension need paths through most of the set.
  //     Costs n/4 full rows here plus the recursion (about n/16 rows' worth of work).
  template <class SubCost>
  void warm_start_prices(const SubCost& sub) {
    const AssignmentResult coarse = AssignmentSolver<SubCost>(sub, where_).solve();
    rows_evaluated_ += coarse.rows_evaluated;
    std::fill(v_.begin(), v_.end(), inf);
    for (std::size_t s = 0; s < sample_.size(); ++s) {
      load_row(sample_[s]);
      for (Index j = 0; j < n_; ++j) v_[j] = std::min(v_[j], c_[j] - coarse.u[s]);
    }
  }

  // 2'. After a warm start: every row takes a free column where it attains its minimum w (the
  //     lowest such index), builds its candidate list, and otherwise stays free.
  void assign_from_prices() {
    double max_abs_cost = 0.0;
    for (Index i = 0; i < n_; ++i) {
      load_row(i);
      double u1 = inf;
      for (Index j = 0; j < n_; ++j) {
        max_abs_cost = std::max(max_abs_cost, std::abs(c_[j]));
        u1 = std::min(u1, c_[j] - v_[j]);
      }
      for (Index j = 0; j < n_; ++j)
        if (row_of_[j] == none && c_[j] - v_[j] == u1) {
          assign(i, j, c_[j]);
          break;
        }
      build_candidates(i);
    }
    require_summable(max_abs_cost);
    for (Index i = 0; i < n_; ++i)
      if (col_of_[i] == none) free_rows_.push_back(i);
  }

  void require_summable(double max_abs_cost) const {
    require(std::isfinite(4.0 * max_abs_cost * double(n_)), where_, "costs are too large (max |cost| = ",
            max_abs_cost, "): sums of ", n_, " costs would overflow double; rescale the costs");
  }

  // 1. Column reduction: v_j = min_i c_ij; each column's minimising row takes it if still free
  //    (strict < keeps the lowest row index among ties). Also rejects costs whose sums overflow.
  void column_reduction() {
    std::vector<Index> best_row(n_, none);
    double max_abs_cost = 0.0;
    for (Index i = 0; i < n_; ++i) {
      load_row(i);
      for (Index j = 0; j < n_; ++j) {
        max_abs_cost = std::max(max_abs_cost, std::abs(c_[j]));
        if (c_[j] < v_[j]) {
          v_[j] = c_[j];
          best_row[j] = i;
        }
      }
    }
    require_summable(max_abs_cost);
    for (Index j = 0; j < n_; ++j)
      if (col_of_[best_row[j]] == none) assign(best_row[j], j, v_[j]);
  }

  // 2. Reduction transfer: lower the price of each assigned column by its row's second-best
  //    reduced cost, so the row keeps it only while it stays competitive (moves slack into the
  //    implicit row potential). A row left without a column takes a free column where it
  //    attains the column minimum (w = 0, its row minimum), which resolves ties and duplicate
  //    points cheaply. The same pass builds every row's candidate list.
  void reduction_transfer() {
    for (Index i = 0; i < n_; ++i) {
      load_row(i);
      if (col_of_[i] == none)
        for (Index j = 0; j < n_; ++j)
          if (row_of_[j] == none && c_[j] - v_[j] <= 0.0) {
            assign(i, j, c_[j]);
            break;
          }
      const Index j1 = col_of_[i];
      if (j1 != none) {
        double second = inf;
        for (Index j = 0; j < n_; ++j)
          if (j != j1) second = std::min(second, c_[j] - v_[j]);
        v_[j1] -= second;
      }
      build_candidates(i);
    }
    for (Index i = 0; i < n_; ++i)
      if (col_of_[i] == none) free_rows_.push_back(i);
  }

  /// Smallest and second-smallest w_ij of row i (exact: from the list when θ_i proves that no
  /// unlisted column can beat them, else from a full row, which also refreshes the list), and
  /// a free column jf that attains the smallest, if one was seen.
  void two_smallest(Index i, double& u1, Index& j1, double& u2, Index& j2, double& c1, double& c2, Index& jf,
                    double& cf) {
    auto scan = [&](auto&& entries, Index count) {
      u1 = u2 = inf;
      j1 = j2 = none;
      for (Index s = 0; s < count; ++s) {
        const auto [j, cij] = entries(s);
        const double w = cij - v_[j];
        if (w < u2 || (w == u2 && j < j2)) {
          if (w < u1 || (w == u1 && j < j1)) {
            u2 = u1, j2 = j1, c2 = c1;
            u1 = w, j1 = j, c1 = cij;
          } else {
            u2 = w, j2 = j, c2 = cij;
          }
        }
      }
      jf = none;
      for (Index s = 0; s < count && jf == none; ++s) {
        const auto [j, cij] = entries(s);
        if (row_of_[j] == none && cij - v_[j] == u1) jf = j, cf = cij;
      }
    };
    const std::size_t base = std::size_t(i * k_);
    const auto listed = [&](Index s) { return std::pair(cand_col_[base + s], cand_cost_[base + s]); };
    scan(listed, k_);
    if (u2 <= theta_[i]) return;
    load_row(i);
    build_candidates(i);
    scan([&](Index j) { return std::pair(j, c_[j]); }, n_);
  }

  // 3. Augmenting row reduction (an auction without epsilon): a free row takes its cheapest
  //    column, lowering that column's price until its second-cheapest ties, and the evicted row
  //    bids next. Cheap progress for most rows; a step budget stops rare long price wars, which
  //    the exact phase 4 then resolves.
  void augmenting_row_reduction() {
    for (int pass = 0; pass < 2 && !free_rows_.empty(); ++pass) {
      std::vector<Index> next;
      std::int64_t budget = 4 * std::int64_t(n_);
      for (Index i : free_rows_) {
        while (true) {
          double u1, u2, c1 = 0, c2 = 0, cf = 0;
          Index j1, j2, jf;
          two_smallest(i, u1, j1, u2, j2, c1, c2, jf, cf);
          Index evicted = row_of_[j1];
          const bool strict = u1 < u2;
          if (strict) {
            v_[j1] -= u2 - u1;
          } else if (evicted != none) {  // a tie: take a free tied column, else the second
            j1 = jf != none ? jf : j2;
            c1 = jf != none ? cf : c2;
            evicted = row_of_[j1];
          }
          if (evicted != none) col_of_[evicted] = none;
          assign(i, j1, c1);
          if (evicted == none) break;
          if (strict && --budget > 0) {
            i = evicted;  // the evicted row bids at once while prices are fresh
            continue;
          }
          next.push_back(evicted);
          break;
        }
      }
      free_rows_.swap(next);
    }
  }

  // 4. Shortest augmenting path from free row f: Dijkstra over the columns, where reaching
  //    column j = σ(i) at distance δ lets row i relax column j' to δ + (w_ij' − w_ij) ≥ δ.
  //    The search is first tried with candidate lists (search_lazy); when most rows it reaches
  //    need full evaluation anyway (dense clusters, near-ties across the whole set) it is
  //    abandoned — nothing has been changed yet — and redone by the plain dense search, which
  //    does the same O(N·D) work per row with far less bookkeeping.
  void augment(Index f) {
    Index end_col = none;
    if (dense_streak_ > 0) {
      --dense_streak_;
    } else {
      end_col = search_lazy(f);
      // After an abandoned search, skip the list-based attempt for the next 1, 2, 4, ... 64
      // searches (reset by a success): on hard inputs nearly every search would be abandoned.
      dense_backoff_ = end_col == none ? std::min<Index>(std::max<Index>(1, 2 * dense_backoff_), 64) : 0;
      dense_streak_ = dense_backoff_;
    }
    if (end_col == none) end_col = search_dense(f);
    // Prices of the scanned columns drop by how much closer they were than the free column;
    // this keeps every assigned row at its minimum w after the flip (the invariant).
    const double dmax = dist_[end_col];
    for (const Index j : ready_) v_[j] += dist_[j] - dmax;
    // Flip the alternating path back to the free row.
    for (Index j = end_col;;) {
      const Index i = pred_[j];
      const Index previous = col_of_[i];
      assign(i, j, pred_cost_[j]);
      if (i == f) break;
      j = previous;
    }
  }

  /// Listed columns are relaxed exactly; all unlisted columns of a row together are
  /// represented by one heap entry keyed by their lower bound, and the row is evaluated in full
  /// only if that entry reaches the top of the heap. Heap entries are (key, id) with columns
  /// as ids 0..n-1 and bound entries as n + row, so at equal keys columns come first (a free
  /// column at the current distance ends the search without evaluating more rows), then lower
  /// ids: deterministic, and exact because a bound entry's columns are never closer than its
  /// key. Returns the free column reached, or `none` when the search was abandoned.
  Index search_lazy(Index f) {
    ++epoch_;
    heap_.clear();
    ready_.clear();
    Index expansions = 0;
    // Relaxes row i's listed columns and queues the bound for the rest.
    auto scan_row = [&](Index i, double delta, double base) {
      row_delta_[i] = delta;
      row_base_[i] = base;
      const std::size_t at = std::size_t(i * k_);
      for (Index s = 0; s < k_; ++s) {
        const Index j = cand_col_[at + s];
        const double cij = cand_cost_[at + s];
        // w_ij − base >= 0 in exact arithmetic; clamp rounding noise so distances never shrink.
        relax(j, delta + std::max(0.0, cij - v_[j] - base), i, cij);
      }
      if (theta_[i] < inf) push(delta + std::max(0.0, theta_[i] - base), n_ + i);
    };

    // Distances from the free row start at w_fj − base_f for a common offset base_f (any offset
    // works) that must not exceed any w_fj, or the clamp in scan_row would shorten paths through
    // negative w_fj. Those occur after the warm start, whose prices need not satisfy w ≥ 0.
    // The smallest listed w, or θ_f if smaller, is such a lower bound on the row minimum.
    double base_f = theta_[f];
    for (Index s = 0; s < k_; ++s) {
      const std::size_t at = std::size_t(f * k_ + s);
      base_f = std::min(base_f, cand_cost_[at] - v_[cand_col_[at]]);
    }
    scan_row(f, 0.0, base_f);
    while (true) {
      require(!heap_.empty(), where_, "internal error: no augmenting path (please report)");
      std::pop_heap(heap_.begin(), heap_.end(), std::greater<>());
      const auto [key, id] = heap_.back();
      heap_.pop_back();
      if (id >= n_) {
        if (++expansions > lazy_expansion_allowance + Index(ready_.size()) / 2) return none;
        expand(id - n_);
        continue;
      }
      const Index j = id;
      if (done_[j] == epoch_ || key > dist_[j]) continue;  // stale entry
      done_[j] = epoch_;
      if (row_of_[j] == none) return j;
      ready_.push_back(j);
      const Index i = row_of_[j];
      scan_row(i, key, assigned_cost_[i] - v_[j]);
    }
  }

  /// The classic dense search (Jonker–Volgenant's augment): every reached row is evaluated in
  /// full. cols_ is partitioned as [0, lo) scanned, [lo, up) at the current minimum distance
  /// but not yet scanned, [up, n) farther. Returns the free column reached.
  Index search_dense(Index f) {
    ready_.clear();
    load_row(f);
    for (Index j = 0; j < n_; ++j) {
      dist_[j] = c_[j] - v_[j];
      pred_[j] = f;
      pred_cost_[j] = c_[j];
      cols_[j] = j;
    }
    Index lo = 0, up = 0;
    double dmin = 0.0;
    while (true) {
      if (lo == up) {
        // Gather all unreached columns at the new minimum distance into [up, hi).
        dmin = dist_[cols_[up]];
        Index hi = up + 1;
        for (Index k = up + 1; k < n_; ++k) {
          const Index j = cols_[k];
          if (dist_[j] <= dmin) {
            if (dist_[j] < dmin) {
              hi = up;
              dmin = dist_[j];
            }
            std::swap(cols_[k], cols_[hi++]);
          }
        }
        for (Index k = up; k < hi; ++k)
          if (row_of_[cols_[k]] == none) return cols_[k];
        up = hi;
      }
      const Index j1 = cols_[lo++];
      ready_.push_back(j1);
      const Index i = row_of_[j1];
      load_row(i);
      const double base = assigned_cost_[i] - v_[j1];
      for (Index k = up; k < n_; ++k) {
        const Index j = cols_[k];
        const double dj = dmin + std::max(0.0, c_[j] - v_[j] - base);
        if (dj < dist_[j]) {
          dist_[j] = dj;
          pred_[j] = i;
          pred_cost_[j] = c_[j];
          if (dj == dmin) {
            if (row_of_[j] == none) return j;
            std::swap(cols_[k], cols_[up++]);
          }
        }
      }
    }
  }

  /// Row i's bound entry reached the top of the heap: evaluate the full row and relax its
  /// columns in order of w, the 2k smallest the first time, then 4k, 8k, ... (a row can be
  /// reached again in the same search), with a new bound entry for the rest. Relaxing only a
  /// prefix keeps the heap small; the bound keeps the search exact. Also refreshes the list.
  void expand(Index i) {
    load_row(i);
    for (Index j = 0; j < n_; ++j) w_[j] = c_[j] - v_[j];
    const Index level = level_stamp_[i] == epoch_ ? level_[i] : 0;
    const Index limit = std::min(n_, k_ << std::min<Index>(level + 1, 40));
    select_smallest(limit);
    store_candidates(i);
    const double delta = row_delta_[i], base = row_base_[i];
    for (Index s = 0; s < limit; ++s) {
      const Index j = sel_[s].second;
      relax(j, delta + std::max(0.0, w_[j] - base), i, c_[j]);
    }
    if (limit < n_) {
      level_stamp_[i] = epoch_;
      level_[i] = level + 1;
      push(delta + std::max(0.0, sel_[limit].first - base), n_ + i);
    }
  }

  void relax(Index j, double d, Index from, double cij) {
    if (stamp_[j] != epoch_) {
      stamp_[j] = epoch_;
      dist_[j] = inf;
    }
    if (done_[j] != epoch_ && d < dist_[j]) {
      dist_[j] = d;
      pred_[j] = from;
      pred_cost_[j] = cij;
      push(d, j);
    }
  }

  void push(double key, Index id) {
    heap_.emplace_back(key, id);
    std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
  }

  const Cost& cost_;
  std::string_view where_;
  Index n_, k_;
  std::int64_t rows_evaluated_ = 0;
  std::vector<double> c_, v_, assigned_cost_;
  std::vector<Index> row_of_, col_of_, free_rows_;
  std::vector<Index> cand_col_;
  std::vector<double> cand_cost_, theta_;
  std::vector<std::pair<double, Index>> sel_;  // scratch for select_smallest
  // Shortest-path search state, reset lazily by epoch.
  std::vector<double> dist_, pred_cost_, row_delta_, row_base_;
  std::vector<Index> pred_, ready_, cols_;
  std::vector<std::int64_t> stamp_, done_;  // == epoch_: touched / finalised in this search
  std::vector<std::int64_t> level_stamp_;    // == epoch_: level_ is valid for this search
  std::vector<Index> level_;                 // how often a row was expanded in this search
  std::vector<double> w_;
  std::int64_t epoch_ = 0;
  Index dense_backoff_ = 0, dense_streak_ = 0;
  std::vector<Index> sample_;  // rows and columns of the warm-start subproblem
  std::vector<std::pair<double, Index>> heap_;
};

template <class Cost>
AssignmentResult solve_dense_assignment(const Cost& cost, std::string_view where) {
  return AssignmentSolver<Cost>(cost, where).solve();
}

template <class Cost>
AssignmentCertificate certify_assignment(const Cost& cost, const AssignmentResult& r, std::string_view where) {
  const Index n = cost.size();
  require(Index(r.target_of.size()) == n, where, "result has ", r.target_of.size(), " assignments, expected ", n);
  require(Index(r.u.size()) == n && Index(r.v.size()) == n, where, "result has ", r.u.size(), " row and ",
          r.v.size(), " column potentials, expected ", n,
          " each (minibatch results carry no potentials and cannot be certified)");
  std::vector<char> seen(n, 0);
  for (Index i = 0; i < n; ++i) {
    const Index j = r.target_of[i];
    require(j >= 0 && j < n && !seen[j], where, "target_of is not a permutation of 0..", n - 1, " (entry ", i,
            " is ", j, ")");
    seen[j] = 1;
  }
  AssignmentCertificate cert;
  std::vector<double> c(n);
  double total = 0.0, slack_sum = 0.0;
  for (Index i = 0; i < n; ++i) {
    cost.row(i, c.data());
    for (Index j = 0; j < n; ++j) {
      cert.cost_scale = std::max(cert.cost_scale, std::abs(c[j]));
      cert.max_dual_violation = std::max(cert.max_dual_violation, r.u[i] + r.v[j] - c[j]);
    }
    const Index j = r.target_of[i];
    const double slack = std::abs(r.u[i] + r.v[j] - c[j]);
    cert.max_slackness_violation = std::max(cert.max_slackness_violation, slack);
    slack_sum += slack;
    total += c[j];
  }
  cert.total_cost_error = std::abs(total - r.total_cost);
  cert.optimality_gap_bound = double(n) * cert.max_dual_violation + slack_sum;
  cert.total_scale = double(n) * cert.cost_scale;
  return cert;
}

}  // namespace detail

/// Exact linear assignment for a general cost: minimises Σ_i cost(i, σ(i)) over permutations σ
/// of 0..n-1. `cost(i, j)` must return a finite number (any arithmetic type) and is called
/// O(n²) times or more: make it cheap, or precompute.
template <class CostFn>
AssignmentResult linear_assignment(Index n, CostFn&& cost) {
  constexpr std::string_view where = "linear_assignment";
  detail::require(n >= 1, where, "no rows (n = ", n, "); expected n >= 1");
  detail::CallableCost<std::remove_reference_t<CostFn>> adapter(n, cost, where);
  return detail::solve_dense_assignment(adapter, where);
}

/// Exact OT assignment between equal-size point clouds x0 [N, D] (prior samples) and
/// x1 [N, D] (data), squared Euclidean cost. Any Eigen dense expressions, float or double.
template <class D0, class D1>
AssignmentResult ot_assignment(const Eigen::MatrixBase<D0>& x0, const Eigen::MatrixBase<D1>& x1) {
  constexpr std::string_view where = "ot_assignment";
  const detail::SquaredEuclideanCost cost(x0, x1, where);
  return detail::solve_dense_assignment(cost, where);
}

/// Checks the optimality certificate of `result` for a general cost (see AssignmentCertificate).
/// O(n²) cost evaluations. Throws if `result` is not a permutation with potentials of size n.
template <class CostFn>
AssignmentCertificate check_assignment_optimality(Index n, CostFn&& cost, const AssignmentResult& result) {
  constexpr std::string_view where = "check_assignment_optimality";
  detail::require(n >= 1, where, "no rows (n = ", n, "); expected n >= 1");
  detail::CallableCost<std::remove_reference_t<CostFn>> adapter(n, cost, where);
  return detail::certify_assignment(adapter, result, where);
}

/// Checks the optimality certificate of an `ot_assignment` result against the point clouds.
/// O(N²·D) time, O(N·D) memory.
template <class D0, class D1>
AssignmentCertificate check_assignment_optimality(const Eigen::MatrixBase<D0>& x0, const Eigen::MatrixBase<D1>& x1,
                                                  const AssignmentResult& result) {
  constexpr std::string_view where = "check_assignment_optimality";
  const detail::SquaredEuclideanCost cost(x0, x1, where);
  return detail::certify_assignment(cost, result, where);
}

/// Minibatch OT: both sets are shuffled with seeded permutations (streams rng.child(0) and
/// rng.child(1)), cut into consecutive blocks of `batch_size` (the last block takes the
/// remainder) and each block pair is solved exactly. Returns the combined σ and its total cost;
/// `u` and `v` are empty because block potentials do not certify the global problem.
/// Deterministic for a given `rng`. Cost: O(N · batch_size²) time at best, O(batch_size²)
/// cost evaluations per block pass.
template <class D0, class D1>
AssignmentResult minibatch_ot_assignment(const Eigen::MatrixBase<D0>& x0, const Eigen::MatrixBase<D1>& x1,
                                         Index batch_size, const Random& rng) {
  constexpr std::string_view where = "minibatch_ot_assignment";
  detail::require(batch_size >= 1, where, "batch_size is ", batch_size, "; expected >= 1");
  // Validates sizes and values once for the whole sets (the centred copy is discarded).
  { const detail::SquaredEuclideanCost check(x0, x1, where); }
  const Index n = x0.rows(), dim = x0.cols();
  std::vector<Index> p0(n), p1(n);
  random_permutation(std::span<Index>(p0), rng.child(0));
  random_permutation(std::span<Index>(p1), rng.child(1));

  AssignmentResult result;
  result.target_of.assign(n, -1);
  Matrix<double> b0, b1;
  for (Index start = 0; start < n; start += batch_size) {
    const Index len = std::min(batch_size, n - start);
    b0.resize(len, dim);
    b1.resize(len, dim);
    for (Index k = 0; k < len; ++k) {
      b0.row(k) = x0.row(p0[start + k]).template cast<double>();
      b1.row(k) = x1.row(p1[start + k]).template cast<double>();
    }
    const detail::SquaredEuclideanCost cost(b0, b1, where);
    const AssignmentResult block = detail::solve_dense_assignment(cost, where);
    for (Index k = 0; k < len; ++k) result.target_of[p0[start + k]] = p1[start + block.target_of[k]];
    result.total_cost += block.total_cost;
    result.rows_evaluated += block.rows_evaluated;
  }
  return result;
}

}  // namespace fort

