#pragma once
/// \file
/// Summaries of held-out negative log-likelihoods, including the "hole" diagnostic.
///
/// A FORT-trained flow can fit the bulk of the data and still map a few held-out points to
/// far-away latents (|z| in the hundreds), where their density is astronomically small. The mean
/// NLL is then dominated by those points while the median barely moves. `summarize_nll` reports
/// both, and the fraction of points whose NLL exceeds a threshold (default 20 nats), so the
/// effect is measured rather than averaged away. Non-finite log-densities count as holes and are
/// also counted separately; they make the mean infinite (never silently dropped).

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "fort/core/error.hpp"
#include "fort/core/types.hpp"

namespace fort {

struct NllSummary {
  Index count = 0;          ///< points evaluated
  double mean = 0.0;        ///< mean NLL (+inf if any log-density is non-finite)
  double median = 0.0;      ///< median NLL (non-finite values sort last)
  double max = 0.0;         ///< largest NLL
  double threshold = 20.0;  ///< NLL above which a point is a hole
  Index holes = 0;          ///< points with NLL > threshold or non-finite
  Index non_finite = 0;     ///< points whose log-density is NaN or ±inf
  double hole_fraction() const { return count ? double(holes) / double(count) : 0.0; }
};

/// Summarises NLL = −log p over `log_prob` (one entry per held-out point).
template <class Derived>
NllSummary summarize_nll(const Eigen::MatrixBase<Derived>& log_prob, double threshold = 20.0) {
  constexpr const char* where = "summarize_nll";
  detail::require(log_prob.size() >= 1, where, "no log-densities given; expected at least one");
  detail::require(!std::isnan(threshold), where, "threshold is NaN; expected a number of nats");
  NllSummary s;
  s.count = log_prob.size();
  s.threshold = threshold;
  std::vector<double> nll(std::size_t(s.count));
  double sum = 0.0;
  for (Index i = 0; i < s.count; ++i) {
    const double lp = double(log_prob.derived().coeff(i));
    const bool finite = std::isfinite(lp);
    const double v = finite ? -lp : std::numeric_limits<double>::infinity();
    nll[std::size_t(i)] = v;
    s.non_finite += !finite;
    s.holes += !finite || v > threshold;
    sum += v;
  }
  s.mean = sum / double(s.count);
  s.max = *std::max_element(nll.begin(), nll.end());
  const std::size_t mid = nll.size() / 2;
  std::nth_element(nll.begin(), nll.begin() + std::ptrdiff_t(mid), nll.end());
  s.median = nll[mid];
  if (nll.size() % 2 == 0) s.median = 0.5 * (s.median + *std::max_element(nll.begin(), nll.begin() + std::ptrdiff_t(mid)));
  return s;
}

}  // namespace fort
