#pragma once
// One generic conformance check that every layer and composite runs, in double and float:
// round trip, inverse log-det = −forward log-det, log-det against a central-difference Jacobian,
// input and parameter gradients of both directions against central differences, cached =
// uncached, per-point = batched, identity at initialisation, and state save/restore.
//
// Tolerances live in `Tolerances` below, in one place.

#include <catch2/catch.hpp>

#include <Eigen/LU>
#include <cmath>
#include <functional>
#include <string>
#include <type_traits>

#include "fort/core/concepts.hpp"

namespace fort::testing {

template <class S>
struct Tolerances;

template <>
struct Tolerances<double> {
  static constexpr double round_trip = 1e-10;    // max |f⁻¹(f(x)) − x|
  static constexpr double log_det_fd = 1e-8;     // relative, against log|det| of an FD Jacobian
  static constexpr double gradient_fd = 1e-6;    // relative, against central differences
  static constexpr double point_vs_batch = 1e-12;
};

template <>
struct Tolerances<float> {
  static constexpr double round_trip = 1e-4;
  static constexpr double vs_double = 2e-3;      // float results against the double computation
  static constexpr double point_vs_batch = 1e-5;
};

struct ConformanceOptions {
  Index round_trip_points = 10000;
  double input_scale = 1.0;       // random inputs are N(0, input_scale²)
  double param_scale = 0.3;       // random parameters are N(0, param_scale²)
  bool identity_at_init = true;   // init_params gives the identity map
  Index gradient_points = 3;      // batch used for the finite-difference checks
  Index max_checked_params = 300; // parameter FD checks use an evenly spaced subset beyond this
  /// Extra inputs for the round trip (tails, bounds, bin edges); rows of length dim.
  std::function<Batch<double>(Index dim)> special_inputs;
};

namespace detail {

template <class S>
using Tag = std::type_identity<S>;

inline Batch<double> random_batch(Index n, Index d, double scale, std::uint64_t stream) {
  Batch<double> x(n, d);
  Random(1234, stream).fill_normal(std::span<double>(x.data(), std::size_t(x.size())), 0, scale);
  return x;
}

template <class L>
auto params_of(const L& layer, double scale, std::uint64_t stream) {
  using S = typename L::Scalar;
  std::vector<double> pd(std::size_t(layer.num_params()));
  Random(99, stream).fill_normal(std::span<double>(pd), 0, scale);
  return std::vector<S>(pd.begin(), pd.end());
}

template <class S, int D, class M>
Batch<S, D> cast_batch(const M& x) {
  return x.template cast<S>();
}

// Runs the layer in one direction on double-precision data converted to the layer's scalar.
template <class L>
void run(const L& layer, const std::vector<typename L::Scalar>& p, const Batch<typename L::Scalar, L::Dim>& in,
         Batch<typename L::Scalar, L::Dim>& out, Vector<typename L::Scalar>& ld, bool forward) {
  using S = typename L::Scalar;
  out.resize(in.rows(), layer.dim());
  ld = Vector<S>::Zero(in.rows());
  if (forward) layer.forward(Params<S>(p), in, out, ld);
  else layer.inverse(Params<S>(p), in, out, ld);
}

// Scalar test loss L = Σ c⊙out + Σ e⊙ld with fixed random weights.
struct LossWeights {
  Batch<double> c;
  Vector<double> e;
};

template <class L>
double loss(const L& layer, const std::vector<double>& p, const Batch<double, L::Dim>& in, const LossWeights& w,
            bool forward) {
  Batch<double, L::Dim> out;
  Vector<double> ld;
  run(layer, p, in, out, ld, forward);
  return (out.array() * w.c.array()).sum() + ld.dot(w.e);
}

// Central difference with step h, and a second estimate at h/2. Returns {estimate, smooth}
// where smooth is false when the two disagree, i.e. a kink (spline knot) lies within h.
template <class F>
std::pair<double, bool> central_difference(F&& f, double h, double tol) {
  const double d1 = (f(h) - f(-h)) / (2 * h);
  const double d2 = (f(h / 2) - f(-h / 2)) / h;
  const bool smooth = std::abs(d1 - d2) <= 0.3 * tol * std::max(1.0, std::abs(d2));
  return {d2 + (d2 - d1) / 3.0, smooth};  // Richardson extrapolation of the two steps
}

template <class L>
void check_gradients_double(const L& layer, const ConformanceOptions& opt, bool forward) {
  constexpr double tol = Tolerances<double>::gradient_fd;
  const Index n = opt.gradient_points, d = layer.dim();
  const auto p = params_of(layer, opt.param_scale, 7);
  Batch<double, L::Dim> in = random_batch(n, d, opt.input_scale, forward ? 11 : 12);
  if (!forward) {  // inverse inputs should be typical data: push random noise through forward
    Batch<double, L::Dim> y;
    Vector<double> ld;
    run(layer, p, in, y, ld, true);
    in = y;
  }
  LossWeights w{random_batch(n, d, 1.0, 21), random_batch(n, 1, 1.0, 22).col(0)};

  typename L::Cache cache;
  Batch<double, L::Dim> out(n, d), dL_din(n, d);
  Vector<double> ld = Vector<double>::Zero(n);
  if (forward) layer.forward(Params<double>(p), in, out, ld, &cache);
  else layer.inverse(Params<double>(p), in, out, ld, &cache);
  std::vector<double> dL_dp(p.size(), 0.0);
  Batch<double, L::Dim> c = w.c;
  if (forward) layer.backward_forward(Params<double>(p), cache, c, w.e, dL_din, Grads<double>(dL_dp));
  else layer.backward_inverse(Params<double>(p), cache, c, w.e, dL_din, Grads<double>(dL_dp));

  const double h = 1e-5;
  Index checked = 0, total = 0;
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < d; ++j) {
      auto f = [&](double delta) {
        Batch<double, L::Dim> x = in;
        x(i, j) += delta;
        return loss(layer, p, x, w, forward);
      };
      auto [fd, smooth] = central_difference(f, h, tol);
      ++total;
      if (!smooth) continue;
      ++checked;
      INFO((forward ? "forward" : "inverse") << " dL/dinput(" << i << "," << j << ") analytic " << dL_din(i, j)
                                             << " fd " << fd);
      CHECK(std::abs(dL_din(i, j) - fd) <= tol * std::max(1.0, std::abs(fd)));
    }
  CHECK(checked * 5 >= total * 4);  // most points are away from kinks

  const Index np = Index(p.size());
  const Index stride = np > opt.max_checked_params ? np / opt.max_checked_params + 1 : 1;
  checked = total = 0;
  for (Index k = 0; k < np; k += stride) {
    auto f = [&](double delta) {
      auto q = p;
      q[std::size_t(k)] += delta;
      return loss(layer, q, in, w, forward);
    };
    auto [fd, smooth] = central_difference(f, h, tol);
    ++total;
    if (!smooth) continue;
    ++checked;
    INFO((forward ? "forward" : "inverse") << " dL/dparam[" << k << "] analytic " << dL_dp[std::size_t(k)] << " fd "
                                           << fd);
    CHECK(std::abs(dL_dp[std::size_t(k)] - fd) <= tol * std::max(1.0, std::abs(fd)));
  }
  CHECK(checked * 5 >= total * 4);
}

template <class L>
void check_log_det_double(const L& layer, const ConformanceOptions& opt) {
  constexpr double tol = Tolerances<double>::log_det_fd;
  const Index n = 8, d = layer.dim();
  const auto p = params_of(layer, opt.param_scale, 7);
  const Batch<double, L::Dim> x = random_batch(n, d, opt.input_scale, 31);
  Batch<double, L::Dim> y;
  Vector<double> ld;
  run(layer, p, x, y, ld, true);
  Index checked = 0;
  for (Index i = 0; i < n; ++i) {
    Eigen::MatrixXd J(d, d);
    bool smooth = true;
    for (Index j = 0; j < d; ++j)
      for (Index r = 0; r < d; ++r) {
        auto f = [&](double delta) {
          Batch<double, L::Dim> xi = x.row(i);
          xi(0, j) += delta;
          Batch<double, L::Dim> yi;
          Vector<double> l;
          run(layer, p, xi, yi, l, true);
          return yi(0, r);
        };
        auto [fd, ok] = central_difference(f, 1e-5, tol);
        J(r, j) = fd;
        smooth = smooth && ok;
      }
    if (!smooth) continue;
    ++checked;
    const double fd_ld = std::log(std::abs(J.determinant()));
    INFO("point " << i << " analytic log-det " << ld[i] << " finite-difference " << fd_ld);
    CHECK(std::abs(ld[i] - fd_ld) <= tol * std::max(1.0, std::abs(fd_ld)));
  }
  CHECK(checked * 5 >= n * 4);
}

template <class L>
void check_round_trip(const L& layer, const ConformanceOptions& opt) {
  using S = typename L::Scalar;
  constexpr double tol = Tolerances<S>::round_trip;
  const Index d = layer.dim();
  const auto p = params_of(layer, opt.param_scale, 7);
  Batch<double> xd = random_batch(opt.round_trip_points, d, opt.input_scale, 41);
  if (opt.special_inputs) {
    const Batch<double> extra = opt.special_inputs(d);
    Batch<double> all(xd.rows() + extra.rows(), d);
    all << xd, extra;
    xd = all;
  }
  const Batch<S, L::Dim> x = cast_batch<S, L::Dim>(xd);
  Batch<S, L::Dim> y, x2, y2;
  Vector<S> ld, ld_inv, ld2;
  run(layer, p, x, y, ld, true);
  run(layer, p, y, x2, ld_inv, false);
  REQUIRE(y.allFinite());
  REQUIRE(ld.allFinite());
  const double err = double((x2 - x).cwiseAbs().maxCoeff());
  INFO("max |f^-1(f(x)) - x| = " << err);
  CHECK(err <= tol);
  const double ld_err = double((ld + ld_inv).cwiseAbs().maxCoeff());
  INFO("max |log-det + inverse log-det| = " << ld_err);
  CHECK(ld_err <= 10 * tol * std::max(1.0, double(ld.cwiseAbs().maxCoeff())));
  // The other way round, from data-side points.
  run(layer, p, x, y2, ld2, false);
  run(layer, p, y2, x2, ld, true);
  const double err2 = double((x2 - x).cwiseAbs().maxCoeff());
  INFO("max |f(f^-1(y)) - y| = " << err2);
  CHECK(err2 <= tol);
}

template <class L>
void check_paths_agree(const L& layer, const ConformanceOptions& opt) {
  using S = typename L::Scalar;
  constexpr double tol = Tolerances<S>::point_vs_batch;
  const Index n = 16, d = layer.dim();
  const auto p = params_of(layer, opt.param_scale, 7);
  const Batch<S, L::Dim> x = cast_batch<S, L::Dim>(random_batch(n, d, opt.input_scale, 51));
  for (bool forward : {true, false}) {
    Batch<S, L::Dim> y, yc(n, d);
    Vector<S> ld, ldc = Vector<S>::Zero(n);
    run(layer, p, x, y, ld, forward);
    typename L::Cache cache;
    if (forward) layer.forward(Params<S>(p), x, yc, ldc, &cache);
    else layer.inverse(Params<S>(p), x, yc, ldc, &cache);
    CHECK((y - yc).cwiseAbs().maxCoeff() == S(0));  // recording a cache never changes results
    CHECK((ld - ldc).cwiseAbs().maxCoeff() == S(0));
    std::vector<S> scratch(static_cast<std::size_t>(layer.point_scratch_size()));
    std::vector<S> out(static_cast<std::size_t>(d));
    for (Index i = 0; i < n; ++i) {
      S lp = 0;
      if (forward) layer.forward_point(Params<S>(p), x.row(i).data(), out.data(), lp, scratch.data());
      else layer.inverse_point(Params<S>(p), x.row(i).data(), out.data(), lp, scratch.data());
      double err = std::abs(double(lp - ld[i])) / std::max(1.0, std::abs(double(ld[i])));
      for (Index j = 0; j < d; ++j)
        err = std::max(err, std::abs(double(out[std::size_t(j)] - y(i, j))) / std::max(1.0, std::abs(double(y(i, j)))));
      INFO((forward ? "forward" : "inverse") << " point " << i << " per-point vs batched error " << err);
      CHECK(err <= tol);
    }
  }
}

template <class L>
void check_identity_at_init(const L& layer) {
  using S = typename L::Scalar;
  std::vector<S> p(std::size_t(layer.num_params()));
  layer.init_params(Grads<S>(p), Random(5));
  for (S v : p) REQUIRE(std::isfinite(double(v)));
  const Batch<S, L::Dim> x = cast_batch<S, L::Dim>(random_batch(64, layer.dim(), 1.0, 61));
  Batch<S, L::Dim> y;
  Vector<S> ld;
  run(layer, p, x, y, ld, true);
  CHECK((y - x).cwiseAbs().maxCoeff() <= S(1e-6) * S(1 + x.cwiseAbs().maxCoeff()));
  CHECK(ld.cwiseAbs().maxCoeff() <= S(1e-6));
}

// Float results (forward, inverse, gradients) must agree with the double computation.
template <class LF, class LD>
void check_float_vs_double(const LF& lf, const LD& ld_layer, const ConformanceOptions& opt) {
  constexpr double tol = Tolerances<float>::vs_double;
  const Index n = 32, d = ld_layer.dim();
  const auto pd = params_of(ld_layer, opt.param_scale, 7);
  const std::vector<float> pf(pd.begin(), pd.end());
  const std::vector<double> pdr(pf.begin(), pf.end());  // the same (rounded) parameters in double
  const Batch<double> xr = cast_batch<double, Dynamic>(cast_batch<float, Dynamic>(random_batch(n, d, opt.input_scale, 71)));
  const LossWeights w{random_batch(n, d, 1.0, 72), random_batch(n, 1, 1.0, 73).col(0)};
  for (bool forward : {true, false}) {
    typename LD::Cache cd;
    typename LF::Cache cf;
    Batch<double, LD::Dim> xd = xr, yd(n, d), gd(n, d);
    Batch<float, LF::Dim> xf = cast_batch<float, LF::Dim>(xr), yf(n, d), gf(n, d);
    Vector<double> ldd = Vector<double>::Zero(n);
    Vector<float> ldf = Vector<float>::Zero(n);
    std::vector<double> gpd(pd.size(), 0.0);
    std::vector<float> gpf(pd.size(), 0.0f);
    const Batch<double, LD::Dim> cdw = w.c;
    const Batch<float, LF::Dim> cfw = cast_batch<float, LF::Dim>(w.c);
    const Vector<float> ef = w.e.cast<float>();
    if (forward) {
      ld_layer.forward(Params<double>(pdr), xd, yd, ldd, &cd);
      lf.forward(Params<float>(pf), xf, yf, ldf, &cf);
      ld_layer.backward_forward(Params<double>(pdr), cd, cdw, w.e, gd, Grads<double>(gpd));
      lf.backward_forward(Params<float>(pf), cf, cfw, ef, gf, Grads<float>(gpf));
    } else {
      ld_layer.inverse(Params<double>(pdr), xd, yd, ldd, &cd);
      lf.inverse(Params<float>(pf), xf, yf, ldf, &cf);
      ld_layer.backward_inverse(Params<double>(pdr), cd, cdw, w.e, gd, Grads<double>(gpd));
      lf.backward_inverse(Params<float>(pf), cf, cfw, ef, gf, Grads<float>(gpf));
    }
    auto rel = [](double a, double b, double scale) { return std::abs(a - b) / std::max(scale, std::abs(b)); };
    double e_y = 0, e_ld = 0, e_g = 0, e_p = 0;
    const double gscale = std::max(1.0, gd.cwiseAbs().maxCoeff());
    double pscale = 1.0;
    for (double v : gpd) pscale = std::max(pscale, std::abs(v));
    for (Index i = 0; i < n; ++i) {
      e_ld = std::max(e_ld, rel(ldf[i], ldd[i], 1.0));
      for (Index j = 0; j < d; ++j) {
        e_y = std::max(e_y, rel(yf(i, j), yd(i, j), 1.0));
        e_g = std::max(e_g, rel(gf(i, j), gd(i, j), gscale));
      }
    }
    for (std::size_t k = 0; k < gpd.size(); ++k) e_p = std::max(e_p, rel(gpf[k], gpd[k], pscale));
    INFO((forward ? "forward" : "inverse") << ": float vs double relative errors: output " << e_y << ", log-det "
                                           << e_ld << ", input grad " << e_g << ", param grad " << e_p);
    CHECK(e_y <= tol);
    CHECK(e_ld <= tol);
    CHECK(e_g <= tol);
    CHECK(e_p <= tol);
  }
}

template <class L>
void check_state_round_trip(const L& a, L b, const ConformanceOptions& opt) {
  using S = typename L::Scalar;
  b.set_state(a.state());
  CHECK(b.signature() == a.signature());
  CHECK(b.state() == a.state());
  const auto p = params_of(a, opt.param_scale, 7);
  const Batch<S, L::Dim> x = cast_batch<S, L::Dim>(random_batch(16, a.dim(), opt.input_scale, 81));
  Batch<S, L::Dim> ya, yb;
  Vector<S> la, lb;
  run(a, p, x, ya, la, true);
  run(b, p, x, yb, lb, true);
  CHECK((ya - yb).cwiseAbs().maxCoeff() == S(0));
  CHECK((la - lb).cwiseAbs().maxCoeff() == S(0));
}

}  // namespace detail

/// Runs every check on the layers `make(std::type_identity<S>{}, variant)` builds, for S = double
/// and float. `variant` 0 and 1 must give layers of the same architecture whose state may differ
/// (e.g. different random permutations); the state check copies 0's state into 1.
template <class Make>
void check_conformance(const Make& make, const ConformanceOptions& opt = {}) {
  using LD = decltype(make(std::type_identity<double>{}, 0));
  using LF = decltype(make(std::type_identity<float>{}, 0));
  static_assert(FlowLayer<LD> && FlowLayer<LF>, "layer does not satisfy fort::FlowLayer");
  const LD ld = make(std::type_identity<double>{}, 0);
  const LF lf = make(std::type_identity<float>{}, 0);
  INFO("layer " << ld.signature());
  SECTION("round trip (double)") { detail::check_round_trip(ld, opt); }
  SECTION("round trip (float)") { detail::check_round_trip(lf, opt); }
  SECTION("log-det against finite-difference Jacobian (double)") { detail::check_log_det_double(ld, opt); }
  SECTION("gradients against finite differences, forward (double)") { detail::check_gradients_double(ld, opt, true); }
  SECTION("gradients against finite differences, inverse (double)") { detail::check_gradients_double(ld, opt, false); }
  SECTION("float agrees with double (values and gradients)") { detail::check_float_vs_double(lf, ld, opt); }
  SECTION("cached, uncached and per-point paths agree") {
    detail::check_paths_agree(ld, opt);
    detail::check_paths_agree(lf, opt);
  }
  if (opt.identity_at_init) {
    SECTION("identity at initialisation") {
      detail::check_identity_at_init(ld);
      detail::check_identity_at_init(lf);
    }
  }
  SECTION("state saved and restored") {
    detail::check_state_round_trip(ld, make(std::type_identity<double>{}, 1), opt);
    detail::check_state_round_trip(lf, make(std::type_identity<float>{}, 1), opt);
  }
}

}  // namespace fort::testing
