#pragma once
/// \file
/// Affine element transform (RealNVP, Dinh et al. 2017) and its shift-only special case (NICE,
/// Dinh et al. 2015).
///
///   y = x·exp(s) + t,   s = B·tanh(ŝ/B)   (soft clamp, |s| < B; no clamp when B = 0)
///   log|dy/dx| = s
/// θ = (ŝ, t). θ = 0 is the identity.

#include <algorithm>
#include <cmath>
#include <string>

#include <Eigen/Core>

#include "fort/core/error.hpp"

namespace fort {

template <class S>
class AffineTransform {
 public:
  using Scalar = S;
  struct Partials {
    S dy_dx, dlog_det_dx;
    S scale, ds_draw;  // exp(s) and ds/dŝ
  };

  /// `log_scale_bound` B > 0 bounds the log-scale softly; 0 disables the clamp.
  explicit AffineTransform(double log_scale_bound = 3.0) : bound_(S(log_scale_bound)) {
    detail::require(std::isfinite(log_scale_bound) && log_scale_bound >= 0, "AffineTransform",
                    "log_scale_bound must be finite and >= 0, got ", log_scale_bound);
  }

  FORT_HOST_DEVICE Index params_per_dim() const { return 2; }
  std::string name() const { return "Affine"; }
  std::string signature() const { return detail::concat("affine(bound=", double(bound_), ")"); }
  S log_scale_bound() const { return bound_; }

  FORT_HOST_DEVICE S log_scale(S raw) const { return bound_ > S(0) ? bound_ * std::tanh(raw / bound_) : raw; }

  FORT_HOST_DEVICE void forward(S x, const S* theta, S& y, S& log_det) const {
    const S s = log_scale(theta[0]);
    y = x * std::exp(s) + theta[1];
    log_det += s;
  }

  FORT_HOST_DEVICE void inverse(S y, const S* theta, S& x, S& log_det) const {
    const S s = log_scale(theta[0]);
    x = (y - theta[1]) * std::exp(-s);
    log_det -= s;
  }

  FORT_HOST_DEVICE Partials partials(S x, const S* theta) const {
    (void)x;
    S s, ds;
    scale_of(theta[0], s, ds);
    const S e = std::exp(s);
    return {e, S(0), e, ds};
  }

  /// Row kernels (RowTransform): tanh and exp vectorised across the row's coordinates.
  void forward_row(Index m, const S* x, const S* theta, S* y, S& log_det, Partials* record) const {
    for_blocks(m, theta, [&](Index j0, Index n, const Block& s, const Block& ds, const S* t) {
      const Block e = s.exp();
      for (Index j = 0; j < n; ++j) {
        y[j0 + j] = x[j0 + j] * e[j] + t[2 * j];
        if (record) record[j0 + j] = {e[j], S(0), e[j], ds[j]};
      }
      log_det += s.sum();
    });
  }

  /// Partials at the result x; exp(s) as 1/exp(−s), within an ulp of what `partials` gives.
  void inverse_row(Index m, const S* y, const S* theta, S* x, S& log_det, Partials* record) const {
    for_blocks(m, theta, [&](Index j0, Index n, const Block& s, const Block& ds, const S* t) {
      const Block inv = (-s).exp();
      for (Index j = 0; j < n; ++j) {
        x[j0 + j] = (y[j0 + j] - t[2 * j]) * inv[j];
        if (record) {
          const S e = S(1) / inv[j];
          record[j0 + j] = {e, S(0), e, ds[j]};
        }
      }
      log_det -= s.sum();
    });
  }

  FORT_HOST_DEVICE void pullback(S x, const S* theta, const Partials& d, S a, S b, S* dL_dtheta) const {
    (void)theta;
    dL_dtheta[0] += (a * x * d.scale + b) * d.ds_draw;
    dL_dtheta[1] += a;
  }

 private:
  static constexpr Index kBlock = 64;  // coordinates per vectorised block (stack arrays)
  using Block = Eigen::Array<S, Eigen::Dynamic, 1, 0, kBlock, 1>;

  /// Calls f(j0, n, s, ds, t) for blocks of up to kBlock coordinates, with the log-scales s,
  /// their derivatives ds/dŝ and a pointer to the block's first shift (stride 2 in θ).
  template <class F>
  void for_blocks(Index m, const S* theta, F&& f) const {
    using Strided = Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>, 0, Eigen::InnerStride<2>>;
    for (Index j0 = 0; j0 < m; j0 += kBlock) {
      const Index n = std::min(kBlock, m - j0);
      const Block raw = Strided(theta + 2 * j0, n);
      Block s(n), ds(n);
      if (bound_ > S(0)) {
        const Block t = (raw / bound_).tanh();
        s = bound_ * t;
        ds = S(1) - t.square();
      } else {
        s = raw;
        ds.setOnes();
      }
      f(j0, n, s, ds, theta + 2 * j0 + 1);
    }
  }

  /// s = B·tanh(ŝ/B) and ds/dŝ = 1 − tanh², from one tanh (s = ŝ, ds = 1 when B = 0).
  FORT_HOST_DEVICE void scale_of(S raw, S& s, S& ds) const {
    if (bound_ > S(0)) {
      const S t = std::tanh(raw / bound_);
      s = bound_ * t;
      ds = S(1) - t * t;
    } else {
      s = raw;
      ds = S(1);
    }
  }

  S bound_;
};

/// y = x + t, log|dy/dx| = 0. θ = (t).
template <class S>
class AdditiveTransform {
 public:
  using Scalar = S;
  struct Partials {
    S dy_dx, dlog_det_dx;
  };

  FORT_HOST_DEVICE Index params_per_dim() const { return 1; }
  std::string name() const { return "Additive"; }
  std::string signature() const { return "additive"; }

  FORT_HOST_DEVICE void forward(S x, const S* theta, S& y, S& log_det) const {
    (void)log_det;
    y = x + theta[0];
  }
  FORT_HOST_DEVICE void inverse(S y, const S* theta, S& x, S& log_det) const {
    (void)log_det;
    x = y - theta[0];
  }
  FORT_HOST_DEVICE Partials partials(S, const S*) const { return {S(1), S(0)}; }
  FORT_HOST_DEVICE void pullback(S, const S*, const Partials&, S a, S, S* dL_dtheta) const { dL_dtheta[0] += a; }
};

}  // namespace fort
