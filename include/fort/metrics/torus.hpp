#pragma once
/// \file
/// Angles on the torus: wrapping, wrapped distances and the exact Wasserstein-2 distance between
/// equal-size point clouds of angles (e.g. backbone dihedrals (φ, ψ), "T-W2").
///
/// Each coordinate is an angle in radians; the distance along one coordinate is the shorter way
/// round the circle, |wrap(a − b)| ∈ [0, π], and the squared torus distance is the sum over
/// coordinates. T-W2 between two uniform clouds of n points is sqrt(min_σ (1/n) Σ_i d²(a_i, b_σ(i)))
/// over permutations σ, solved exactly by `linear_assignment` (O(n³): subsample large sets).

#include <cmath>
#include <numbers>

#include "fort/core/error.hpp"
#include "fort/core/types.hpp"
#include "fort/targets/assignment.hpp"

namespace fort {

/// a mapped to [−π, π).
inline double wrap_angle(double a) {
  constexpr double two_pi = 2 * std::numbers::pi;
  if (!std::isfinite(a)) return a;
  double r = std::fmod(a + std::numbers::pi, two_pi);  // in (−2π, 2π)
  if (r < 0) r += two_pi;
  if (r >= two_pi) r = 0;  // rounding of r + 2π
  return r - std::numbers::pi;
}

/// Squared wrapped distance between rows a and b of equal length.
template <class A, class B>
double torus_distance_sq(const Eigen::MatrixBase<A>& a, const Eigen::MatrixBase<B>& b) {
  double s = 0.0;
  for (Index k = 0; k < a.size(); ++k) {
    const double d = wrap_angle(double(a.derived().coeff(k)) - double(b.derived().coeff(k)));
    s += d * d;
  }
  return s;
}

/// Exact W2 on the torus between the rows of a [n, k] and b [n, k] (uniform weights).
template <class A, class B>
double torus_wasserstein2(const Eigen::MatrixBase<A>& a, const Eigen::MatrixBase<B>& b) {
  constexpr const char* where = "torus_wasserstein2";
  detail::require(a.rows() == b.rows() && a.rows() >= 1, where, "a has ", a.rows(), " rows and b ", b.rows(),
                  "; expected the same number, at least 1");
  detail::require(a.cols() == b.cols() && a.cols() >= 1, where, "a has ", a.cols(), " columns and b ", b.cols(),
                  "; expected the same number, at least 1");
  const Matrix<double> x = a.template cast<double>(), y = b.template cast<double>();
  detail::require_finite(x.reshaped(), where, "a");
  detail::require_finite(y.reshaped(), where, "b");
  const Index n = x.rows();
  const AssignmentResult r = linear_assignment(n, [&](Index i, Index j) { return torus_distance_sq(x.row(i), y.row(j)); });
  return std::sqrt(std::max(0.0, r.total_cost / double(n)));
}

}  // namespace fort
