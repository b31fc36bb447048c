#pragma once
/// \file
/// Batched ODE integrators for dx/dt = v(x, t), x [N, D], over [t0, t1] (t1 < t0 integrates
/// backwards), optionally with the log-density accumulator of a continuous normalizing flow.
///
/// Velocity callables (any type; fort::VelocityMLP::bind(p) gives one):
///   v(const Batch<S>& x, S t, Batch<S>& out)                     // out [N, D] = v(x, t)
///   vd(const Batch<S>& x, S t, Batch<S>& out, Vector<S>& div)    // plus div [N] = ∇ₓ·v(x, t)
/// `out` and `div` arrive sized [N, D] and [N]; a callable that leaves them at another size is
/// an error. Callables are invoked from the calling thread only.
///
/// Log-density. `*_with_divergence` integrate the augmented system
///   dx/dt = v(x, t),   dℓ/dt = ∇ₓ·v(x, t),   ℓ(t0) = 0
/// and return ℓ(t1) = ∫_{t0}^{t1} ∇·v(x_s, s) ds per row. By the instantaneous change of
/// variables, log p_{t1}(x(t1)) = log p_{t0}(x(t0)) − ℓ(t1), in either direction of time.
///
/// Methods.
///  * RK4: classical fixed-step Runge–Kutta, `steps` equal steps, 4 evaluations each; global
///    error O(h⁴).
///  * Dopri5: Dormand–Prince 5(4) (Dormand & Prince 1980; Hairer, Nørsett & Wanner, Solving ODEs
///    I, II.4–5) with FSAL, the 5th-order solution propagated, and an embedded 4th-order error
///    estimate. One step size is shared by the whole batch: the error norm of a step is the
///    largest per-row RMS of err/(atol + rtol·max(|y_old|, |y_new|)) over the D (+1 for ℓ)
///    components, so every row meets the tolerance; a row's result can therefore depend on the
///    other rows of its batch, always within tolerance. Accept when the norm ≤ 1; the next step is
///    h·clamp(0.9·norm^(−1/5), 0.2, 10) (no growth right after a rejection). The initial step is
///    Hairer's automatic choice (one extra evaluation) unless `initial_step` is set; steps never
///    exceed `max_step` when it is > 0. A non-finite error norm (the velocity overflowed on a
///    too-long step) counts as a rejection and shrinks the step by 5.
///
/// Failure is never silent. Dopri5 fails when `max_steps` attempted steps (accepted + rejected)
/// do not reach t1, or when the step size underflows (|h| below 16 ulp of t). With
/// `throw_on_failure` (the default) that throws fort::Error; otherwise the report says
/// success = false with the message and the time reached, and x holds the state at that time.
/// Both methods fail when the velocity returns a non-finite value at the initial state, or the
/// final state is non-finite (RK4 has no other check).
///
/// Cost: RK4 4·steps evaluations; Dopri5 6 per attempted step (+1 at start, +1 for the
/// automatic initial step). Memory: 7 (Dopri5) or 4 (RK4) work arrays the size of x.
/// Times are handled in double; the callable receives them as S.
///
/// Errors (fort::Error, "RK4: …" / "Dopri5: …" / "integrate: …"): options out of range
/// (steps < 1, rtol < 0 or atol < 0 or both 0, max_steps < 1, non-finite times, negative
/// initial_step/max_step), empty batches, mismatched accumulator sizes, the failures above.

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "fort/core/error.hpp"
#include "fort/core/types.hpp"

namespace fort {

enum class OdeMethod { rk4, dopri5 };

inline std::string to_string(OdeMethod m) { return m == OdeMethod::rk4 ? "rk4" : "dopri5"; }

inline OdeMethod parse_ode_method(std::string_view name) {
  if (name == "rk4") return OdeMethod::rk4;
  if (name == "dopri5") return OdeMethod::dopri5;
  throw Error("OdeOptions", detail::concat("unknown ODE method '", name, "', expected rk4 or dopri5"));
}

struct OdeOptions {
  OdeMethod method = OdeMethod::rk4;
  Index steps = 20;            ///< RK4: number of equal steps
  double rtol = 1e-5;          ///< Dopri5: relative tolerance
  double atol = 1e-5;          ///< Dopri5: absolute tolerance
  Index max_steps = 10000;     ///< Dopri5: attempted steps (accepted + rejected) before failing
  double initial_step = 0.0;   ///< Dopri5: |h| of the first step (0 = automatic)
  double max_step = 0.0;       ///< Dopri5: cap on |h| (0 = none)
  bool throw_on_failure = true;///< Dopri5: throw on failure (else report success = false)

  void validate() const {
    constexpr const char* w = "OdeOptions";
    if (method == OdeMethod::rk4) {
      detail::require(steps >= 1, w, "steps must be >= 1 for rk4, got ", steps);
      return;
    }
    detail::require(std::isfinite(rtol) && rtol >= 0, w, "rtol must be finite and >= 0, got ", rtol);
    detail::require(std::isfinite(atol) && atol >= 0, w, "atol must be finite and >= 0, got ", atol);
    detail::require(rtol > 0 || atol > 0, w, "rtol and atol are both 0; at least one must be > 0");
    detail::require(max_steps >= 1, w, "max_steps must be >= 1, got ", max_steps);
    detail::require(std::isfinite(initial_step) && initial_step >= 0, w,
                    "initial_step must be finite and >= 0 (0 = automatic), got ", initial_step);
    detail::require(std::isfinite(max_step) && max_step >= 0, w, "max_step must be finite and >= 0 (0 = none), got ",
                    max_step);
  }
};

/// What an integration did.
struct OdeReport {
  bool success = true;
  std::string message;        ///< why it failed (empty on success)
  double t_reached = 0.0;     ///< t1 on success
  Index steps_accepted = 0;
  Index steps_rejected = 0;
  Index evaluations = 0;      ///< velocity calls (each on the whole batch)
  double last_step = 0.0;     ///< |h| of the last accepted step

  /// Adds another batch's counts (success = both succeeded; the first failure message is kept).
  void merge(const OdeReport& other) {
    if (success && !other.success) {
      message = other.message;
      t_reached = other.t_reached;
    }
    success = success && other.success;
    steps_accepted += other.steps_accepted;
    steps_rejected += other.steps_rejected;
    evaluations += other.evaluations;
    last_step = std::max(last_step, other.last_step);
  }
};

namespace detail {

/// ODE state: positions and (possibly empty) log-density accumulators.
template <class S>
struct OdeState {
  Batch<S> x;
  Vector<S> l;  ///< size 0 when the divergence is not integrated
};

/// Wraps a user callable into rhs(y, t, dy): checks the shapes it leaves behind.
template <class S, class V, bool WithDiv>
struct OdeRhs {
  V& v;
  const char* where;
  Index evaluations = 0;

  void operator()(const OdeState<S>& y, double t, OdeState<S>& dy) {
    dy.x.resize(y.x.rows(), y.x.cols());
    ++evaluations;
    if constexpr (WithDiv) {
      dy.l.resize(y.x.rows());
      v(y.x, S(t), dy.x, dy.l);
      require(dy.l.size() == y.x.rows(), where, "the divergence callable returned ", dy.l.size(),
              " values, expected ", y.x.rows());
    } else {
      v(y.x, S(t), dy.x);
    }
    require(dy.x.rows() == y.x.rows() && dy.x.cols() == y.x.cols(), where, "the velocity callable returned shape [",
            dy.x.rows(), ", ", dy.x.cols(), "], expected [", y.x.rows(), ", ", y.x.cols(), "]");
  }
};

template <class S>
bool all_finite(const OdeState<S>& y) {
  return y.x.allFinite() && y.l.allFinite();
}

template <class S>
void require_finite_rhs(const OdeState<S>& dy, double t, const char* where) {
  require(all_finite(dy), where, "the velocity", dy.l.size() ? " or divergence" : "",
          " returned a non-finite value at t = ", t, "; check the model and the inputs");
}

template <class S, class Rhs>
OdeReport rk4(Rhs& rhs, OdeState<S>& y, double t0, double t1, Index steps) {
  constexpr const char* where = "RK4";
  OdeReport rep;
  const double h = (t1 - t0) / double(steps);
  const S hs = S(h), h2 = S(h / 2), h6 = S(h / 6);
  OdeState<S> k1, k2, k3, k4, tmp;
  for (Index s = 0; s < steps; ++s) {
    const double t = t0 + double(s) * h;  // from the step index: no drift from accumulation
    rhs(y, t, k1);
    if (s == 0) require_finite_rhs(k1, t, where);
    tmp.x = y.x + h2 * k1.x;
    tmp.l = y.l + h2 * k1.l;
    rhs(tmp, t + h / 2, k2);
    tmp.x = y.x + h2 * k2.x;
    tmp.l = y.l + h2 * k2.l;
    rhs(tmp, t + h / 2, k3);
    tmp.x = y.x + hs * k3.x;
    tmp.l = y.l + hs * k3.l;
    rhs(tmp, t + h, k4);
    y.x += h6 * (k1.x + S(2) * k2.x + S(2) * k3.x + k4.x);
    y.l += h6 * (k1.l + S(2) * k2.l + S(2) * k3.l + k4.l);
  }
  require(all_finite(y), where, "the solution became non-finite while integrating from t = ", t0, " to ", t1, " in ",
          steps, " steps; use more steps or an adaptive method");
  rep.t_reached = t1;
  rep.steps_accepted = steps;
  rep.evaluations = rhs.evaluations;
  rep.last_step = std::abs(h);
  return rep;
}

/// max over rows of the RMS over components of e/(atol + rtol·max(|a|, |b|)).
template <class S>
double error_norm(const OdeState<S>& e, const OdeState<S>& a, const OdeState<S>& b, double rtol, double atol) {
  const Index n = e.x.rows(), d = e.x.cols();
  const bool with_l = e.l.size() > 0;
  const double comps = double(d + (with_l ? 1 : 0));
  double worst = 0.0;
  for (Index i = 0; i < n; ++i) {
    double sq = 0.0;
    for (Index j = 0; j < d; ++j) {
      const double sc = atol + rtol * std::max(std::abs(double(a.x(i, j))), std::abs(double(b.x(i, j))));
      const double r = double(e.x(i, j)) / sc;
      sq += r * r;
    }
    if (with_l) {
      const double sc = atol + rtol * std::max(std::abs(double(a.l[i])), std::abs(double(b.l[i])));
      const double r = double(e.l[i]) / sc;
      sq += r * r;
    }
    const double rms = std::sqrt(sq / comps);
    if (!(rms <= worst)) worst = rms;  // also propagates NaN
  }
  return worst;
}

template <class S, class Rhs>
OdeReport dopri5(Rhs& rhs, OdeState<S>& y, double t0, double t1, const OdeOptions& opt) {
  constexpr const char* where = "Dopri5";
  // Dormand–Prince 5(4) coefficients.
  constexpr double c2 = 1.0 / 5, c3 = 3.0 / 10, c4 = 4.0 / 5, c5 = 8.0 / 9;
  constexpr double a21 = 1.0 / 5;
  constexpr double a31 = 3.0 / 40, a32 = 9.0 / 40;
  constexpr double a41 = 44.0 / 45, a42 = -56.0 / 15, a43 = 32.0 / 9;
  constexpr double a51 = 19372.0 / 6561, a52 = -25360.0 / 2187, a53 = 64448.0 / 6561, a54 = -212.0 / 729;
  constexpr double a61 = 9017.0 / 3168, a62 = -355.0 / 33, a63 = 46732.0 / 5247, a64 = 49.0 / 176,
                   a65 = -5103.0 / 18656;
  constexpr double b1 = 35.0 / 384, b3 = 500.0 / 1113, b4 = 125.0 / 192, b5 = -2187.0 / 6784, b6 = 11.0 / 84;
  // e = b(5th) − b*(4th).
  constexpr double e1 = 71.0 / 57600, e3 = -71.0 / 16695, e4 = 71.0 / 1920, e5 = -17253.0 / 339200,
                   e6 = 22.0 / 525, e7 = -1.0 / 40;

  OdeReport rep;
  rep.t_reached = t0;
  const double span = t1 - t0;
  if (span == 0.0) return rep;
  const double dir = span > 0 ? 1.0 : -1.0;
  const double rtol = opt.rtol, atol = opt.atol;
  const double hmax = opt.max_step > 0 ? std::min(opt.max_step, std::abs(span)) : std::abs(span);

  OdeState<S> k1, k2, k3, k4, k5, k6, k7, tmp, ynew, err;
  rhs(y, t0, k1);
  require_finite_rhs(k1, t0, where);

  // Initial step (Hairer, Nørsett & Wanner I, II.4): h ~ 0.01·|y|/|f|, corrected with the
  // change of f over that trial step.
  double h;
  if (opt.initial_step > 0) {
    h = std::min(opt.initial_step, hmax);
  } else {
    OdeState<S> zero;
    zero.x = Batch<S>::Zero(y.x.rows(), y.x.cols());
    zero.l = Vector<S>::Zero(y.l.size());
    const double d0 = error_norm(y, y, zero, rtol, atol);
    const double d1 = error_norm(k1, y, zero, rtol, atol);
    double h0 = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
    h0 = std::min(h0, hmax);
    tmp.x = y.x + S(dir * h0) * k1.x;
    tmp.l = y.l + S(dir * h0) * k1.l;
    rhs(tmp, t0 + dir * h0, k2);
    err.x = k2.x - k1.x;
    err.l = k2.l - k1.l;
    const double d2 = error_norm(err, y, zero, rtol, atol) / h0;
    const double dmax = std::max(d1, d2);
    const double h1 = (dmax <= 1e-15 || !std::isfinite(dmax)) ? std::max(1e-6, h0 * 1e-3) : std::pow(0.01 / dmax, 0.2);
    h = std::min({100 * h0, h1, hmax});
  }

  double t = t0;
  Index attempts = 0;
  bool last_rejected = false;
  auto fail = [&](std::string message) {
    rep.success = false;
    rep.message = std::move(message);
    rep.t_reached = t;
    rep.evaluations = rhs.evaluations;
    if (opt.throw_on_failure) throw Error(where, rep.message);
    return rep;
  };

  while (dir * (t1 - t) > 0) {
    if (attempts >= opt.max_steps)
      return fail(concat("reached max_steps = ", opt.max_steps, " at t = ", t, " before t1 = ", t1, " (",
                         rep.steps_accepted, " accepted, ", rep.steps_rejected,
                         " rejected steps); loosen rtol/atol or raise max_steps"));
    // Land exactly on t1 (and avoid a sliver of a last step).
    const double remaining = std::abs(t1 - t);
    bool final_step = false;
    if (h >= remaining * (1 - 1e-12)) {
      h = remaining;
      final_step = true;
    }
    if (h <= 16 * std::numeric_limits<double>::epsilon() * std::max(std::abs(t), 1e-300))
      return fail(concat("step size underflow (|h| = ", h, ") at t = ", t,
                         "; the problem may be stiff or the velocity non-smooth"));
    ++attempts;
    const double hd = dir * h;
    const S hs = S(hd);
    tmp.x = y.x + hs * S(a21) * k1.x;
    tmp.l = y.l + hs * S(a21) * k1.l;
    rhs(tmp, t + c2 * hd, k2);
    tmp.x = y.x + hs * (S(a31) * k1.x + S(a32) * k2.x);
    tmp.l = y.l + hs * (S(a31) * k1.l + S(a32) * k2.l);
    rhs(tmp, t + c3 * hd, k3);
    tmp.x = y.x + hs * (S(a41) * k1.x + S(a42) * k2.x + S(a43) * k3.x);
    tmp.l = y.l + hs * (S(a41) * k1.l + S(a42) * k2.l + S(a43) * k3.l);
    rhs(tmp, t + c4 * hd, k4);
    tmp.x = y.x + hs * (S(a51) * k1.x + S(a52) * k2.x + S(a53) * k3.x + S(a54) * k4.x);
    tmp.l = y.l + hs * (S(a51) * k1.l + S(a52) * k2.l + S(a53) * k3.l + S(a54) * k4.l);
    rhs(tmp, t + c5 * hd, k5);
    tmp.x = y.x + hs * (S(a61) * k1.x + S(a62) * k2.x + S(a63) * k3.x + S(a64) * k4.x + S(a65) * k5.x);
    tmp.l = y.l + hs * (S(a61) * k1.l + S(a62) * k2.l + S(a63) * k3.l + S(a64) * k4.l + S(a65) * k5.l);
    rhs(tmp, final_step ? t1 : t + hd, k6);
    ynew.x = y.x + hs * (S(b1) * k1.x + S(b3) * k3.x + S(b4) * k4.x + S(b5) * k5.x + S(b6) * k6.x);
    ynew.l = y.l + hs * (S(b1) * k1.l + S(b3) * k3.l + S(b4) * k4.l + S(b5) * k5.l + S(b6) * k6.l);
    rhs(ynew, final_step ? t1 : t + hd, k7);  // FSAL: k7 is the next step's k1
    err.x = hs * (S(e1) * k1.x + S(e3) * k3.x + S(e4) * k4.x + S(e5) * k5.x + S(e6) * k6.x + S(e7) * k7.x);
    err.l = hs * (S(e1) * k1.l + S(e3) * k3.l + S(e4) * k4.l + S(e5) * k5.l + S(e6) * k6.l + S(e7) * k7.l);
    const double norm = error_norm(err, y, ynew, rtol, atol);

    if (!std::isfinite(norm) || !all_finite(ynew) || !all_finite(k7)) {
      ++rep.steps_rejected;
      h *= 0.2;
      last_rejected = true;
      continue;
    }
    const double factor = std::clamp(0.9 * std::pow(std::max(norm, 1e-10), -0.2), 0.2, 10.0);
    if (norm <= 1.0) {
      t = final_step ? t1 : t + hd;
      std::swap(y, ynew);
      std::swap(k1, k7);
      ++rep.steps_accepted;
      rep.last_step = h;
      h = std::min(h * (last_rejected ? std::min(factor, 1.0) : factor), hmax);
      last_rejected = false;
    } else {
      ++rep.steps_rejected;
      h *= std::min(factor, 1.0);
      last_rejected = true;
    }
  }
  require(all_finite(y), where, "the solution is non-finite at t = ", t);
  rep.t_reached = t1;
  rep.evaluations = rhs.evaluations;
  return rep;
}

inline void check_times(double t0, double t1, const char* where) {
  require(std::isfinite(t0) && std::isfinite(t1), where, "times must be finite, got t0 = ", t0, ", t1 = ", t1);
}

template <class S>
void check_batch(const Batch<S>& x, const char* where) {
  require(x.rows() >= 1 && x.cols() >= 1, where, "x has shape [", x.rows(), ", ", x.cols(),
          "], expected at least one row and one column");
}

template <class S, bool WithDiv, class V>
OdeReport integrate_impl(V& v, Batch<S>& x, Vector<S>* l, double t0, double t1, const OdeOptions& opt,
                         const char* where) {
  opt.validate();
  check_times(t0, t1, where);
  check_batch(x, where);
  OdeState<S> y;
  y.x = std::move(x);
  if constexpr (WithDiv) y.l = Vector<S>::Zero(y.x.rows());
  OdeRhs<S, V, WithDiv> rhs{v, where};
  OdeReport rep;
  // Put the state back into the caller's arrays also when an error is thrown.
  struct Restore {
    OdeState<S>& y;
    Batch<S>& x;
    Vector<S>* l;
    ~Restore() {
      x = std::move(y.x);
      if (l) *l = std::move(y.l);
    }
  } restore{y, x, l};
  if (opt.method == OdeMethod::rk4) {
    rep = rk4<S>(rhs, y, t0, t1, opt.steps);
  } else {
    rep = dopri5<S>(rhs, y, t0, t1, opt);
  }
  return rep;
}

}  // namespace detail

/// Integrates dx/dt = v(x, t) from t0 to t1 in place (x [N, D]) with `options.method`.
template <class S, class V>
OdeReport integrate(V&& v, Batch<S>& x, double t0, double t1, const OdeOptions& options = {}) {
  return detail::integrate_impl<S, false>(v, x, nullptr, t0, t1, options, "integrate");
}

/// Also integrates dℓ/dt = ∇·v: on return `integral_div` [N] = ∫_{t0}^{t1} ∇·v(x_s, s) ds, so
/// log p_{t1}(x(t1)) = log p_{t0}(x(t0)) − integral_div.
template <class S, class VD>
OdeReport integrate_with_divergence(VD&& vd, Batch<S>& x, Vector<S>& integral_div, double t0, double t1,
                                    const OdeOptions& options = {}) {
  return detail::integrate_impl<S, true>(vd, x, &integral_div, t0, t1, options, "integrate");
}

/// Fixed-step RK4 with `steps` steps.
template <class S, class V>
OdeReport integrate_rk4(V&& v, Batch<S>& x, double t0, double t1, Index steps) {
  OdeOptions o;
  o.method = OdeMethod::rk4;
  o.steps = steps;
  return detail::integrate_impl<S, false>(v, x, nullptr, t0, t1, o, "RK4");
}

/// Adaptive Dormand–Prince 5(4); `options.method` is ignored.
template <class S, class V>
OdeReport integrate_dopri5(V&& v, Batch<S>& x, double t0, double t1, OdeOptions options = {}) {
  options.method = OdeMethod::dopri5;
  return detail::integrate_impl<S, false>(v, x, nullptr, t0, t1, options, "Dopri5");
}

}  // namespace fort
