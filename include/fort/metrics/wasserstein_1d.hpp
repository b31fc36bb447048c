#pragma once
/// \file
/// Exact Wasserstein-p distance (p = 1 or 2) between two weighted 1-D samples.
///
/// In one dimension the optimal coupling is monotone, so
///
///   W_p(μ, ν)^p = ∫₀¹ |F_μ⁻¹(t) − F_ν⁻¹(t)|^p dt
///
/// with the (step) quantile functions of the two weighted empirical measures. Both samples are
/// sorted and the unit interval is swept at the union of their cumulative-weight breakpoints:
/// O((n + m) log(n + m)), exact for discrete measures. Used for E-W1 / E-W2 between energy
/// distributions of model samples (raw: equal weights; reweighted: importance weights) and
/// reference MD. Values must be finite (filter and count non-finite ones first); weights must be
/// finite, non-negative and have a positive sum. An empty weight vector means equal weights.

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "fort/core/error.hpp"
#include "fort/core/types.hpp"

namespace fort {

namespace detail {

struct SortedMeasure {
  std::vector<double> x, w;  // ascending support, normalised weights (zero weights dropped)
};

inline SortedMeasure sorted_measure(const std::vector<double>& x, const std::vector<double>& w, const char* name) {
  constexpr const char* where = "wasserstein_1d";
  require(!x.empty(), where, name, " is empty; expected at least one value");
  require(w.empty() || w.size() == x.size(), where, name, " has ", x.size(), " values but ", w.size(),
          " weights; expected equal counts (or no weights)");
  std::vector<std::size_t> order(x.size());
  std::iota(order.begin(), order.end(), std::size_t(0));
  double total = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    require(std::isfinite(x[i]), where, name, "[", i, "] = ", x[i], " is not finite");
    const double wi = w.empty() ? 1.0 : w[i];
    require(std::isfinite(wi) && wi >= 0, where, name, " weight [", i, "] = ", wi, "; expected finite and >= 0");
    total += wi;
  }
  require(total > 0, where, name, " weights sum to ", total, "; expected a positive total");
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return x[a] < x[b]; });
  SortedMeasure m;
  for (std::size_t i : order) {
    const double wi = (w.empty() ? 1.0 : w[i]) / total;
    if (wi > 0) {
      m.x.push_back(x[i]);
      m.w.push_back(wi);
    }
  }
  return m;
}

}  // namespace detail

/// W_p between the weighted samples (x, wx) and (y, wy), p = 1 or 2 (returns W_p, not W_p^p).
inline double wasserstein_1d(const std::vector<double>& x, const std::vector<double>& wx, const std::vector<double>& y,
                             const std::vector<double>& wy, int p) {
  detail::require(p == 1 || p == 2, "wasserstein_1d", "p = ", p, "; expected 1 or 2");
  const auto a = detail::sorted_measure(x, wx, "x");
  const auto b = detail::sorted_measure(y, wy, "y");
  std::size_t i = 0, j = 0;
  double ra = a.w[0], rb = b.w[0];  // mass left at the current atom of each measure
  double acc = 0.0;
  while (i < a.x.size() && j < b.x.size()) {
    const double m = std::min(ra, rb);
    const double d = std::abs(a.x[i] - b.x[j]);
    acc += m * (p == 1 ? d : d * d);
    ra -= m;
    rb -= m;
    // Advance whichever atom is used up (both at once when equal; rounding leaves tiny remainders).
    const bool next_a = ra <= rb, next_b = rb <= ra;
    if (next_a && ++i < a.x.size()) ra = a.w[i];
    if (next_b && ++j < b.x.size()) rb = b.w[j];
  }
  return p == 1 ? acc : std::sqrt(std::max(acc, 0.0));
}

/// Equal-weight convenience form.
inline double wasserstein_1d(const std::vector<double>& x, const std::vector<double>& y, int p) {
  return wasserstein_1d(x, {}, y, {}, p);
}

}  // namespace fort
