#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "fort/targets/ode.hpp"

using namespace fort;

namespace {

// dx/dt = A x (rows are points, so out = x Aᵀ) with A = [[-α, ω], [-ω, -α]]:
// exp(A t) = e^{-αt} [[cos ωt, sin ωt], [-sin ωt, cos ωt]].
constexpr double alpha = 0.5, omega = 2.0;

struct Linear {
  void operator()(const Batch<double>& x, double, Batch<double>& out) const {
    for (Index i = 0; i < x.rows(); ++i) {
      out(i, 0) = -alpha * x(i, 0) + omega * x(i, 1);
      out(i, 1) = -omega * x(i, 0) - alpha * x(i, 1);
    }
  }
  // Divergence = tr A = −2α everywhere.
  void operator()(const Batch<double>& x, double t, Batch<double>& out, Vector<double>& div) const {
    (*this)(x, t, out);
    div.setConstant(-2 * alpha);
  }
};

Batch<double> start_points() {
  Batch<double> x(3, 2);
  x << 1.0, 0.0, -0.3, 2.0, 0.7, -1.1;
  return x;
}

Batch<double> exact(const Batch<double>& x0, double t) {
  Batch<double> x(x0.rows(), 2);
  const double e = std::exp(-alpha * t), c = std::cos(omega * t), s = std::sin(omega * t);
  for (Index i = 0; i < x0.rows(); ++i) {
    x(i, 0) = e * (c * x0(i, 0) + s * x0(i, 1));
    x(i, 1) = e * (-s * x0(i, 0) + c * x0(i, 1));
  }
  return x;
}

double max_error_rk4(Index steps, double t1) {
  Batch<double> x = start_points();
  integrate_rk4(Linear{}, x, 0.0, t1, steps);
  return (x - exact(start_points(), t1)).cwiseAbs().maxCoeff();
}

}  // namespace

TEST_CASE("RK4 converges with order 4 on a linear ODE", "[targets][ode]") {
  const double e10 = max_error_rk4(10, 2.0), e20 = max_error_rk4(20, 2.0), e40 = max_error_rk4(40, 2.0),
               e80 = max_error_rk4(80, 2.0);
  INFO("errors " << e10 << " " << e20 << " " << e40 << " " << e80);
  CHECK(std::log2(e20 / e40) == Approx(4.0).margin(0.15));
  CHECK(std::log2(e40 / e80) == Approx(4.0).margin(0.1));
  CHECK(e80 < 1e-6);
}

TEST_CASE("RK4 integrates cubic time dependence exactly", "[targets][ode]") {
  // dx/dt = 3t² + 1: RK4's quadrature is Simpson's rule, exact for cubics in t.
  auto v = [](const Batch<double>& x, double t, Batch<double>& out) { out.setConstant(3 * t * t + 1); (void)x; };
  Batch<double> x = Batch<double>::Zero(2, 3);
  const OdeReport rep = integrate_rk4(v, x, 0.0, 1.5, 3);
  CHECK(rep.success);
  CHECK(rep.evaluations == 12);
  CHECK(x(1, 2) == Approx(1.5 * 1.5 * 1.5 + 1.5).epsilon(1e-14));
}

TEST_CASE("Dopri5 meets its tolerance and converges with order 5 at fixed steps", "[targets][ode]") {
  const Batch<double> x0 = start_points();
  const Batch<double> ref = exact(x0, 3.0);
  double previous = 1.0;
  for (double tol : {1e-4, 1e-6, 1e-8, 1e-10}) {
    Batch<double> x = x0;
    OdeOptions o;
    o.rtol = tol;
    o.atol = tol;
    const OdeReport rep = integrate_dopri5(Linear{}, x, 0.0, 3.0, o);
    const double err = (x - ref).cwiseAbs().maxCoeff();
    INFO("tol " << tol << " error " << err << " accepted " << rep.steps_accepted << " rejected "
                << rep.steps_rejected);
    CHECK(rep.success);
    CHECK(rep.t_reached == 3.0);
    CHECK(err < 20 * tol);  // global error within a small multiple of the local tolerance
    CHECK(err < previous);  // tighter tolerance, smaller error
    previous = err;
  }

  // Huge tolerances accept every step; initial_step = max_step = h then gives fixed steps.
  auto fixed = [&](double h) {
    Batch<double> x = x0;
    OdeOptions o;
    o.rtol = 1e10;
    o.atol = 1e10;
    o.initial_step = h;
    o.max_step = h;
    const OdeReport rep = integrate_dopri5(Linear{}, x, 0.0, 3.0, o);
    CHECK(rep.steps_rejected == 0);
    CHECK(rep.steps_accepted == Index(std::lround(3.0 / h)));
    return (x - ref).cwiseAbs().maxCoeff();
  };
  const double e1 = fixed(0.1), e2 = fixed(0.05), e3 = fixed(0.025);
  INFO("fixed-step errors " << e1 << " " << e2 << " " << e3);
  CHECK(std::log2(e1 / e2) == Approx(5.0).margin(0.25));
  CHECK(std::log2(e2 / e3) == Approx(5.0).margin(0.15));
}

TEST_CASE("integrating forwards then backwards returns to the start", "[targets][ode]") {
  for (OdeMethod m : {OdeMethod::rk4, OdeMethod::dopri5}) {
    OdeOptions o;
    o.method = m;
    o.steps = 200;
    o.rtol = o.atol = 1e-10;
    Batch<double> x = start_points();
    integrate(Linear{}, x, 0.0, 1.7, o);
    CHECK((x - exact(start_points(), 1.7)).cwiseAbs().maxCoeff() < 1e-8);
    const OdeReport back = integrate(Linear{}, x, 1.7, 0.0, o);
    CHECK(back.t_reached == 0.0);
    CHECK((x - start_points()).cwiseAbs().maxCoeff() < 1e-8);
  }
}

TEST_CASE("the log-density accumulator integrates the divergence", "[targets][ode]") {
  for (OdeMethod m : {OdeMethod::rk4, OdeMethod::dopri5}) {
    OdeOptions o;
    o.method = m;
    Batch<double> x = start_points();
    Vector<double> ell;
    integrate_with_divergence(Linear{}, x, ell, 0.5, 2.0, o);
    REQUIRE(ell.size() == 3);
    CHECK(ell.cwiseAbs().maxCoeff() == Approx(2 * alpha * 1.5).epsilon(1e-12));
    CHECK(ell[0] < 0);
    // Backwards in time the sign flips.
    integrate_with_divergence(Linear{}, x, ell, 2.0, 0.5, o);
    CHECK(ell[1] == Approx(2 * alpha * 1.5).epsilon(1e-12));
  }
}

TEST_CASE("Dopri5 reports reaching max_steps", "[targets][ode][errors]") {
  OdeOptions o;
  o.method = OdeMethod::dopri5;
  o.rtol = o.atol = 1e-12;
  o.max_steps = 5;
  Batch<double> x = start_points();
  CHECK_THROWS_WITH(integrate(Linear{}, x, 0.0, 3.0, o), Catch::Contains("Dopri5: reached max_steps = 5"));

  o.throw_on_failure = false;
  x = start_points();
  const OdeReport rep = integrate(Linear{}, x, 0.0, 3.0, o);
  CHECK_FALSE(rep.success);
  CHECK_THAT(rep.message, Catch::Contains("max_steps"));
  CHECK(rep.t_reached > 0.0);
  CHECK(rep.t_reached < 3.0);
  CHECK(rep.steps_accepted + rep.steps_rejected == 5);
  // x holds the state at t_reached, not garbage.
  CHECK((x - exact(start_points(), rep.t_reached)).cwiseAbs().maxCoeff() < 1e-9);
}

TEST_CASE("ODE integrators reject bad options and bad velocities", "[targets][ode][errors]") {
  Batch<double> x = start_points();
  CHECK_THROWS_WITH(integrate_rk4(Linear{}, x, 0.0, 1.0, 0), Catch::Contains("steps must be >= 1"));
  OdeOptions o;
  o.method = OdeMethod::dopri5;
  o.rtol = -1;
  CHECK_THROWS_WITH(integrate(Linear{}, x, 0.0, 1.0, o), Catch::Contains("rtol must be finite and >= 0"));
  o.rtol = 0;
  o.atol = 0;
  CHECK_THROWS_WITH(integrate(Linear{}, x, 0.0, 1.0, o), Catch::Contains("both 0"));
  o.atol = 1e-6;
  o.max_steps = 0;
  CHECK_THROWS_WITH(integrate(Linear{}, x, 0.0, 1.0, o), Catch::Contains("max_steps must be >= 1"));
  o.max_steps = 100;
  CHECK_THROWS_WITH(integrate(Linear{}, x, 0.0, std::numeric_limits<double>::infinity(), o),
                    Catch::Contains("times must be finite"));
  Batch<double> empty(0, 2);
  CHECK_THROWS_WITH(integrate(Linear{}, empty, 0.0, 1.0, o), Catch::Contains("expected at least one row"));

  auto nan_field = [](const Batch<double>& in, double, Batch<double>& out) {
    out = in;
    out(0, 0) = std::numeric_limits<double>::quiet_NaN();
  };
  CHECK_THROWS_WITH(integrate(nan_field, x, 0.0, 1.0, o), Catch::Contains("non-finite value at t = 0"));
  CHECK_THROWS_WITH(integrate_rk4(nan_field, x, 0.0, 1.0, 4), Catch::Contains("non-finite"));
  auto wrong_shape = [](const Batch<double>& in, double, Batch<double>& out) { out.resize(in.rows(), 1); };
  CHECK_THROWS_WITH(integrate_rk4(wrong_shape, x, 0.0, 1.0, 4), Catch::Contains("returned shape [3, 1], expected [3, 2]"));

  // A blow-up in finite time: dx/dt = x² from x = 1 reaches infinity at t = 1.
  auto blowup = [](const Batch<double>& in, double, Batch<double>& out) { out = in.cwiseProduct(in); };
  Batch<double> one = Batch<double>::Ones(1, 1);
  o.rtol = o.atol = 1e-8;
  o.max_steps = 100000;
  CHECK_THROWS_WITH(integrate(blowup, one, 0.0, 2.0, o), Catch::Contains("Dopri5"));
  CHECK_THROWS_WITH(parse_ode_method("euler"), Catch::Contains("unknown ODE method 'euler'"));
}

TEST_CASE("ODE integrators work in float", "[targets][ode]") {
  auto v = [](const Batch<float>& x, float, Batch<float>& out) { out = -x; };
  Batch<float> x = Batch<float>::Ones(4, 3);
  integrate_rk4(v, x, 0.0, 1.0, 20);
  CHECK(x(3, 2) == Approx(std::exp(-1.0)).epsilon(1e-5));
  x.setOnes();
  OdeOptions o;
  o.method = OdeMethod::dopri5;
  integrate(v, x, 0.0, 1.0, o);
  CHECK(x(0, 0) == Approx(std::exp(-1.0)).epsilon(1e-4));
}
