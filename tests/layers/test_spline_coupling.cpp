#include "support/conformance.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "fort/layers/spline_coupling.hpp"

using namespace fort;

namespace {

MLPConfig small_mlp(Activation act = Activation::tanh, bool residual = false) {
  return MLPConfig{8, 2, act, residual};
}

template <class S>
std::vector<S> random_theta(Index n, double scale, std::mt19937_64& rng) {
  std::normal_distribution<double> normal(0.0, scale);
  std::vector<S> t(static_cast<std::size_t>(n));
  for (auto& v : t) v = S(normal(rng));
  return t;
}

template <class S>
struct Knots {
  std::vector<S> x, y, d;
};

template <class S>
Knots<S> knots_of(const RationalQuadraticTransform<S>& t, const std::vector<S>& theta) {
  const auto n = static_cast<std::size_t>(t.bins() + 1);
  Knots<S> k{std::vector<S>(n), std::vector<S>(n), std::vector<S>(n)};
  t.knots(theta.data(), k.x.data(), k.y.data(), k.d.data());
  return k;
}

template <class S>
S fwd(const RationalQuadraticTransform<S>& t, S x, const std::vector<S>& theta, S* ld = nullptr) {
  S y = 0, l = 0;
  t.forward(x, theta.data(), y, l);
  if (ld) *ld = l;
  return y;
}

template <class S>
S inv(const RationalQuadraticTransform<S>& t, S y, const std::vector<S>& theta, S* ld = nullptr) {
  S x = 0, l = 0;
  t.inverse(y, theta.data(), x, l);
  if (ld) *ld = l;
  return x;
}

// Central difference with Richardson extrapolation (steps h and h/2).
template <class F>
double derivative_fd(F&& f, double h) {
  const double d1 = (f(h) - f(-h)) / (2 * h);
  const double d2 = (f(h / 2) - f(-h / 2)) / h;
  return d2 + (d2 - d1) / 3.0;
}

// Inputs for the coupling round trip: tails, the bounds, the knots of the identity-init spline and
// the x- and y-knots of the spline the conformance harness's random parameters give (computed by
// running the conditioner on fixed passed-through values, which those rows then carry). The
// batched conditioner inside the layer rounds θ slightly differently from this one-row run, so
// these rows land on or within a few ulps of the knots; exactness on knots is tested per element.
template <int Dim>
Batch<double> special_inputs(const SplineCoupling<double, Dim>& layer, double param_scale) {
  const auto& tr = layer.transform();
  const double B = double(tr.bound());
  const Index K = tr.bins(), d = layer.dim();
  const auto& pa = layer.mask().passed();
  const auto& tf = layer.mask().transformed();
  std::vector<Eigen::RowVectorXd> rows;
  auto constant_row = [&](double v) { return Eigen::RowVectorXd::Constant(d, v); };
  const double big = 1e30, tiny = 1e-12;
  for (double v : {B, -B, std::nextafter(B, 0.0), std::nextafter(-B, 0.0), std::nextafter(B, 10 * B),
                   std::nextafter(-B, -10 * B), B * (1 + tiny), -B * (1 + tiny), B * (1 - tiny), -B * (1 - tiny),
                   1.5 * B, -1.5 * B, 10 * B, -10 * B, big, -big, 0.0})
    rows.push_back(constant_row(v));
  for (Index k = 0; k <= K; ++k) rows.push_back(constant_row(-B + 2 * B * double(k) / double(K)));

  const auto p = testing::detail::params_of(layer, param_scale, 7);
  std::mt19937_64 rng(2024);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (int trial = 0; trial < 4; ++trial) {
    Eigen::RowVectorXd base(d);
    for (Index j = 0; j < d; ++j) base[j] = normal(rng);
    Matrix<double> passed(1, Index(pa.size())), theta;
    for (std::size_t j = 0; j < pa.size(); ++j) passed(0, Index(j)) = base[pa[j]];
    layer.conditioner().forward(Params<double>(p), passed, theta);
    const Index np = tr.params_per_dim();
    std::vector<Knots<double>> kn;
    for (std::size_t j = 0; j < tf.size(); ++j) {
      std::vector<double> th(theta.data() + Index(j) * np, theta.data() + Index(j + 1) * np);
      kn.push_back(knots_of(tr, th));
    }
    for (Index k = 0; k <= K; ++k)
      for (bool use_y : {false, true}) {
        Eigen::RowVectorXd r = base;
        for (std::size_t j = 0; j < tf.size(); ++j) r[tf[j]] = use_y ? kn[j].y[k] : kn[j].x[k];
        rows.push_back(r);
      }
  }
  Batch<double> out(Index(rows.size()), d);
  for (Index i = 0; i < out.rows(); ++i) out.row(i) = rows[std::size_t(i)];
  return out;
}

template <int Dim>
void run_conformance(Mask mask, Index bins, double bound, double input_scale, MLPConfig mlp = small_mlp(),
                     double param_scale = 0.3) {
  testing::ConformanceOptions opt;
  opt.input_scale = input_scale;
  opt.param_scale = param_scale;
  const SplineCoupling<double, Dim> reference(mask, mlp, RationalQuadraticTransform<double>(bins, bound));
  opt.special_inputs = [reference, param_scale](Index) { return special_inputs<Dim>(reference, param_scale); };
  testing::check_conformance(
      [&](auto tag, int) {
        using S = typename decltype(tag)::type;
        return SplineCoupling<S, Dim>(mask, mlp, RationalQuadraticTransform<S>(bins, bound));
      },
      opt);
}

}  // namespace

// -------------------------------------------------------------------------------------------------
// Element level

TEMPLATE_TEST_CASE("RationalQuadraticTransform: theta = 0 is the identity", "[layers][spline]", float, double) {
  using S = TestType;
  for (Index K : {1, 2, 5, 8, 33}) {
    const RationalQuadraticTransform<S> t(K, 2.5);
    REQUIRE(t.params_per_dim() == 3 * K - 1);
    const std::vector<S> theta(std::size_t(t.params_per_dim()), S(0));
    for (int i = -400; i <= 400; ++i) {
      const S x = S(i) / S(100);
      S ld = 0;
      const S y = fwd(t, x, theta, &ld);
      INFO("K=" << K << " x=" << x << " y=" << y << " ld=" << ld);
      CHECK(std::abs(double(y - x)) <= 4 * std::numeric_limits<S>::epsilon() * 3);
      CHECK(std::abs(double(ld)) <= 1e-6);
      const auto p = t.partials(x, theta.data());
      CHECK(std::abs(double(p.dy_dx) - 1) <= 1e-6);
      CHECK(std::abs(double(p.dlog_det_dx)) <= 1e-5);
    }
  }
}

TEST_CASE("RationalQuadraticTransform: partials and pullback match central differences", "[layers][spline]") {
  std::mt19937_64 rng(17);
  std::uniform_real_distribution<double> unif(0.0, 1.0);
  for (Index K : {1, 2, 5, 8}) {
    for (double bound : {1.0, 3.0}) {
      const RationalQuadraticTransform<double> t(K, bound);
      const Index np = t.params_per_dim();
      for (int trial = 0; trial < 40; ++trial) {
        const auto theta = random_theta<double>(np, 1.0, rng);
        const auto kn = knots_of(t, theta);
        // a point inside a random bin, away from its edges
        const Index k = Index(unif(rng) * double(K)) % K;
        const double xi = 0.05 + 0.9 * unif(rng);
        const double x = kn.x[std::size_t(k)] + xi * (kn.x[std::size_t(k + 1)] - kn.x[std::size_t(k)]);
        const double h = 1e-5 * std::min(1.0, kn.x[std::size_t(k + 1)] - kn.x[std::size_t(k)]);
        const auto p = t.partials(x, theta.data());
        REQUIRE(p.bin == k);
        INFO("K=" << K << " B=" << bound << " trial " << trial << " bin " << k << " xi " << xi);

        auto y_of = [&](double dx, const std::vector<double>& th) { return fwd(t, x + dx, th); };
        auto ld_of = [&](double dx, const std::vector<double>& th) {
          double l = 0;
          fwd(t, x + dx, th, &l);
          return l;
        };
        const double dy = derivative_fd([&](double e) { return y_of(e, theta); }, h);
        const double dld = derivative_fd([&](double e) { return ld_of(e, theta); }, h);
        CHECK(p.dy_dx == Approx(dy).epsilon(1e-7).margin(1e-9));
        CHECK(p.dlog_det_dx == Approx(dld).epsilon(1e-6).margin(1e-6));
        double l0 = 0;
        fwd(t, x, theta, &l0);
        CHECK(std::log(p.dy_dx) == Approx(l0).epsilon(1e-12).margin(1e-12));

        // pullback with a = 1, b = 0 gives ∂y/∂θ; with a = 0, b = 1 gives ∂ld/∂θ; it accumulates.
        std::vector<double> gy(std::size_t(np), 0.5), gl(std::size_t(np), -0.25);
        t.pullback(x, theta.data(), p, 1.0, 0.0, gy.data());
        t.pullback(x, theta.data(), p, 0.0, 1.0, gl.data());
        for (Index j = 0; j < np; ++j) {
          auto vary = [&](auto&& f) {
            return derivative_fd(
                [&](double e) {
                  auto th = theta;
                  th[std::size_t(j)] += e;
                  return f(0.0, th);
                },
                1e-5);
          };
          const double fy = vary(y_of), fl = vary(ld_of);
          INFO("param " << j << " dy/dθ analytic " << gy[std::size_t(j)] - 0.5 << " fd " << fy
                        << "; dld/dθ analytic " << gl[std::size_t(j)] + 0.25 << " fd " << fl);
          CHECK(std::abs(gy[std::size_t(j)] - 0.5 - fy) <= 1e-7 * std::max(1.0, std::abs(fy)));
          CHECK(std::abs(gl[std::size_t(j)] + 0.25 - fl) <= 1e-6 * std::max(1.0, std::abs(fl)));
        }

        // the inverse: dx/dy = 1/(dy/dx), and its log-det is minus the forward one
        double ly = 0, lx = 0;
        const double y = fwd(t, x, theta, &ly);
        const double x2 = inv(t, y, theta, &lx);
        CHECK(x2 == Approx(x).epsilon(0).margin(1e-13));
        CHECK(lx == Approx(-ly).epsilon(0).margin(1e-12));
        const double dx = derivative_fd([&](double e) { return inv(t, y + e, theta); }, h);
        CHECK(dx * p.dy_dx == Approx(1.0).epsilon(1e-7));
      }
    }
  }
}

TEMPLATE_TEST_CASE("RationalQuadraticTransform: tails are the identity with zero parameter gradient",
                   "[layers][spline]", float, double) {
  using S = TestType;
  std::mt19937_64 rng(3);
  const RationalQuadraticTransform<S> t(6, 2.0);
  const auto theta = random_theta<S>(t.params_per_dim(), 2.0, rng);
  const S big = std::numeric_limits<S>::max();
  for (S x : {S(2.5), S(-2.5), S(1e30), S(-1e30), big, -big, std::nextafter(S(2), S(3)),
              std::nextafter(S(-2), S(-3))}) {
    S ld = 0;
    CHECK(fwd(t, x, theta, &ld) == x);
    CHECK(ld == S(0));
    CHECK(inv(t, x, theta, &ld) == x);
    CHECK(ld == S(0));
    const auto p = t.partials(x, theta.data());
    CHECK(p.dy_dx == S(1));
    CHECK(p.dlog_det_dx == S(0));
    std::vector<S> g(theta.size(), S(0));
    t.pullback(x, theta.data(), p, S(1.5), S(-2), g.data());
    for (S v : g) CHECK(v == S(0));
  }
}

TEMPLATE_TEST_CASE("RationalQuadraticTransform: knots, bounds and near-bound inputs round trip exactly",
                   "[layers][spline]", float, double) {
  using S = TestType;
  constexpr double eps = std::numeric_limits<S>::epsilon();
  std::mt19937_64 rng(11);
  double worst = 0;
  for (Index K : {1, 2, 3, 8, 16}) {
    for (double bound : {0.5, 3.0, 10.0}) {
      const RationalQuadraticTransform<S> t(K, bound);
      const S B = t.bound();
      for (int trial = 0; trial < 50; ++trial) {
        const auto theta = random_theta<S>(t.params_per_dim(), trial < 25 ? 1.0 : 3.0, rng);
        const auto kn = knots_of(t, theta);
        REQUIRE(kn.x.front() == -B);
        REQUIRE(kn.x.back() == B);
        REQUIRE(kn.y.front() == -B);
        REQUIRE(kn.y.back() == B);
        // exactly on the knots: the forward gives exactly the y-knot, the inverse exactly the x-knot
        for (Index k = 0; k <= K; ++k) {
          const S xk = kn.x[std::size_t(k)], yk = kn.y[std::size_t(k)];
          S ld = 0, ldi = 0;
          INFO("K=" << K << " B=" << bound << " knot " << k << " x " << xk << " y " << yk);
          CHECK(fwd(t, xk, theta, &ld) == yk);
          CHECK(inv(t, yk, theta, &ldi) == xk);
          CHECK(std::isfinite(double(ld)));
          CHECK(double(ld + ldi) == Approx(0).margin(100 * eps));
        }
        // near the knots and the bounds, in the tails, and far out
        std::vector<S> xs;
        for (Index k = 0; k <= K; ++k) {
          const S xk = kn.x[std::size_t(k)];
          xs.push_back(std::nextafter(xk, S(-1e9)));
          xs.push_back(std::nextafter(xk, S(1e9)));
          xs.push_back(xk + S(1e-6) * B);
          xs.push_back(xk - S(1e-6) * B);
        }
        for (S v : {B * S(1 + 1e-6), -B * S(1 + 1e-6), B * S(2), S(1e30), S(-1e30), std::numeric_limits<S>::max(),
                    std::numeric_limits<S>::lowest(), S(0)})
          xs.push_back(v);
        for (S x : xs) {
          S ld = 0, ldi = 0;
          const S y = fwd(t, x, theta, &ld);
          const S x2 = inv(t, y, theta, &ldi);
          INFO("K=" << K << " B=" << bound << " x " << x << " y " << y << " x2 " << x2);
          REQUIRE(std::isfinite(double(y)));
          REQUIRE(std::isfinite(double(ld)));
          REQUIRE(std::isfinite(double(x2)));
          // inverse error ≈ rounding of y divided by the slope
          const auto p = t.partials(x, theta.data());
          const double slope = double(p.dy_dx);
          const double err = std::abs(double(x2 - x));
          const double tol = 8 * eps * (double(B) + std::abs(double(x))) * std::max(1.0, 1.0 / slope);
          worst = std::max(worst, err / tol);
          CHECK(err <= tol);
          // The inverse log-det is minus the forward log-det at the point the inverse returned. (At
          // a knot between a tiny derivative and a steep bin, log dy/dx changes by O(1) within a
          // few ulps of x, so comparing with the log-det at x itself would test conditioning.)
          S ld2 = 0;
          fwd(t, x2, theta, &ld2);
          CHECK(std::abs(double(ld2 + ldi)) <= 1e3 * eps * std::max(1.0, std::abs(double(ld2))));
          if (err == 0) CHECK(std::abs(double(ld + ldi)) <= 1e3 * eps * std::max(1.0, std::abs(double(ld))));
        }
        // data side: y on and near the y-knots
        for (Index k = 0; k <= K; ++k) {
          const S yk = kn.y[std::size_t(k)];
          for (S y : {yk, std::nextafter(yk, S(-1e9)), std::nextafter(yk, S(1e9))}) {
            const S x = inv(t, y, theta);
            const S y2 = fwd(t, x, theta);
            REQUIRE(std::isfinite(double(x)));
            CHECK(std::abs(double(y2 - y)) <= 8 * eps * double(B));
          }
        }
      }
    }
  }
  INFO("worst error / tolerance " << worst);
  CHECK(worst <= 1);
}

TEST_CASE("RationalQuadraticTransform: float inverse never returns NaN at the bounds or for extreme theta",
          "[layers][spline]") {
  using S = float;
  std::mt19937_64 rng(5);
  std::bernoulli_distribution coin(0.5);
  for (Index K : {1, 2, 8, 32}) {
    for (double mins : {1e-3, 0.0}) {
      const RationalQuadraticTransform<S> t(K, 3.0, mins, mins, mins);
      const S B = t.bound();
      for (int trial = 0; trial < 60; ++trial) {
        std::vector<S> theta(std::size_t(t.params_per_dim()));
        const float mag = trial < 20 ? 50.f : (trial < 40 ? 1e4f : 1e30f);
        for (auto& v : theta) v = coin(rng) ? mag : -mag;
        if (trial % 3 == 0) theta = random_theta<S>(t.params_per_dim(), 50.0, rng);
        std::vector<S> ys = {B, -B, std::nextafter(B, S(0)), std::nextafter(-B, S(0)), std::nextafter(B, S(10)),
                             std::nextafter(-B, S(-10)), B * S(1 + 1e-7), -B * S(1 + 1e-7), S(0), S(1e-30), S(-1e-30)};
        const auto kn = knots_of(t, theta);
        for (Index k = 0; k <= K; ++k) {
          ys.push_back(kn.y[std::size_t(k)]);
          ys.push_back(std::nextafter(kn.y[std::size_t(k)], S(-10)));
          ys.push_back(std::nextafter(kn.y[std::size_t(k)], S(10)));
        }
        for (int i = 0; i < 50; ++i) ys.push_back(S(-B + 2 * B * (i + 0.5) / 50));
        for (S y : ys) {
          S ld = 0;
          const S x = inv(t, y, theta, &ld);
          INFO("K=" << K << " mins=" << mins << " theta magnitude " << mag << " y " << y << " x " << x << " ld "
                    << ld);
          REQUIRE(std::isfinite(x));
          REQUIRE(!std::isnan(ld));
          if (mins > 0) {
            REQUIRE(std::isfinite(ld));
            // f(f⁻¹(y)) = y up to the rounding of x amplified by the slope (up to ~|θ| at a knot)
            const S y2 = fwd(t, x, theta);
            const double slope = std::max(1.0, double(t.partials(x, theta.data()).dy_dx));
            CHECK(std::abs(double(y2 - y)) <= 8 * 1.2e-7 * double(B) * slope);
          }
          S y3 = 0, ld3 = 0;
          t.forward(y, theta.data(), y3, ld3);
          REQUIRE(std::isfinite(y3));
          REQUIRE(!std::isnan(ld3));
          const auto p = t.partials(y, theta.data());
          if (mins > 0) {
            REQUIRE(std::isfinite(p.dy_dx));
            REQUIRE(std::isfinite(p.dlog_det_dx));
            std::vector<S> g(theta.size(), 0.f);
            t.pullback(y, theta.data(), p, 1.f, 1.f, g.data());
            for (S v : g) REQUIRE(std::isfinite(v));
          }
        }
      }
    }
  }
}

TEMPLATE_TEST_CASE("RationalQuadraticTransform: minimum bin size and derivative are respected; the map is monotone",
                   "[layers][spline]", float, double) {
  using S = TestType;
  std::mt19937_64 rng(8);
  for (double min_d : {0.0, 1e-3, 0.25}) {
    const Index K = 6;
    const double mw = 0.02, mh = 0.05;
    const RationalQuadraticTransform<S> t(K, 2.0, mw, mh, min_d);
    for (int trial = 0; trial < 30; ++trial) {
      auto theta = random_theta<S>(t.params_per_dim(), 2.0, rng);
      if (trial % 2 == 0)
        for (Index j = 2 * K; j < 3 * K - 1; ++j) theta[std::size_t(j)] = S(-60);  // push derivatives to the floor
      const auto kn = knots_of(t, theta);
      for (Index k = 0; k < K; ++k) {
        CHECK(double(kn.x[std::size_t(k + 1)] - kn.x[std::size_t(k)]) >= 4 * mw * (1 - 1e-5));
        CHECK(double(kn.y[std::size_t(k + 1)] - kn.y[std::size_t(k)]) >= 4 * mh * (1 - 1e-5));
      }
      for (Index k = 0; k <= K; ++k) {
        const double dk = double(kn.d[std::size_t(k)]);
        CHECK(dk >= min_d);
        if (k == 0 || k == K) CHECK(dk == 1.0);
        if (trial % 2 == 0 && k > 0 && k < K) CHECK(dk == Approx(min_d).margin(1e-12));
        // the slope at a knot is its derivative
        if (k < K && min_d > 0)
          CHECK(double(t.partials(kn.x[std::size_t(k)], theta.data()).dy_dx) == Approx(dk).epsilon(1e-4));
      }
      S prev = -std::numeric_limits<S>::infinity();
      for (int i = 0; i <= 2000; ++i) {
        const S x = S(-2.2 + 4.4 * i / 2000.0);
        const S y = fwd(t, x, theta);
        CHECK(y >= prev);
        prev = y;
      }
    }
  }
}

TEST_CASE("RationalQuadraticTransform: the softmax is stable for large raw parameters", "[layers][spline]") {
  const RationalQuadraticTransform<float> t(4, 3.0);
  std::vector<float> theta = {1e4f, 1e4f, 1e4f, 1e4f, -1e4f, -1e4f, -1e4f, -1e4f, 0.f, 0.f, 0.f};
  // equal raw widths/heights at any offset give uniform bins: the identity
  for (float x : {-2.9f, -1.f, 0.3f, 2.f}) {
    float ld = 0;
    CHECK(fwd(t, x, theta, &ld) == Approx(x).margin(1e-6));
    CHECK(ld == Approx(0).margin(1e-6));
  }
}

TEST_CASE("RationalQuadraticTransform: constructor validation", "[layers][spline][errors]") {
  using T = RationalQuadraticTransform<double>;
  CHECK_THROWS_AS(T(0), Error);
  CHECK_THROWS_WITH(T(0), Catch::Contains("RationalQuadraticTransform") && Catch::Contains("bins must be >= 1, got 0"));
  CHECK_THROWS_WITH(T(-3), Catch::Contains("bins must be >= 1, got -3"));
  CHECK_THROWS_WITH(T(8, 0.0), Catch::Contains("bound must be finite and > 0, got 0"));
  CHECK_THROWS_WITH(T(8, -1.0), Catch::Contains("bound must be finite and > 0, got -1"));
  CHECK_THROWS_WITH(T(8, std::numeric_limits<double>::infinity()), Catch::Contains("bound must be finite"));
  CHECK_THROWS_WITH(T(8, std::nan("")), Catch::Contains("bound must be finite"));
  CHECK_THROWS_WITH(T(8, 3.0, -1e-3), Catch::Contains("min_bin_width must be in [0, 1/bins)"));
  CHECK_THROWS_WITH(T(8, 3.0, 0.125), Catch::Contains("min_bin_width must be in [0, 1/bins) = [0, 0.125), got 0.125"));
  CHECK_THROWS_WITH(T(8, 3.0, 1e-3, 0.2), Catch::Contains("min_bin_height must be in [0, 1/bins)") &&
                                              Catch::Contains("got 0.2"));
  CHECK_THROWS_WITH(T(8, 3.0, 1e-3, -0.1), Catch::Contains("min_bin_height"));
  CHECK_THROWS_WITH(T(8, 3.0, 1e-3, 1e-3, 1.0), Catch::Contains("min_derivative must be in [0, 1), got 1"));
  CHECK_THROWS_WITH(T(8, 3.0, 1e-3, 1e-3, -0.5), Catch::Contains("min_derivative must be in [0, 1), got -0.5"));
  CHECK_THROWS_WITH(RationalQuadraticTransform<float>(8, 1e300), Catch::Contains("out of range"));
  CHECK_NOTHROW(T(1, 1e-3, 0.0, 0.0, 0.0));
  CHECK_NOTHROW(T(4, 3.0, 0.2499, 0.2499, 0.999));

  // the coupling reports the transform's parameter count and its name in errors
  SplineCoupling<double, 2> layer(Mask::half(2), small_mlp(), T(5, 2.0));
  CHECK(layer.conditioner().out() == 14);
  CHECK(layer.signature().find("SplineCoupling") != std::string::npos);
  CHECK(layer.signature().find("rq_spline(bins=5,bound=2") != std::string::npos);
  CHECK_THROWS_WITH((SplineCoupling<double, 2>(Mask::half(3), small_mlp())),
                    Catch::Contains("SplineCoupling") && Catch::Contains("expected 2"));
}

// -------------------------------------------------------------------------------------------------
// Coupling level

TEST_CASE("SplineCoupling conformance, fixed dim, half mask, 8 bins", "[layers][spline]") {
  run_conformance<3>(Mask::half(3), 8, 3.0, 2.5);
}

TEST_CASE("SplineCoupling conformance, dynamic dim, alternating mask, 5 bins", "[layers][spline]") {
  run_conformance<Dynamic>(Mask::alternating(4, true), 5, 3.0, 2.5);
}

TEST_CASE("SplineCoupling conformance, one bin (identity spline)", "[layers][spline]") {
  run_conformance<2>(Mask::half(2, true), 1, 3.0, 2.5);
}

TEST_CASE("SplineCoupling conformance, small bound (mostly tails), residual SiLU conditioner", "[layers][spline]") {
  run_conformance<Dynamic>(Mask::half(5), 8, 1.0, 1.5, small_mlp(Activation::silu, true));
}

TEST_CASE("SplineCoupling: a batch entirely in the tails is the identity with zero conditioner gradient",
          "[layers][spline]") {
  SplineCoupling<double, 4> layer(Mask::alternating(4), small_mlp(), RationalQuadraticTransform<double>(8, 1.0));
  std::vector<double> p = testing::detail::params_of(layer, 0.5, 3);
  Batch<double, 4> x(3, 4), y(3, 4), dL_dx(3, 4), dL_dy(3, 4);
  x << 0.1, 5, -0.2, -7, 0.3, 1.5, 0.4, -1.01, -0.5, 100, 0.6, 2;
  dL_dy.setOnes();
  Vector<double> ld = Vector<double>::Zero(3), dL_dld = Vector<double>::Ones(3);
  SplineCoupling<double, 4>::Cache cache;
  layer.forward(Params<double>(p), x, y, ld, &cache);
  CHECK((y - x).cwiseAbs().maxCoeff() == 0);
  CHECK(ld.cwiseAbs().maxCoeff() == 0);
  std::vector<double> g(p.size(), 0.0);
  layer.backward_forward(Params<double>(p), cache, dL_dy, dL_dld, dL_dx, Grads<double>(g));
  for (double v : g) CHECK(v == 0);
  CHECK((dL_dx - dL_dy).cwiseAbs().maxCoeff() == 0);
}

// The recorded forward (forward_partials, used by the row kernel when a cache is recorded) must
// give exactly what forward and partials give separately: cached and uncached passes agree.
TEMPLATE_TEST_CASE("RationalQuadraticTransform: forward_partials equals forward plus partials", "[layers][spline]",
                   float, double) {
  using S = TestType;
  for (double min_size : {1e-3, 0.0}) {
    const RationalQuadraticTransform<S> tr(5, 2.0, min_size, min_size, min_size);
    const Index k = tr.params_per_dim();
    std::mt19937 gen(7);
    std::normal_distribution<double> normal(0.0, 2.0);
    for (int trial = 0; trial < 300; ++trial) {
      std::vector<S> theta(static_cast<std::size_t>(k));
      for (auto& t : theta) t = S(normal(gen));
      const S x = S(trial < 10 ? -2.0 + 0.4 * trial : 1.5 * normal(gen));  // knots, interior and tails
      S y1, y2, ld1 = 0, ld2 = 0;
      tr.forward(x, theta.data(), y1, ld1);
      const auto rec = tr.forward_partials(x, theta.data(), y2, ld2);
      const auto ref = tr.partials(x, theta.data());
      CHECK(y2 == y1);
      CHECK(ld2 == ld1);
      CHECK(rec.bin == ref.bin);
      CHECK(rec.dy_dx == ref.dy_dx);
      CHECK(rec.dlog_det_dx == ref.dlog_det_dx);
      for (int i = 0; i < 6; ++i) CHECK(rec.y_loc[i] == ref.y_loc[i]);
    }
  }
}
