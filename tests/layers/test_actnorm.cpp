#include "support/conformance.hpp"

#include <limits>

#include "fort/flows/sequential.hpp"
#include "fort/layers/actnorm.hpp"
#include "fort/layers/permutation.hpp"

using namespace fort;

static_assert(FlowLayer<ActNorm<double, 3>> && FlowLayer<ActNorm<float>>);
static_assert(DataInitializable<ActNorm<double, 3>> && DataInitializable<ActNorm<float>>);

namespace {

// Variant 1 carries the "initialised" flag so that copying variant 0's state is visible.
template <class L>
L with_variant(L layer, int variant) {
  if (variant == 1) layer.set_state(State{1});
  return layer;
}

// Column means and population standard deviations, in double.
template <class M>
std::pair<Eigen::RowVectorXd, Eigen::RowVectorXd> column_stats(const M& m) {
  const Eigen::MatrixXd x = m.template cast<double>();
  const Eigen::RowVectorXd mean = x.colwise().mean();
  const Eigen::MatrixXd centred = x.rowwise() - mean;
  const Eigen::RowVectorXd sd = (centred.array().square().colwise().sum() / double(x.rows())).sqrt();
  return {mean, sd};
}

Batch<double> normal_batch(Index n, Index d, std::uint64_t stream) {
  Batch<double> x(n, d);
  Random(2024, stream).fill_normal(std::span<double>(x.data(), std::size_t(x.size())));
  return x;
}

}  // namespace

TEST_CASE("ActNorm conformance, fixed dim", "[layers][actnorm]") {
  testing::check_conformance([](auto tag, int variant) {
    using S = typename decltype(tag)::type;
    return with_variant(ActNorm<S, 3>(), variant);
  });
}

TEST_CASE("ActNorm conformance, dynamic dim, large parameters", "[layers][actnorm]") {
  testing::ConformanceOptions opt;
  opt.param_scale = 1.0;
  opt.input_scale = 2.0;
  testing::check_conformance(
      [](auto tag, int variant) {
        using S = typename decltype(tag)::type;
        return with_variant(ActNorm<S>(6), variant);
      },
      opt);
}

TEST_CASE("ActNorm conformance, one dimension", "[layers][actnorm]") {
  testing::check_conformance([](auto tag, int variant) {
    using S = typename decltype(tag)::type;
    return with_variant(ActNorm<S, 1>(1), variant);
  });
}

TEST_CASE("ActNorm applies y = x exp(s) + b with log-det sum(s)", "[layers][actnorm]") {
  const ActNorm<double> layer(2);
  const std::vector<double> p{std::log(2.0), -std::log(4.0), 1.0, -3.0};  // s, then b
  Batch<double> x(2, 2), y(2, 2);
  x << 1, 2, -1, 8;
  Vector<double> ld = Vector<double>::Constant(2, 1.0);
  layer.forward(Params<double>(p), x, y, ld);
  Batch<double> expected(2, 2);
  expected << 3, -2.5, -1, -1;
  CHECK((y - expected).cwiseAbs().maxCoeff() < 1e-14);
  CHECK(std::abs(ld[0] - (1.0 + std::log(0.5))) < 1e-14);  // added to what was there
  CHECK(std::abs(ld[1] - ld[0]) == 0.0);
}

TEST_CASE("ActNorm data initialisation normalises the data", "[layers][actnorm][init]") {
  const Index n = 4000;
  Batch<double, 3> data = normal_batch(n, 3, 1);
  data.col(0) = data.col(0) * 5.0 + Vector<double>::Constant(n, 3.0);
  data.col(1) = data.col(1) * 0.01 - Vector<double>::Constant(n, 2.0);
  data.col(2) = data.col(2) * 1e3 + Vector<double>::Constant(n, 1e4);
  ActNorm<double, 3> layer;
  CHECK_FALSE(layer.initialized());
  std::vector<double> p(6);
  layer.init_params(Grads<double>(p), Random());
  layer.initialize_from_data(Grads<double>(p), data);
  CHECK(layer.initialized());
  CHECK(layer.state() == State{1});

  const auto [mean, sd] = column_stats(data);
  for (Index j = 0; j < 3; ++j) {
    CHECK(std::abs(p[std::size_t(j)] - std::log(sd[j])) < 1e-12);
    CHECK(std::abs(p[std::size_t(3 + j)] - mean[j]) < 1e-12 * std::max(1.0, std::abs(mean[j])));
  }

  Batch<double, 3> z(n, 3);
  Vector<double> ld = Vector<double>::Zero(n);
  layer.inverse(Params<double>(p), data, z, ld);
  const auto [zm, zs] = column_stats(z);
  CHECK(zm.cwiseAbs().maxCoeff() < 1e-10);
  CHECK((zs.array() - 1.0).abs().maxCoeff() < 1e-10);
  // The log-det of the inverse is −Σ log std.
  CHECK(std::abs(ld[0] + sd.array().log().sum()) < 1e-10);
}

TEST_CASE("ActNorm data initialisation with a constant column gives s = 0", "[layers][actnorm][init]") {
  const Index n = 500;
  Batch<double> data = normal_batch(n, 4, 2);
  data.col(1).setConstant(7.25);
  data.col(2).setZero();
  // Constant up to rounding noise of its magnitude (a few ulps at 1e6).
  for (Index i = 0; i < n; ++i) data(i, 3) = 1e6 * (1.0 + ((i % 3) - 1) * std::numeric_limits<double>::epsilon());
  ActNorm<double> layer(4);
  std::vector<double> p(8, 0.0);
  layer.initialize_from_data(Grads<double>(p), data);
  for (double v : p) CHECK(std::isfinite(v));
  CHECK(p[1] == 0.0);
  CHECK(p[2] == 0.0);
  CHECK(p[3] == 0.0);
  CHECK(p[4 + 1] == 7.25);
  CHECK(p[4 + 2] == 0.0);
  CHECK(std::abs(p[4 + 3] - 1e6) < 1e-6);
  CHECK(std::abs(p[0] - std::log(column_stats(data).second[0])) < 1e-12);

  Batch<double> z(n, 4);
  Vector<double> ld = Vector<double>::Zero(n);
  layer.inverse(Params<double>(p), data, z, ld);
  REQUIRE(z.allFinite());
  CHECK(z.col(1).cwiseAbs().maxCoeff() == 0.0);  // a constant column is shifted to 0, not scaled
  CHECK(z.col(2).cwiseAbs().maxCoeff() == 0.0);

  // The same in float, where a constant column must not produce log(0) either.
  ActNorm<float> lf(2);
  Batch<float> df(3, 2);
  df << 1.f, 5.f, 2.f, 5.f, 3.f, 5.f;
  std::vector<float> pf(4, 0.f);
  lf.initialize_from_data(Grads<float>(pf), df);
  CHECK(pf[1] == 0.f);
  CHECK(pf[3] == 5.f);
  CHECK(std::abs(pf[0] - std::log(std::sqrt(2.f / 3.f))) < 1e-6f);
}

TEST_CASE("ActNorm data initialisation with huge offsets and scales stays accurate", "[layers][actnorm][init]") {
  const Index n = 2000;
  SECTION("double") {
    Batch<double> data = normal_batch(n, 3, 3);
    data.col(0) = data.col(0) * 0.5 + Vector<double>::Constant(n, 1e9);      // offset ≫ spread
    data.col(1) = data.col(1) * 1e200 + Vector<double>::Constant(n, 1e201);  // squares would overflow
    data.col(2) = data.col(2) * 1e-200;                                       // squares would underflow
    const auto [mean, sd] = column_stats(normal_batch(n, 3, 3));  // statistics of the unit normal draws
    ActNorm<double> layer(3);
    std::vector<double> p(6, 0.0);
    layer.initialize_from_data(Grads<double>(p), data);
    for (double v : p) REQUIRE(std::isfinite(v));
    CHECK(std::abs(p[0] - std::log(0.5 * sd[0])) < 1e-6);
    CHECK(std::abs(p[1] - std::log(1e200 * sd[1])) < 1e-10);
    CHECK(std::abs(p[2] - std::log(1e-200 * sd[2])) < 1e-10);
    CHECK(std::abs(p[3] - (1e9 + 0.5 * mean[0])) < 1e-5);
    CHECK(std::abs(p[4] / (1e201 + 1e200 * mean[1]) - 1.0) < 1e-12);
    CHECK(std::abs(p[5] / (1e-200 * mean[2]) - 1.0) < 1e-8);

    Batch<double> z(n, 3);
    Vector<double> ld = Vector<double>::Zero(n);
    layer.inverse(Params<double>(p), data, z, ld);
    REQUIRE(z.allFinite());
    const auto [zm, zs] = column_stats(z);
    CHECK(zm.cwiseAbs().maxCoeff() < 1e-6);
    CHECK((zs.array() - 1.0).abs().maxCoeff() < 1e-6);
  }
  SECTION("float") {
    const Batch<double> unit = normal_batch(n, 2, 4);
    Batch<float> data(n, 2);
    data.col(0) = (unit.col(0) * 10.0 + Vector<double>::Constant(n, 1e5)).cast<float>();
    data.col(1) = (unit.col(1) * 1e30).cast<float>();
    ActNorm<float> layer(2);
    std::vector<float> p(4, 0.f);
    layer.initialize_from_data(Grads<float>(p), data);
    for (float v : p) REQUIRE(std::isfinite(v));
    const auto [mean, sd] = column_stats(data);  // of the float data, in double
    CHECK(std::abs(p[0] - std::log(sd[0])) < 1e-5);
    CHECK(std::abs(p[1] - std::log(sd[1])) < 1e-5);
    CHECK(std::abs(p[2] / mean[0] - 1.0) < 1e-7);
    Batch<float> z(n, 2);
    Vector<float> ld = Vector<float>::Zero(n);
    layer.inverse(Params<float>(p), data, z, ld);
    REQUIRE(z.allFinite());
    const auto [zm, zs] = column_stats(z);
    CHECK(zm.cwiseAbs().maxCoeff() < 1e-2);  // the float data itself is quantised at ulp(1e5) ≈ 0.008
    CHECK((zs.array() - 1.0).abs().maxCoeff() < 1e-3);
  }
}

TEST_CASE("ActNorm data initialisation runs once; the flag travels with the state", "[layers][actnorm][init]") {
  const Batch<double> a = normal_batch(100, 2, 5) * 3.0;
  const Batch<double> b = normal_batch(100, 2, 6) * 0.1;
  ActNorm<double> layer(2);
  std::vector<double> p(4, 0.0);
  layer.initialize_from_data(Grads<double>(p), a);
  const std::vector<double> first = p;
  layer.initialize_from_data(Grads<double>(p), b);  // already initialised: no-op
  CHECK(p == first);

  ActNorm<double> reloaded(2);
  reloaded.set_state(layer.state());
  CHECK(reloaded.initialized());
  reloaded.initialize_from_data(Grads<double>(p), b);
  CHECK(p == first);

  reloaded.set_state(State{0});  // re-armed
  reloaded.initialize_from_data(Grads<double>(p), b);
  CHECK(p != first);
  CHECK(reloaded.initialized());
}

TEST_CASE("ActNorm initialises through a Sequential chain on what reaches it", "[layers][actnorm][init]") {
  const Index n = 1000;
  Batch<double, 3> data = normal_batch(n, 3, 7);
  data.col(0) = data.col(0) * 4.0 + Vector<double>::Constant(n, -1.0);
  data.col(2) = data.col(2) * 0.5 + Vector<double>::Constant(n, 6.0);
  // Data arrives at the reverse permutation first (inverse direction), then at the ActNorm.
  Sequential chain{ActNorm<double, 3>(), Reverse<double, 3>()};
  std::vector<double> p(std::size_t(chain.num_params()));
  chain.init_params(Grads<double>(p), Random(1));
  chain.initialize_from_data(Grads<double>(p), data);
  CHECK(chain.layer<0>().initialized());
  CHECK(chain.state() == State{1, 2, 1, 0});
  Batch<double, 3> z(n, 3);
  Vector<double> ld = Vector<double>::Zero(n);
  chain.inverse(Params<double>(p), data, z, ld);
  const auto [zm, zs] = column_stats(z);
  CHECK(zm.cwiseAbs().maxCoeff() < 1e-10);
  CHECK((zs.array() - 1.0).abs().maxCoeff() < 1e-10);
  CHECK(std::abs(p[0] - std::log(column_stats(data).second[2])) < 1e-12);  // s_0 from data column 2
}

TEST_CASE("ActNorm errors name the layer, the expectation and the value", "[layers][actnorm][errors]") {
  CHECK_THROWS_WITH(ActNorm<double>(0), Catch::Contains("ActNorm") && Catch::Contains("dim must be >= 1, got 0"));
  CHECK_THROWS_WITH(ActNorm<double>(), Catch::Contains("dim must be >= 1, got 0"));
  CHECK_THROWS_WITH((ActNorm<double, 3>(4)), Catch::Contains("ActNorm") && Catch::Contains("dim is 4, expected 3"));

  ActNorm<double> layer(2);
  std::vector<double> p(4, 0.0), few(3, 0.0);
  Batch<double> x = Batch<double>::Zero(3, 2), y(3, 2), wrong(3, 3);
  Vector<double> ld = Vector<double>::Zero(3), short_ld = Vector<double>::Zero(2);
  CHECK_THROWS_WITH(layer.forward(Params<double>(p), wrong, y, ld),
                    Catch::Contains("ActNorm") && Catch::Contains("input has 3 columns, expected 2"));
  CHECK_THROWS_WITH(layer.inverse(Params<double>(p), x, wrong, ld),
                    Catch::Contains("output has shape [3, 3], expected [3, 2]"));
  CHECK_THROWS_WITH(layer.forward(Params<double>(p), x, y, short_ld), Catch::Contains("log_det has 2 entries, expected 3"));
  CHECK_THROWS_WITH(layer.forward(Params<double>(few), x, y, ld),
                    Catch::Contains("parameter span has 3 values, expected 4"));
  CHECK_THROWS_WITH(layer.init_params(Grads<double>(few), Random()),
                    Catch::Contains("parameter span has 3 values, expected 4"));

  CHECK_THROWS_WITH(layer.set_state(State{1, 0}), Catch::Contains("ActNorm") && Catch::Contains("state has 2 entries, expected 1"));
  CHECK_THROWS_WITH(layer.set_state(State{2}), Catch::Contains("initialised flag) is 2, expected 0 or 1"));

  ActNorm<double>::Cache empty;
  Batch<double> g = Batch<double>::Zero(3, 2);
  std::vector<double> dp(4, 0.0);
  CHECK_THROWS_WITH(layer.backward_forward(Params<double>(p), empty, g, ld, g, Grads<double>(dp)),
                    Catch::Contains("ActNorm") && Catch::Contains("without a recorded forward pass"));
  ActNorm<double>::Cache cache;
  layer.forward(Params<double>(p), x, y, ld, &cache);
  CHECK_THROWS_WITH(layer.backward_inverse(Params<double>(p), cache, g, short_ld, g, Grads<double>(dp)),
                    Catch::Contains("dL/dlog_det has 2 entries, expected 3"));
  CHECK_THROWS_WITH(layer.backward_forward(Params<double>(p), cache, g, ld, g, Grads<double>(few)),
                    Catch::Contains("parameter span has 3 values, expected 4"));

  // Data initialisation: too few rows, non-finite values, wrong width.
  Batch<double> one_row = Batch<double>::Ones(1, 2);
  CHECK_THROWS_WITH(layer.initialize_from_data(Grads<double>(p), one_row),
                    Catch::Contains("ActNorm") && Catch::Contains("initialisation data has 1 rows, expected at least 2"));
  Batch<double> bad = Batch<double>::Ones(4, 2);
  bad(2, 1) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(layer.initialize_from_data(Grads<double>(p), bad),
                    Catch::Contains("ActNorm") && Catch::Contains("non-finite") && Catch::Contains("expected finite"));
  bad(2, 1) = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(layer.initialize_from_data(Grads<double>(p), bad), Catch::Contains("non-finite value (inf)"));
  CHECK_THROWS_WITH(layer.initialize_from_data(Grads<double>(p), wrong),
                    Catch::Contains("initialisation data has 3 columns, expected 2"));
  CHECK_THROWS_WITH(layer.initialize_from_data(Grads<double>(few), x), Catch::Contains("parameter span has 3 values"));
  CHECK_FALSE(layer.initialized());  // failed initialisations leave the flag unset
  CHECK(p == std::vector<double>(4, 0.0));
}
