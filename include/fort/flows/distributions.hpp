#pragma once
/// \file
/// Base distributions of a flow: the standard normal and a fixed diagonal Gaussian.
/// Both draw from a counter-based `Random`: sample i, coordinate j uses draw `offset + i·D + j`.

#include <cmath>
#include <numbers>
#include <string>

#include "fort/core/error.hpp"
#include "fort/core/random.hpp"
#include "fort/core/types.hpp"

namespace fort {

namespace detail {
inline constexpr double log_two_pi = 1.8378770664093454835606594728112;
}

/// N(0, I) in `dim` dimensions.
template <class S, int D = Dynamic>
class StandardNormal {
 public:
  using Scalar = S;
  static constexpr int Dim = D;

  explicit StandardNormal(Index dim = (D == Dynamic ? 0 : D)) : dim_(dim) {
    detail::require(dim >= 1 && (D == Dynamic || dim == D), "StandardNormal", "dim must be ",
                    D == Dynamic ? std::string(">= 1") : std::to_string(D), ", got ", dim);
  }
  Index dim() const { return dim_; }
  std::string signature() const { return detail::concat("StandardNormal(dim=", dim_, ")"); }

  /// log N(z; 0, I) of one point.
  FORT_HOST_DEVICE S log_prob_point(const S* z) const {
    S sq = 0;
    for (Index j = 0; j < dim_; ++j) sq += z[j] * z[j];
    return S(-0.5) * sq - S(0.5 * detail::log_two_pi) * S(dim_);
  }
  /// d log N / dz = −z.
  void log_prob_gradient_point(const S* z, S* g) const {
    for (Index j = 0; j < dim_; ++j) g[j] = -z[j];
  }
  FORT_HOST_DEVICE void sample_point(const Random& rng, std::uint64_t index, S* z) const {
    rng.fill_normal(z, std::size_t(dim_), index * std::uint64_t(dim_));
  }

 private:
  Index dim_;
};

/// N(mean, diag(std²)), fixed (not trained).
template <class S, int D = Dynamic>
class DiagonalGaussian {
 public:
  using Scalar = S;
  static constexpr int Dim = D;

  DiagonalGaussian(Vector<S> mean, Vector<S> std) : mean_(std::move(mean)), std_(std::move(std)) {
    detail::require(mean_.size() >= 1 && mean_.size() == std_.size() && (D == Dynamic || mean_.size() == D),
                    "DiagonalGaussian", "mean and std must have the same length ",
                    D == Dynamic ? std::string(">= 1") : std::to_string(D), ", got ", mean_.size(), " and ",
                    std_.size());
    detail::require_finite(mean_, "DiagonalGaussian", "mean");
    detail::require_finite(std_, "DiagonalGaussian", "std");
    for (Index j = 0; j < std_.size(); ++j)
      detail::require(std_[j] > S(0), "DiagonalGaussian", "std[", j, "] is ", std_[j], ", expected > 0");
    log_norm_ = S(-0.5 * detail::log_two_pi) * S(dim()) - std_.array().log().sum();
  }
  Index dim() const { return mean_.size(); }
  std::string signature() const { return detail::concat("DiagonalGaussian(dim=", dim(), ")"); }
  const Vector<S>& mean() const { return mean_; }
  const Vector<S>& stddev() const { return std_; }

  S log_prob_point(const S* z) const {
    S sq = 0;
    for (Index j = 0; j < dim(); ++j) {
      const S u = (z[j] - mean_[j]) / std_[j];
      sq += u * u;
    }
    return S(-0.5) * sq + log_norm_;
  }
  void log_prob_gradient_point(const S* z, S* g) const {
    for (Index j = 0; j < dim(); ++j) g[j] = -(z[j] - mean_[j]) / (std_[j] * std_[j]);
  }
  void sample_point(const Random& rng, std::uint64_t index, S* z) const {
    rng.fill_normal(z, std::size_t(dim()), index * std::uint64_t(dim()));
    for (Index j = 0; j < dim(); ++j) z[j] = mean_[j] + std_[j] * z[j];
  }

 private:
  Vector<S> mean_, std_;
  S log_norm_;
};

}  // namespace fort
