#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <numbers>
#include <vector>

#include "fort/core/random.hpp"
#include "fort/metrics/importance.hpp"
#include "fort/metrics/torus.hpp"
#include "fort/metrics/wasserstein_1d.hpp"

using namespace fort;

namespace {
std::vector<double> normals(Index n, std::uint64_t stream, double mean = 0, double sd = 1) {
  std::vector<double> x(static_cast<std::size_t>(n));
  const Random rng(11, stream);
  for (Index i = 0; i < n; ++i) x[std::size_t(i)] = mean + sd * rng.normal(std::uint64_t(i));
  return x;
}
}  // namespace

TEST_CASE("W1 and W2 of a shifted sample equal the shift", "[metrics][wasserstein]") {
  const auto x = normals(2000, 1);
  std::vector<double> y = x;
  for (double& v : y) v += 0.75;
  CHECK(wasserstein_1d(x, y, 1) == Approx(0.75).epsilon(1e-12));
  CHECK(wasserstein_1d(x, y, 2) == Approx(0.75).epsilon(1e-12));
  CHECK(wasserstein_1d(x, x, 1) == Approx(0.0).margin(1e-15));
}

TEST_CASE("W1 of unequal sizes and weights matches hand-computed values", "[metrics][wasserstein]") {
  // μ = ½δ0 + ½δ1, ν = δ0.5: every unit of mass moves 0.5.
  CHECK(wasserstein_1d({0.0, 1.0}, {0.5}, 1) == Approx(0.5));
  CHECK(wasserstein_1d({0.0, 1.0}, {0.5}, 2) == Approx(0.5));
  // μ = 0.9δ0 + 0.1δ10 against δ0: W1 = 1, W2 = sqrt(10).
  CHECK(wasserstein_1d({0.0, 10.0}, {0.9, 0.1}, {0.0}, {}, 1) == Approx(1.0));
  CHECK(wasserstein_1d({0.0, 10.0}, {0.9, 0.1}, {0.0}, {}, 2) == Approx(std::sqrt(10.0)));
  // Weights are only relative; zero weights are ignored; order of input does not matter.
  CHECK(wasserstein_1d({10.0, 0.0, 5.0}, {1, 9, 0}, {0.0}, {3}, 1) == Approx(1.0));
  // Two Gaussians N(0,1), N(0,2²): W2 = |σ1 − σ2| = 1 (large-sample limit).
  CHECK(wasserstein_1d(normals(20000, 2), normals(20000, 3, 0, 2), 2) == Approx(1.0).margin(0.03));
}

TEST_CASE("wasserstein_1d rejects bad input", "[metrics][wasserstein]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(wasserstein_1d({}, {1.0}, 1), Catch::Contains("empty"));
  CHECK_THROWS_WITH(wasserstein_1d({nan}, {1.0}, 1), Catch::Contains("not finite"));
  CHECK_THROWS_WITH(wasserstein_1d({1.0}, {-1.0}, {1.0}, {}, 1), Catch::Contains(">= 0"));
  CHECK_THROWS_WITH(wasserstein_1d({1.0}, {0.0}, {1.0}, {}, 1), Catch::Contains("positive total"));
  CHECK_THROWS_WITH(wasserstein_1d({1.0, 2.0}, {1.0}, {1.0}, {}, 1), Catch::Contains("equal counts"));
  CHECK_THROWS_WITH(wasserstein_1d({1.0}, {1.0}, 3), Catch::Contains("1 or 2"));
}

TEST_CASE("ESS of uniform weights is n, of one dominant weight is 1", "[metrics][importance]") {
  const auto uniform = importance_weights(std::vector<double>(100, -3.5));
  CHECK(uniform.ess_fraction == Approx(1.0));
  CHECK(uniform.ess == Approx(100.0));
  CHECK(uniform.log_mean_weight == Approx(-3.5));
  std::vector<double> lw(100, -1e4);
  lw[7] = 50.0;  // would overflow exp without the shift
  const auto one = importance_weights(lw);
  CHECK(one.ess == Approx(1.0));
  CHECK(one.normalized[7] == Approx(1.0));
  // Two weights 1 and 3 (log): ESS = 16 / 10.
  CHECK(importance_weights(std::vector<double>{0.0, std::log(3.0)}).ess == Approx(1.6));
}

TEST_CASE("importance_weights counts zero and invalid weights", "[metrics][importance]") {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  const auto r = importance_weights(std::vector<double>{0.0, -inf, nan, inf, 0.0});
  CHECK(r.zero == 1);
  CHECK(r.invalid == 2);
  CHECK(r.ess == Approx(2.0));
  CHECK(r.ess_fraction == Approx(0.4));
  CHECK(r.normalized[2] == 0.0);
  CHECK(r.normalized[0] == Approx(0.5));
  const auto none = importance_weights(std::vector<double>{-inf, nan});
  CHECK(none.ess == 0.0);
  CHECK(none.invalid == 1);
  CHECK_THROWS(importance_weights(std::vector<double>{}));
}

TEST_CASE("systematic resampling follows the weights", "[metrics][importance]") {
  const auto idx = systematic_resample({1.0, 0.0, 3.0}, 8, 0.5);
  REQUIRE(idx.size() == 8);
  CHECK(std::count(idx.begin(), idx.end(), 0) == 2);
  CHECK(std::count(idx.begin(), idx.end(), 1) == 0);
  CHECK(std::count(idx.begin(), idx.end(), 2) == 6);
  CHECK_THROWS_WITH(systematic_resample({0.0, 0.0}, 4, 0.1), Catch::Contains("positive total"));
  CHECK_THROWS_WITH(systematic_resample({1.0}, 4, 1.0), Catch::Contains("[0, 1)"));
}

TEST_CASE("angles wrap to [-pi, pi) and torus distances go the short way", "[metrics][torus]") {
  const double pi = std::numbers::pi;
  CHECK(wrap_angle(0.0) == 0.0);
  CHECK(wrap_angle(pi) == Approx(-pi));
  CHECK(wrap_angle(-pi) == Approx(-pi));
  CHECK(wrap_angle(3 * pi / 2) == Approx(-pi / 2));
  CHECK(wrap_angle(-7 * pi / 2) == Approx(pi / 2));
  CHECK(wrap_angle(1e3) == Approx(std::remainder(1e3, 2 * pi)).margin(1e-12));
  Eigen::Vector2d a(pi - 0.1, -pi + 0.2), b(-pi + 0.1, pi - 0.2);
  CHECK(torus_distance_sq(a, b) == Approx(0.2 * 0.2 + 0.4 * 0.4));
}

TEST_CASE("T-W2 of a rotated cloud equals the wrapped rotation", "[metrics][torus]") {
  const double pi = std::numbers::pi;
  const Index n = 60;
  Matrix<double> a(n, 2), b(n, 2);
  const Random rng(5, 0);
  for (Index i = 0; i < n; ++i) {
    a(i, 0) = wrap_angle(2 * pi * rng.uniform(std::uint64_t(2 * i)));
    a(i, 1) = wrap_angle(2 * pi * rng.uniform(std::uint64_t(2 * i + 1)));
    b(i, 0) = wrap_angle(a(i, 0) + 0.3);  // crosses ±π for some points: the distance must wrap
    b(i, 1) = a(i, 1);
  }
  CHECK(torus_wasserstein2(a, a) == Approx(0.0).margin(1e-12));
  // A shift of a uniform-ish cloud is at most 0.3 away; without wrapping the points that cross
  // ±π would cost ~(2π − 0.3)² each.
  const double w = torus_wasserstein2(a, b);
  CHECK(w <= 0.3 + 1e-12);
  CHECK(w > 0.0);
  Matrix<double> c = b;
  c(0, 0) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(torus_wasserstein2(a, c), Catch::Contains("b"));
  CHECK_THROWS(torus_wasserstein2(a, Matrix<double>(n - 1, 2)));
}
