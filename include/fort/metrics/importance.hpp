#pragma once
/// \file
/// Self-normalised importance weights and their effective sample size.
///
/// For samples x_i of a model p_θ and an unnormalised target π, log w_i = log π(x_i) − log p_θ(x_i).
/// The weights are normalised after subtracting max_i log w_i, so no exp overflows, and
///
///   ESS = (Σ w_i)² / Σ w_i²,   reported as a fraction of the number of samples n.
///
/// log w = −∞ is a legal weight of zero (a sample outside the target's support). NaN and +∞ are
/// not weights; they are counted in `invalid`, given weight zero, and never silently hidden: a
/// caller should report the count. If no weight is positive the ESS is 0 and `normalized` is all
/// zeros.

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "fort/core/error.hpp"
#include "fort/core/types.hpp"

namespace fort {

struct ImportanceWeights {
  std::vector<double> normalized;  ///< w_i / Σ w (sums to 1 unless no weight is positive)
  double ess = 0.0;                ///< (Σ w)² / Σ w², in samples
  double ess_fraction = 0.0;       ///< ess / n
  double log_mean_weight = -std::numeric_limits<double>::infinity();  ///< log((1/n) Σ w): log Z estimate
  Index zero = 0;     ///< entries with log w = −∞
  Index invalid = 0;  ///< NaN or +∞ entries (weight 0)
};

/// Normalises `log_w` (one entry per sample; at least one entry).
template <class Range>
ImportanceWeights importance_weights(const Range& log_w) {
  constexpr const char* where = "importance_weights";
  const Index n = Index(std::size(log_w));
  detail::require(n >= 1, where, "no log-weights given; expected at least one");
  ImportanceWeights r;
  r.normalized.assign(std::size_t(n), 0.0);
  double top = -std::numeric_limits<double>::infinity();
  for (const auto v0 : log_w) {
    const double v = double(v0);
    if (std::isnan(v) || v == std::numeric_limits<double>::infinity()) {
      ++r.invalid;
    } else if (v == -std::numeric_limits<double>::infinity()) {
      ++r.zero;
    } else {
      top = std::max(top, v);
    }
  }
  if (!std::isfinite(top)) return r;
  double sum = 0.0, sum_sq = 0.0;
  std::size_t i = 0;
  for (const auto v0 : log_w) {
    const double v = double(v0);
    const double w = std::isfinite(v) ? std::exp(v - top) : 0.0;  // in (0, 1]; the top one is 1
    r.normalized[i++] = w;
    sum += w;
    sum_sq += w * w;
  }
  for (double& w : r.normalized) w /= sum;
  r.ess = sum * sum / sum_sq;
  r.ess_fraction = r.ess / double(n);
  r.log_mean_weight = top + std::log(sum / double(n));
  return r;
}

/// Systematic resampling: m indices drawn in proportion to `weights` (non-negative, positive
/// sum) from one uniform u in [0, 1). Index i appears ⌊m w_i⌋ or ⌈m w_i⌉ times (w normalised).
inline std::vector<Index> systematic_resample(const std::vector<double>& weights, Index m, double u) {
  constexpr const char* where = "systematic_resample";
  detail::require(m >= 1, where, "m = ", m, "; expected at least 1 draw");
  detail::require(u >= 0 && u < 1, where, "u = ", u, "; expected a uniform draw in [0, 1)");
  double total = 0.0;
  for (double w : weights) {
    detail::require(std::isfinite(w) && w >= 0, where, "weight ", w, " is negative or not finite");
    total += w;
  }
  detail::require(total > 0, where, "the weights sum to ", total, "; expected a positive total");
  std::vector<Index> out;
  out.reserve(std::size_t(m));
  double cum = weights.empty() ? 0.0 : weights[0] / total;
  std::size_t i = 0;
  for (Index k = 0; k < m; ++k) {
    const double t = (double(k) + u) / double(m);
    while (t >= cum && i + 1 < weights.size()) cum += weights[++i] / total;
    out.push_back(Index(i));
  }
  return out;
}

}  // namespace fort
