#pragma once
/// \file
/// Monotone rational-quadratic spline element transform (Durkan, Bekasov, Murray, Papamakarios
/// 2019, "Neural Spline Flows"), with identity (linear) tails.
///
/// On [−B, B] the map is a monotone rational-quadratic spline with K bins; outside it is the
/// identity. The boundary derivatives are fixed to 1, so the map is C¹ on the whole line.
///
/// Parameters, per coordinate (params_per_dim() = 3K − 1):
///   θ[0, K)       raw widths  ŵ      w = 2B·(w_min + (1 − K·w_min)·softmax(ŵ))
///   θ[K, 2K)      raw heights ĥ      h = 2B·(h_min + (1 − K·h_min)·softmax(ĥ))
///   θ[2K, 3K−1)   raw interior derivatives d̂_1..d̂_{K−1}
///                 d_i = d_min + softplus(d̂_i + c),  c = log(exp(1 − d_min) − 1)
/// Knots x_0 = −B, x_{k+1} = x_k + w_k, x_K = B exactly (y-knots the same with h); d_0 = d_K = 1.
/// θ = 0 gives uniform bins and unit derivatives, i.e. the identity map.
///
/// In bin k, with s = h_k/w_k, ξ = (x − x_k)/w_k ∈ [0, 1], q = ξ(1 − ξ):
///   den = s + (d_{k+1} + d_k − 2s)·q
///   y   = y_k + h_k·(s ξ² + d_k q)/den
///   log dy/dx = 2 log s + log(d_{k+1} ξ² + 2 s q + d_k (1 − ξ)²) − 2 log den
/// The inverse solves a ξ² + b ξ + c = 0 for the root in [0, 1] (see `inverse`).
///
/// Bins: a point v on the knots is placed in the bin that starts at v (x_k ≤ v < x_{k+1}); v = B
/// belongs to the last (non-empty) bin. Forward searches the x-knots, inverse the y-knots, so a
/// point exactly on a knot maps to exactly the matching knot and back.
///
/// Design: no cap on K and no per-element storage. The knots are generated on the fly by one
/// walk over the bins (`Walk`/`step`) that forward, inverse, partials and `knots` all share, so
/// every path computes bit-identical knots. Each element call costs O(K) exponentials and
/// allocates nothing, which keeps the element functions usable on a device.
///
/// min_bin_width / min_bin_height = 0 are allowed; then under extreme θ a bin can collapse to
/// (nearly) zero size in floating point, a flat piece or a jump of the map. Such a bin (slope
/// h/w outside [√m, 1/√m], m the smallest normal number of S) is mapped linearly with log-det
/// log(h/w) (±∞ when fully collapsed) and no gradient flows from it to θ; x and y stay finite. The defaults (1e-3) keep every bin
/// at least 2B·1e-3 wide and high, so slopes stay within [1e-3, 1e3].

#include <cmath>
#include <limits>
#include <string>

#include "fort/core/error.hpp"
#include "fort/core/types.hpp"

namespace fort {

template <class S>
class RationalQuadraticTransform {
 public:
  using Scalar = S;

  /// Local derivatives at one x, and what `pullback` needs to reach θ.
  struct Partials {
    S dy_dx, dlog_det_dx;
    Index bin;        ///< −1 in the tails (all θ-partials zero)
    S y_loc[6];       ///< ∂y/∂(x_k, w_k, y_k, h_k, d_k, d_{k+1})
    S ld_loc[6];      ///< ∂(log dy/dx)/∂(same)
    S uw, cw, uh, ch; ///< softmax fractions of bin k and their sums over bins < k (widths, heights)
    S max_w, inv_sum_w, max_h, inv_sum_h;  ///< softmax statistics (max, 1/Σexp)
  };

  explicit RationalQuadraticTransform(Index bins = 8, double bound = 3.0, double min_bin_width = 1e-3,
                                      double min_bin_height = 1e-3, double min_derivative = 1e-3)
      : bins_(bins),
        bound_(S(bound)),
        min_w_(S(min_bin_width)),
        min_h_(S(min_bin_height)),
        min_d_(S(min_derivative)) {
    const char* where = "RationalQuadraticTransform";
    detail::require(bins >= 1, where, "bins must be >= 1, got ", bins);
    detail::require(std::isfinite(bound) && bound > 0, where, "bound must be finite and > 0, got ", bound);
    detail::require(std::isfinite(min_bin_width) && min_bin_width >= 0 && min_bin_width * double(bins) < 1, where,
                    "min_bin_width must be in [0, 1/bins) = [0, ", 1.0 / double(bins), "), got ", min_bin_width);
    detail::require(std::isfinite(min_bin_height) && min_bin_height >= 0 && min_bin_height * double(bins) < 1,
                    where, "min_bin_height must be in [0, 1/bins) = [0, ", 1.0 / double(bins), "), got ",
                    min_bin_height);
    detail::require(std::isfinite(min_derivative) && min_derivative >= 0 && min_derivative < 1, where,
                    "min_derivative must be in [0, 1), got ", min_derivative);
    span_ = S(2 * bound);
    detail::require(std::isfinite(double(span_)) && double(bound_) > 0, where, "bound ", bound,
                    " is out of range for this scalar type (2·bound must be finite and bound > 0)");
    scale_w_ = S(1 - double(bins) * min_bin_width);
    scale_h_ = S(1 - double(bins) * min_bin_height);
    shift_d_ = S(std::log(std::expm1(1 - min_derivative)));
  }

  FORT_HOST_DEVICE Index params_per_dim() const { return 3 * bins_ - 1; }
  std::string name() const { return "Spline"; }
  std::string signature() const {
    return detail::concat("rq_spline(bins=", bins_, ",bound=", double(bound_), ",min_width=", double(min_w_),
                          ",min_height=", double(min_h_), ",min_derivative=", double(min_d_), ")");
  }
  FORT_HOST_DEVICE Index bins() const { return bins_; }
  S bound() const { return bound_; }
  S min_bin_width() const { return min_w_; }
  S min_bin_height() const { return min_h_; }
  S min_derivative() const { return min_d_; }

  /// The spline's knots for parameters θ: x_knots, y_knots and derivatives, K + 1 values each.
  void knots(const S* theta, S* x_knots, S* y_knots, S* derivatives) const {
    const Softmax sw = softmax(theta), sh = softmax(theta + bins_);
    Walk w;
    for (Index k = 0; k < bins_; ++k) {
      step(w, theta, sw, sh);
      x_knots[k] = w.x0;
      y_knots[k] = w.y0;
      derivatives[k] = derivative(theta, k);
    }
    x_knots[bins_] = w.x1;
    y_knots[bins_] = w.y1;
    derivatives[bins_] = derivative(theta, bins_);
  }

  // ---------------------------------------------------------------------------------------------
  // Forward: x → y, log_det += log dy/dx.

  FORT_HOST_DEVICE void forward(S x, const S* theta, S& y, S& log_det) const {
    if (in_tail(x)) {
      y = x;
      return;
    }
    const Walk w = locate<false>(x, theta);
    const S W = w.x1 - w.x0, H = w.y1 - w.y0;
    const S xi = clamp01((x - w.x0) / W);
    const S s = H / W;
    if (degenerate(s)) {  // a collapsed bin (only with min_bin_width/height = 0): linear
      y = xi >= S(1) ? w.y1 : w.y0 + H * xi;
      log_det += std::log(s);
      return;
    }
    const Local l = local(s, xi, derivative(theta, w.k), derivative(theta, w.k + 1));
    if (xi >= S(1)) y = w.y1;  // exact at the knot, so bins meet without a rounding gap
    else y = w.y0 + H * l.r;
    log_det += l.ld;
  }

  // ---------------------------------------------------------------------------------------------
  // Inverse: y → x, log_det += log dx/dy = −log dy/dx at the recovered x.
  //
  // With Δ = y − y_k, δ = d_{k+1} + d_k − 2s:  a ξ² + b ξ + c = 0,
  //   a = h(s − d_k) + Δδ,  b = h d_k − Δδ,  c = −sΔ   (see solve_near_start).
  // a suffers cancellation when d_k ≫ s; its error is harmless (it enters as a·ξ²) while the root
  // lies in the half of the bin nearer y_k. For y above the bin's midpoint value
  // y_k + h(s + d_k)/(2s + d_k + d_{k+1}) the same equation is solved for 1 − ξ in the mirrored
  // bin (Δ' = y_{k+1} − y, d_k and d_{k+1} swapped), so the root is always in the near half.

  FORT_HOST_DEVICE void inverse(S y, const S* theta, S& x, S& log_det) const {
    if (in_tail(y)) {
      x = y;
      return;
    }
    const Walk w = locate<true>(y, theta);
    const S W = w.x1 - w.x0, H = w.y1 - w.y0;
    const S s = H / W;
    const S delta = y - w.y0;
    S xi;
    if (degenerate(s)) {  // a collapsed bin (only with min_bin_width/height = 0): linear
      xi = clamp01(delta / H);
      x = xi >= S(1) ? w.x1 : w.x0 + xi * W;
      log_det -= std::log(s);
      return;
    }
    const S d0 = derivative(theta, w.k), d1 = derivative(theta, w.k + 1);
    if (delta >= H) {
      xi = S(1);
    } else if (delta * (S(2) * s + d0 + d1) <= H * (s + d0)) {  // y at or below the bin's ξ = 1/2 value
      xi = solve_near_start(H, s, d0, d1, delta);
    } else {  // mirror the bin so the root is again near the reference end
      xi = S(1) - solve_near_start(H, s, d1, d0, w.y1 - y);
    }
    if (xi >= S(1)) {
      x = w.x1;
    } else {
      x = w.x0 + xi * W;
      x = x < w.x1 ? x : w.x1;
    }
    // The log-det at the x actually returned, computed as forward would: the pair then agrees
    // to rounding even where log dy/dx is steep in ξ (tiny derivatives at a knot).
    log_det -= local(s, clamp01((x - w.x0) / W), d0, d1).ld;
  }

  // ---------------------------------------------------------------------------------------------
  // Derivatives at x. y and ld = log dy/dx are treated as functions of (s, ξ, h, d_k, d_{k+1}, y_k),
  // then chained through s = h/w and ξ = (x − x_k)/w to the local variables
  // (x_k, w_k, y_k, h_k, d_k, d_{k+1}); `pullback` continues to θ.

  FORT_HOST_DEVICE Partials partials(S x, const S* theta) const {
    S y, log_det = 0;
    return forward_partials(x, theta, y, log_det);
  }

  /// forward (same y and log_det) and the partials at x, sharing the softmax and bin search.
  FORT_HOST_DEVICE Partials forward_partials(S x, const S* theta, S& y, S& log_det) const {
    Partials p{};
    p.dy_dx = S(1);
    p.dlog_det_dx = S(0);
    p.bin = -1;
    if (in_tail(x)) {
      y = x;
      return p;
    }
    const Softmax sw = softmax(theta), sh = softmax(theta + bins_);
    const Walk w = locate<false>(x, theta, sw, sh);
    const S W = w.x1 - w.x0, H = w.y1 - w.y0;
    const S xi = clamp01((x - w.x0) / W);
    const S s = H / W;
    if (degenerate(s)) {  // collapsed bin: slope 0 or ∞, no gradient flows to θ
      y = xi >= S(1) ? w.y1 : w.y0 + H * xi;
      log_det += std::log(s);
      p.dy_dx = s;
      return p;
    }
    const S d0 = derivative(theta, w.k), d1 = derivative(theta, w.k + 1);
    p.bin = w.k;
    p.uw = w.uw;
    p.cw = w.cw;
    p.uh = w.uh;
    p.ch = w.ch;
    p.max_w = sw.max;
    p.inv_sum_w = sw.inv_sum;
    p.max_h = sh.max;
    p.inv_sum_h = sh.inv_sum;

    const Local l = local(s, xi, d0, d1);
    y = xi >= S(1) ? w.y1 : w.y0 + H * l.r;  // as in forward
    log_det += l.ld;
    const S e = S(1) - xi, q = xi * e;
    const S one_2q = S(1) - S(2) * q, one_2xi = S(1) - S(2) * xi;
    const S dd = d1 + d0 - S(2) * s;

    // R = N/den with N = sξ² + d_k q:   y = y_k + h R
    const S R_s = (xi * xi - l.r * one_2q) / l.den;
    const S R_xi = s * l.m / (l.den * l.den);
    const S R_d0 = q * (S(1) - l.r) / l.den;
    const S R_d1 = -l.r * q / l.den;
    // ld = 2 log s + log M − 2 log den
    const S M_xi = S(2) * (d1 * xi + s * one_2xi - d0 * e);
    const S ld_s = S(2) / s + S(2) * q / l.m - S(2) * one_2q / l.den;
    const S ld_xi = M_xi / l.m - S(2) * dd * one_2xi / l.den;
    const S ld_d0 = e * e / l.m - S(2) * q / l.den;
    const S ld_d1 = xi * xi / l.m - S(2) * q / l.den;

    p.dy_dx = s * R_xi;  // = s² M / den²
    p.dlog_det_dx = ld_xi / W;

    // Chain: s_h = 1/w, s_w = −s/w, ξ_{x_k} = −1/w, ξ_w = −ξ/w.
    p.y_loc[0] = -H * R_xi / W;
    p.y_loc[1] = -H * (R_s * s + R_xi * xi) / W;
    p.y_loc[2] = S(1);
    p.y_loc[3] = l.r + s * R_s;
    p.y_loc[4] = H * R_d0;
    p.y_loc[5] = H * R_d1;
    p.ld_loc[0] = -ld_xi / W;
    p.ld_loc[1] = -(ld_s * s + ld_xi * xi) / W;
    p.ld_loc[2] = S(0);
    p.ld_loc[3] = ld_s / W;
    p.ld_loc[4] = ld_d0;
    p.ld_loc[5] = ld_d1;
    return p;
  }

  /// Row kernels (RowTransform): the element functions coordinate by coordinate; a recorded
  /// forward pass computes each coordinate's partials together with its forward map.
  void forward_row(Index m, const S* x, const S* theta, S* y, S& log_det, Partials* record) const {
    const Index k = params_per_dim();
    for (Index j = 0; j < m; ++j) {
      if (record) record[j] = forward_partials(x[j], theta + j * k, y[j], log_det);
      else forward(x[j], theta + j * k, y[j], log_det);
    }
  }
  void inverse_row(Index m, const S* y, const S* theta, S* x, S& log_det, Partials* record) const {
    const Index k = params_per_dim();
    for (Index j = 0; j < m; ++j) {
      inverse(y[j], theta + j * k, x[j], log_det);
      if (record) record[j] = partials(x[j], theta + j * k);
    }
  }

  /// Adds a·∂y/∂θ + b·∂(log dy/dx)/∂θ into dL_dθ (3K − 1 values).
  ///
  /// Widths: w_j = 2B(w_min + (1 − K w_min) u_j), x_k = −B + Σ_{j<k} w_j, so with g_x = dL/dx_k and
  /// g_w = dL/dw_k, dL/du_j = c(g_x [j<k] + g_w [j=k]), c = 2B(1 − K w_min), and through softmax
  /// dL/dŵ_j = u_j (dL/du_j − Σ_i u_i dL/du_i). Heights likewise; derivatives through softplus.
  FORT_HOST_DEVICE void pullback(S x, const S* theta, const Partials& d, S a, S b, S* dL_dtheta) const {
    (void)x;
    if (d.bin < 0) return;
    S g[6];
    for (int i = 0; i < 6; ++i) g[i] = a * d.y_loc[i] + b * d.ld_loc[i];
    const Index k = d.bin, K = bins_;
    const S coef_w = span_ * scale_w_, coef_h = span_ * scale_h_;
    const S mean_w = g[0] * d.cw + g[1] * d.uw;  // Σ_i u_i (dL/du_i) / c
    const S mean_h = g[2] * d.ch + g[3] * d.uh;
    for (Index j = 0; j < K; ++j) {
      const S uw = std::exp(theta[j] - d.max_w) * d.inv_sum_w;
      const S uh = std::exp(theta[K + j] - d.max_h) * d.inv_sum_h;
      const S gw = (j < k ? g[0] : S(0)) + (j == k ? g[1] : S(0));
      const S gh = (j < k ? g[2] : S(0)) + (j == k ? g[3] : S(0));
      dL_dtheta[j] += coef_w * uw * (gw - mean_w);
      dL_dtheta[K + j] += coef_h * uh * (gh - mean_h);
    }
    if (k >= 1) dL_dtheta[2 * K + k - 1] += g[4] * sigmoid(theta[2 * K + k - 1] + shift_d_);
    if (k + 1 <= K - 1) dL_dtheta[2 * K + k] += g[5] * sigmoid(theta[2 * K + k] + shift_d_);
  }

 private:
  struct Softmax {
    S max, inv_sum;
  };

  /// One bin of the knot walk: bin k spans [x0, x1] × [y0, y1]; uw, uh are its softmax fractions
  /// and cw, ch the sums of the fractions of the bins before it.
  struct Walk {
    Index k = -1;
    S x0 = 0, x1 = 0, y0 = 0, y1 = 0;
    S uw = 0, uh = 0, cw = 0, ch = 0;
  };

  /// Values of the spline in one bin at ξ: R = (sξ² + d_k q)/den, den, M and ld = log dy/dx.
  struct Local {
    S r, den, m, ld;
  };

  FORT_HOST_DEVICE static S clamp01(S v) {
    v = v > S(0) ? v : S(0);  // also maps NaN to 0
    return v < S(1) ? v : S(1);
  }

  FORT_HOST_DEVICE static S softplus(S z) {
    return (z > S(0) ? z : S(0)) + std::log1p(std::exp(-std::fabs(z)));
  }

  FORT_HOST_DEVICE static S sigmoid(S z) {
    if (z >= S(0)) return S(1) / (S(1) + std::exp(-z));
    const S e = std::exp(z);
    return e / (S(1) + e);
  }

  /// Bin slope s = h/w outside [√min, 1/√min] of S: a bin collapsed to (nearly) zero width or
  /// height, which only min_bin_width/height = 0 allows. Also true for NaN.
  FORT_HOST_DEVICE static bool degenerate(S s) {
    const S lo = std::sqrt(std::numeric_limits<S>::min());
    return !(s >= lo && s <= S(1) / lo);
  }

  FORT_HOST_DEVICE bool in_tail(S v) const { return !(v >= -bound_ && v <= bound_); }

  FORT_HOST_DEVICE Softmax softmax(const S* raw) const {
    S m = raw[0];
    for (Index j = 1; j < bins_; ++j) m = raw[j] > m ? raw[j] : m;
    S sum = 0;
    for (Index j = 0; j < bins_; ++j) sum += std::exp(raw[j] - m);
    return {m, S(1) / sum};
  }

  /// d_i: 1 at the two boundary knots, d_min + softplus(d̂_i + c) inside.
  FORT_HOST_DEVICE S derivative(const S* theta, Index i) const {
    if (i <= 0 || i >= bins_) return S(1);
    return min_d_ + softplus(theta[2 * bins_ + i - 1] + shift_d_);
  }

  /// Advances the walk to the next bin (to bin 0 on a fresh walk).
  FORT_HOST_DEVICE void step(Walk& w, const S* theta, const Softmax& sw, const Softmax& sh) const {
    if (w.k < 0) {
      w.x0 = w.y0 = -bound_;
    } else {
      w.cw += w.uw;
      w.ch += w.uh;
      w.x0 = w.x1;
      w.y0 = w.y1;
    }
    ++w.k;
    w.uw = std::exp(theta[w.k] - sw.max) * sw.inv_sum;
    w.uh = std::exp(theta[bins_ + w.k] - sh.max) * sh.inv_sum;
    if (w.k == bins_ - 1) {
      w.x1 = w.y1 = bound_;
    } else {
      const S x1 = w.x0 + span_ * (min_w_ + scale_w_ * w.uw);
      const S y1 = w.y0 + span_ * (min_h_ + scale_h_ * w.uh);
      w.x1 = x1 < bound_ ? x1 : bound_;
      w.y1 = y1 < bound_ ? y1 : bound_;
    }
  }

  /// The bin holding v ∈ [−B, B] in the x-knots (ByY = false) or y-knots (ByY = true): the bin
  /// with knot_k ≤ v < knot_{k+1}, or for v = B the last bin of non-zero size.
  template <bool ByY>
  FORT_HOST_DEVICE Walk locate(S v, const S* theta, const Softmax& sw, const Softmax& sh) const {
    Walk w, last;
    for (Index k = 0; k < bins_; ++k) {
      step(w, theta, sw, sh);
      const S lo = ByY ? w.y0 : w.x0, hi = ByY ? w.y1 : w.x1;
      if (hi > lo || k == 0) last = w;
      if (v < hi) return w;
    }
    return last;
  }

  template <bool ByY>
  FORT_HOST_DEVICE Walk locate(S v, const S* theta) const {
    return locate<ByY>(v, theta, softmax(theta), softmax(theta + bins_));
  }

  /// The root ξ ∈ [0, 1] of a ξ² + b ξ + c = 0 for a bin of height h, slope s, derivative d0 at
  /// the end Δ is measured from and d1 at the other. ξ = 2c/(−b − √D) = (−b + √D)/(2a),
  /// D = b² − 4ac: the first form is free of cancellation for b ≥ 0, the second for b < 0 (then
  /// a > 0 on the valid range). D is clamped at 0 (the source of NaN at the bounds), and a, b, c
  /// are first scaled by their largest magnitude so b² cannot overflow for huge derivatives.
  FORT_HOST_DEVICE static S solve_near_start(S h, S s, S d0, S d1, S delta) {
    const S dd = d1 + d0 - S(2) * s;
    S a = h * (s - d0) + delta * dd, b = h * d0 - delta * dd, c = -s * delta;
    const S m = std::fmax(std::fabs(a), std::fmax(std::fabs(b), std::fabs(c)));
    if (m > S(0)) {
      a /= m;
      b /= m;
      c /= m;
    }
    S disc = b * b - S(4) * a * c;
    disc = disc > S(0) ? disc : S(0);
    const S root = std::sqrt(disc);
    S xi;
    if (b >= S(0)) {
      const S den = -b - root;
      xi = den < S(0) ? S(2) * c / den : S(0);  // den = 0 only when b = c = 0, i.e. Δ = 0
    } else {
      xi = (-b + root) / (S(2) * a);
    }
    return clamp01(xi);
  }

  FORT_HOST_DEVICE static Local local(S s, S xi, S d0, S d1) {
    const S e = S(1) - xi, q = xi * e;
    const S den = s + (d1 + d0 - S(2) * s) * q;
    const S r = (s * xi * xi + d0 * q) / den;
    const S m = d1 * xi * xi + S(2) * s * q + d0 * e * e;
    const S ld = S(2) * std::log(s) + std::log(m) - S(2) * std::log(den);
    return {r, den, m, ld};
  }

  Index bins_;
  S bound_, min_w_, min_h_, min_d_;
  S span_ = 0, scale_w_ = 0, scale_h_ = 0, shift_d_ = 0;
};

}  // namespace fort
