#include "support/conformance.hpp"

#include <Eigen/LU>

#include "fort/layers/lu_linear.hpp"

using namespace fort;

static_assert(FlowLayer<LULinear<double, 3>> && FlowLayer<LULinear<float>>);

namespace {

std::vector<double> normal_params(Index n, double scale, std::uint64_t stream) {
  std::vector<double> p(static_cast<std::size_t>(n));
  Random(77, stream).fill_normal(std::span<double>(p), 0, scale);
  return p;
}

// The dense W = P L U and bias c, assembled here from the documented parameter layout
// independently of the layer's own helpers.
struct Dense {
  Eigen::MatrixXd w;
  Eigen::RowVectorXd c;
};

Dense dense_from_layout(const std::vector<double>& p, const std::vector<Index>& perm) {
  const Index d = Index(perm.size());
  Eigen::MatrixXd l = Eigen::MatrixXd::Identity(d, d), u = Eigen::MatrixXd::Zero(d, d);
  std::size_t k = 0;
  for (Index i = 0; i < d; ++i)
    for (Index j = 0; j < i; ++j) l(i, j) = p[k++];
  for (Index i = 0; i < d; ++i)
    for (Index j = i + 1; j < d; ++j) u(i, j) = p[k++];
  for (Index i = 0; i < d; ++i) u(i, i) = std::exp(p[k++]);
  Eigen::RowVectorXd c(d);
  for (Index i = 0; i < d; ++i) c[i] = p[k++];
  REQUIRE(k == p.size());
  Eigen::MatrixXd pm = Eigen::MatrixXd::Zero(d, d);
  for (Index i = 0; i < d; ++i) pm(i, perm[std::size_t(i)]) = 1.0;  // (P v)_i = v_{π(i)}
  return {pm * l * u, c};
}

}  // namespace

TEST_CASE("LULinear conformance, fixed dim, identity permutation", "[layers][lu]") {
  testing::check_conformance([](auto tag, int) {
    using S = typename decltype(tag)::type;
    return LULinear<S, 4>();
  });
}

TEST_CASE("LULinear conformance, dynamic dim, seeded random permutation", "[layers][lu]") {
  testing::ConformanceOptions opt;
  opt.identity_at_init = false;  // W = P at zero parameters
  testing::check_conformance(
      [](auto tag, int variant) {
        using S = typename decltype(tag)::type;
        return LULinear<S>(6, Random(3).child(std::uint64_t(variant)));
      },
      opt);
}

TEST_CASE("LULinear conformance, one dimension", "[layers][lu]") {
  testing::check_conformance([](auto tag, int) {
    using S = typename decltype(tag)::type;
    return LULinear<S, 1>(1);
  });
}

// Each check_conformance call gets its own TEST_CASE: Catch identifies sections by name and
// source line, so a second call in the same test case would not re-enter them.
TEST_CASE("LULinear conformance, wider layer", "[layers][lu]") {
  testing::ConformanceOptions opt;
  opt.identity_at_init = false;
  opt.param_scale = 0.1;  // keeps the 12x12 W well conditioned for the float comparison
  opt.round_trip_points = 2000;
  testing::check_conformance(
      [](auto tag, int variant) {
        using S = typename decltype(tag)::type;
        return LULinear<S, 12>(12, Random(9).child(std::uint64_t(variant)));
      },
      opt);
}

TEST_CASE("LULinear applies the dense W = P L U of its parameters", "[layers][lu]") {
  for (Index d : {1, 2, 5, 9}) {
    const LULinear<double> layer(d, Random(11).child(std::uint64_t(d)));
    const auto p = normal_params(layer.num_params(), 0.5, std::uint64_t(d));
    const Dense dense = dense_from_layout(p, layer.permutation());
    INFO("dim " << d);
    CHECK((layer.weight(Params<double>(p)) - dense.w).cwiseAbs().maxCoeff() < 1e-13);

    const Index n = 50;
    Batch<double> x(n, d), y(n, d), back(n, d);
    Random(5).fill_normal(std::span<double>(x.data(), std::size_t(x.size())));
    Vector<double> ld = Vector<double>::Zero(n), ld_inv = Vector<double>::Zero(n);
    layer.forward(Params<double>(p), x, y, ld);
    const Eigen::MatrixXd expected = (x * dense.w.transpose()).rowwise() + dense.c;
    CHECK((y - expected).cwiseAbs().maxCoeff() < 1e-12);

    // log-det equals log|det W| for every sample.
    const double log_abs_det = std::log(std::abs(dense.w.determinant()));
    CHECK((ld.array() - log_abs_det).abs().maxCoeff() < 1e-12);
    CHECK(std::abs(layer.log_abs_det(Params<double>(p)) - log_abs_det) < 1e-12);

    // The inverse equals a dense solve with W.
    layer.inverse(Params<double>(p), y, back, ld_inv);
    const Eigen::MatrixXd solved =
        dense.w.partialPivLu().solve((Eigen::MatrixXd(y).rowwise() - dense.c).transpose()).transpose();
    CHECK((back - solved).cwiseAbs().maxCoeff() < 1e-11);
    CHECK((ld_inv.array() + log_abs_det).abs().maxCoeff() < 1e-12);
  }
}

TEST_CASE("LULinear starts as its permutation; identity permutation gives the identity", "[layers][lu]") {
  const LULinear<double> plain(5);
  CHECK(plain.permutation() == std::vector<Index>{0, 1, 2, 3, 4});
  const LULinear<double> shuffled(5, Random(21));
  std::vector<double> p(std::size_t(shuffled.num_params()), 1.0);
  shuffled.init_params(Grads<double>(p), Random());
  for (double v : p) CHECK(v == 0.0);
  Eigen::MatrixXd pm = Eigen::MatrixXd::Zero(5, 5);
  for (Index i = 0; i < 5; ++i) pm(i, shuffled.permutation()[std::size_t(i)]) = 1.0;
  CHECK(Eigen::MatrixXd(shuffled.weight(Params<double>(p))) == pm);
  CHECK(shuffled.signature() == "LULinear(dim=5)");
  CHECK(shuffled.state() == State(shuffled.permutation().begin(), shuffled.permutation().end()));
  // Seeded: the same key gives the same permutation.
  CHECK(LULinear<double>(5, Random(21)).permutation() == shuffled.permutation());
  CHECK(LULinear<double>(5, Random(22)).permutation() != shuffled.permutation());
}

TEST_CASE("LULinear works in place", "[layers][lu]") {
  const LULinear<double, 3> layer(3, Random(4));
  const auto p = normal_params(layer.num_params(), 0.4, 1);
  Batch<double, 3> x(4, 3), y(4, 3);
  Random(8).fill_normal(std::span<double>(x.data(), std::size_t(x.size())));
  Vector<double> ld = Vector<double>::Zero(4);
  layer.forward(Params<double>(p), x, y, ld);
  Batch<double, 3> z = x;
  layer.forward(Params<double>(p), z, z, ld);
  CHECK((z - y).cwiseAbs().maxCoeff() < 1e-14);
  layer.inverse(Params<double>(p), z, z, ld);
  CHECK((z - x).cwiseAbs().maxCoeff() < 1e-12);
  std::vector<double> scratch(std::size_t(layer.point_scratch_size()));
  double buf[3] = {x(0, 0), x(0, 1), x(0, 2)}, lp = 0;
  layer.forward_point(Params<double>(p), buf, buf, lp, scratch.data());
  for (Index j = 0; j < 3; ++j) CHECK(std::abs(buf[j] - y(0, j)) < 1e-14);
  layer.inverse_point(Params<double>(p), buf, buf, lp, scratch.data());
  for (Index j = 0; j < 3; ++j) CHECK(std::abs(buf[j] - x(0, j)) < 1e-12);
  CHECK(std::abs(lp) < 1e-15);
}

TEST_CASE("LULinear errors name the layer, the expectation and the value", "[layers][lu][errors]") {
  CHECK_THROWS_WITH(LULinear<double>(0), Catch::Contains("LULinear") && Catch::Contains("dim must be >= 1, got 0"));
  CHECK_THROWS_WITH(LULinear<double>(), Catch::Contains("dim must be >= 1, got 0"));
  CHECK_THROWS_WITH((LULinear<double, 3>(2, Random(1))),
                    Catch::Contains("LULinear") && Catch::Contains("dim is 2, expected 3"));

  LULinear<double> layer(3);
  std::vector<double> p(12, 0.0), few(11, 0.0);
  Batch<double> x = Batch<double>::Zero(2, 3), y(2, 3), wrong(2, 4);
  Vector<double> ld = Vector<double>::Zero(2), long_ld = Vector<double>::Zero(5);
  CHECK_THROWS_WITH(layer.forward(Params<double>(few), x, y, ld),
                    Catch::Contains("LULinear") && Catch::Contains("parameter span has 11 values, expected 12"));
  CHECK_THROWS_WITH(layer.init_params(Grads<double>(few), Random()), Catch::Contains("expected 12"));
  CHECK_THROWS_WITH(layer.weight(Params<double>(few)), Catch::Contains("parameter span has 11 values"));
  CHECK_THROWS_WITH(layer.forward(Params<double>(p), wrong, y, ld), Catch::Contains("input has 4 columns, expected 3"));
  CHECK_THROWS_WITH(layer.inverse(Params<double>(p), x, wrong, ld),
                    Catch::Contains("output has shape [2, 4], expected [2, 3]"));
  CHECK_THROWS_WITH(layer.inverse(Params<double>(p), x, y, long_ld), Catch::Contains("log_det has 5 entries, expected 2"));

  CHECK_THROWS_WITH(layer.set_state(State{0, 1}),
                    Catch::Contains("LULinear") && Catch::Contains("state (the permutation) has 2 entries, expected 3"));
  CHECK_THROWS_WITH(layer.set_state(State{0, 0, 1}), Catch::Contains("not a permutation: value 0 appears"));
  CHECK_THROWS_WITH(layer.set_state(State{0, 1, 3}), Catch::Contains("entry 2 is 3, expected a value in [0, 3)"));
  CHECK(layer.permutation() == std::vector<Index>{0, 1, 2});
  layer.set_state(State{2, 0, 1});
  CHECK(layer.permutation() == std::vector<Index>{2, 0, 1});

  LULinear<double>::Cache empty;
  std::vector<double> dp(12, 0.0);
  CHECK_THROWS_WITH(layer.backward_forward(Params<double>(p), empty, x, ld, y, Grads<double>(dp)),
                    Catch::Contains("LULinear") && Catch::Contains("without a recorded forward pass"));
  LULinear<double>::Cache cache;
  layer.inverse(Params<double>(p), x, y, ld, &cache);
  CHECK_THROWS_WITH(layer.backward_inverse(Params<double>(p), cache, x, ld, wrong, Grads<double>(dp)),
                    Catch::Contains("dL/d(input) has shape [2, 4], expected [2, 3]"));
  CHECK_THROWS_WITH(layer.backward_inverse(Params<double>(p), cache, x, ld, y, Grads<double>(few)),
                    Catch::Contains("parameter span has 11 values, expected 12"));
}
