#include <catch2/catch.hpp>

#include "fort/flows/flow.hpp"
#include "fort/flows/repeat.hpp"
#include "fort/flows/sequential.hpp"
#include "fort/layers/affine_coupling.hpp"

using namespace fort;

namespace {
template <class S, int D>
auto make_flow(std::uint64_t seed = 3) {
  using AC = AffineCoupling<S, D>;
  const MLPConfig cfg{8, 2, Activation::silu, false};
  Repeat<AC> layers(4, [&](Index i) { return AC(Mask::half(D, i % 2 == 1), cfg); });
  Flow flow(StandardNormal<S, D>(), layers, seed);
  // Make the flow non-trivial: random parameters.
  Random(11).fill_normal(std::span<S>(flow.params().data(), std::size_t(flow.params().size())), 0, 0.2);
  return flow;
}
}  // namespace

TEMPLATE_TEST_CASE("Flow: sample_and_log_prob agrees with log_prob of the samples", "[flows][flow]", float, double) {
  const auto flow = make_flow<TestType, 2>();
  auto [x, log_p] = flow.sample_and_log_prob(500, Random(5));
  const Vector<TestType> again = flow.log_prob(x);
  const double tol = std::is_same_v<TestType, double> ? 1e-10 : 2e-4;
  CHECK((log_p - again).cwiseAbs().maxCoeff() <= tol);
  CHECK(x.allFinite());
}

TEST_CASE("Flow: identity flow has the base density", "[flows][flow]") {
  using AC = AffineCoupling<double>;
  Flow flow(StandardNormal<double>(3), Sequential(AC(Mask::half(3), MLPConfig{})), 1);
  Batch<double> x(2, 3);
  x << 0, 0, 0, 1, -2, 0.5;
  const Vector<double> lp = flow.log_prob(x);
  const double c = -1.5 * std::log(2 * M_PI);
  CHECK(lp[0] == Approx(c).epsilon(1e-14));
  CHECK(lp[1] == Approx(c - 0.5 * (1 + 4 + 0.25)).epsilon(1e-14));
}

TEST_CASE("Flow: per-point path equals the batched path", "[flows][flow]") {
  const auto flow = make_flow<double, 4>();
  const Random rng(9);
  auto [x, log_p] = flow.sample_and_log_prob(20, rng);
  std::vector<double> scratch(std::size_t(flow.point_scratch_size()));
  for (Index i = 0; i < 20; ++i) {
    double xi[4];
    const double lp = flow.sample_point(rng, std::uint64_t(i), xi, scratch.data());
    CHECK(lp == Approx(log_p[i]).epsilon(1e-12));
    for (int j = 0; j < 4; ++j) CHECK(xi[j] == Approx(x(i, j)).epsilon(1e-12).margin(1e-12));
    CHECK(flow.log_prob_point(xi, scratch.data()) == Approx(log_p[i]).epsilon(1e-10));
  }
}

TEST_CASE("Flow: sampling is reproducible and independent of how it is split", "[flows][flow]") {
  const auto flow = make_flow<double, 2>();
  const auto all = flow.sample(100, Random(4));
  const auto first = flow.sample(40, Random(4));
  const auto rest = flow.sample(60, Random(4), 40);
  CHECK(all.topRows(40) == first);
  CHECK(all.bottomRows(60) == rest);
  CHECK(flow.sample(100, Random(5)) != all);
}

TEST_CASE("Flow: state and parameters restore the same model", "[flows][flow]") {
  const auto a = make_flow<double, 2>();
  auto b = make_flow<double, 2>(77);
  b.set_params(a.params());
  b.set_state(a.state());
  CHECK(a.signature() == b.signature());
  const auto xa = a.sample(10, Random(1));
  CHECK(b.sample(10, Random(1)) == xa);
}

TEST_CASE("DiagonalGaussian log_prob and sampling", "[flows][distributions]") {
  Vector<double> mean(2), sd(2);
  mean << 1, -2;
  sd << 0.5, 3;
  DiagonalGaussian<double> g(mean, sd);
  const double z[2] = {1.5, 1.0};
  const double expected = -std::log(2 * M_PI) - std::log(0.5 * 3) - 0.5 * (1.0 + 1.0);
  CHECK(g.log_prob_point(z) == Approx(expected).epsilon(1e-14));
  double s1[2] = {0, 0}, s2[2] = {0, 0};
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    double zi[2];
    g.sample_point(Random(3), std::uint64_t(i), zi);
    for (int j = 0; j < 2; ++j) {
      s1[j] += zi[j];
      s2[j] += zi[j] * zi[j];
    }
  }
  for (int j = 0; j < 2; ++j) {
    const double m = s1[j] / n, v = s2[j] / n - m * m;
    CHECK(std::abs(m - mean[j]) < 5 * sd[j] / std::sqrt(n));
    CHECK(std::abs(std::sqrt(v) / sd[j] - 1) < 0.03);
  }
}

TEST_CASE("Flow and distribution errors", "[flows][errors]") {
  Vector<double> mean(2), bad(2);
  mean << 0, 0;
  bad << 1, 0;
  CHECK_THROWS_WITH(DiagonalGaussian<double>(mean, bad), Catch::Contains("std[1] is 0, expected > 0"));
  bad << 1, std::nan("");
  CHECK_THROWS_WITH(DiagonalGaussian<double>(mean, bad), Catch::Contains("std contains a non-finite value"));
  CHECK_THROWS_WITH((StandardNormal<double, 3>(2)), Catch::Contains("StandardNormal: dim must be 3, got 2"));
  using AC = AffineCoupling<double>;
  CHECK_THROWS_WITH(Flow(StandardNormal<double>(3), Sequential(AC(Mask::half(2), MLPConfig{})), 1),
                    Catch::Contains("Flow: base has dim 3, layers have dim 2"));
  auto flow = make_flow<double, 2>();
  Vector<double> p = flow.params();
  p[0] = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(flow.set_params(p), Catch::Contains("parameter vector contains a non-finite value"));
  CHECK_THROWS_WITH(flow.set_params(Vector<double>(3)), Catch::Contains("parameter vector has 3 values, expected"));
}
