#include "support/conformance.hpp"

#include "fort/layers/affine_coupling.hpp"

using namespace fort;

namespace {
MLPConfig small_mlp(Activation act = Activation::tanh, bool residual = false) {
  return MLPConfig{8, 2, act, residual};
}
}  // namespace

TEST_CASE("AffineCoupling conformance, fixed dim, half mask", "[layers][affine]") {
  testing::check_conformance([](auto tag, int) {
    using S = typename decltype(tag)::type;
    return AffineCoupling<S, 3>(Mask::half(3), small_mlp());
  });
}

TEST_CASE("AffineCoupling conformance, dynamic dim, alternating mask, residual SiLU conditioner",
          "[layers][affine]") {
  testing::check_conformance([](auto tag, int) {
    using S = typename decltype(tag)::type;
    return AffineCoupling<S>(Mask::alternating(4, true), small_mlp(Activation::silu, true), AffineTransform<S>(2.0));
  });
}

TEST_CASE("AffineCoupling without clamp, ReLU conditioner", "[layers][affine]") {
  testing::ConformanceOptions opt;
  testing::check_conformance([](auto tag, int) {
    using S = typename decltype(tag)::type;
    return AffineCoupling<S, 2>(Mask::half(2, true), small_mlp(Activation::relu), AffineTransform<S>(0.0));
  }, opt);
}

TEST_CASE("AdditiveCoupling conformance", "[layers][additive]") {
  testing::check_conformance([](auto tag, int) {
    using S = typename decltype(tag)::type;
    return AdditiveCoupling<S, 5>(Mask::alternating(5), small_mlp());
  });
}

TEST_CASE("AffineCoupling soft clamp bounds the log-scale", "[layers][affine]") {
  const AffineTransform<double> t(2.0);
  double y = 0, ld = 0;
  const double theta[2] = {1e6, 0.0};
  t.forward(1.0, theta, y, ld);
  CHECK(ld <= 2.0);
  CHECK(std::isfinite(y));
}

TEST_CASE("Coupling errors name the layer, the expectation and the value", "[layers][errors]") {
  using L = AffineCoupling<double, 2>;
  CHECK_THROWS_WITH(Mask::half(1), Catch::Contains("Mask") && Catch::Contains("dim >= 2"));
  CHECK_THROWS_WITH(Mask(std::vector<bool>{true, true}), Catch::Contains("transform at least one"));
  CHECK_THROWS_WITH(L(Mask::half(3), MLPConfig{}), Catch::Contains("AffineCoupling") && Catch::Contains("expected 2"));
  CHECK_THROWS_WITH(AffineTransform<double>(-1.0), Catch::Contains("log_scale_bound"));
  CHECK_THROWS_WITH((MLP<double>(1, 2, MLPConfig{0, 2, Activation::relu, false})), Catch::Contains("width must be >= 1"));

  AffineCoupling<double> layer(Mask::half(2), MLPConfig{4, 1, Activation::relu, false});
  std::vector<double> p(std::size_t(layer.num_params()));
  Batch<double> x(3, 2), y(3, 2), wrong(3, 3);
  x.setZero();
  Vector<double> ld = Vector<double>::Zero(3), short_ld = Vector<double>::Zero(2);
  CHECK_THROWS_WITH(layer.forward(Params<double>(p), wrong, y, ld),
                    Catch::Contains("AffineCoupling") && Catch::Contains("input has 3 columns, expected 2"));
  CHECK_THROWS_WITH(layer.forward(Params<double>(p), x, wrong, ld), Catch::Contains("output has shape [3, 3], expected [3, 2]"));
  CHECK_THROWS_WITH(layer.forward(Params<double>(p), x, y, short_ld), Catch::Contains("log_det has 2 entries, expected 3"));
  std::vector<double> too_few(3);
  CHECK_THROWS_WITH(layer.forward(Params<double>(too_few), x, y, ld),
                    Catch::Contains("parameter span has 3 values, expected"));
  CHECK_THROWS_WITH(layer.set_state(State{1, 1, 0}), Catch::Contains("state has 3 entries, expected 2"));
  CHECK_THROWS_WITH(layer.set_state(State{1, 2}), Catch::Contains("expected 0 or 1"));
  AffineCoupling<double>::Cache empty;
  Batch<double> g(3, 2);
  g.setZero();
  std::vector<double> dp(p.size());
  CHECK_THROWS_WITH(layer.backward_forward(Params<double>(p), empty, g, ld, g, Grads<double>(dp)),
                    Catch::Contains("without a recorded forward pass"));
}

// The coupling runs the affine transform through its row kernels (vectorised tanh/exp); they
// must agree with the element functions (used on the GPU) to a few ulp, across block edges.
template <class S>
void check_affine_rows(double bound, double tol) {
  const AffineTransform<S> tr(bound);
  for (Index m : {1, 33, 64, 65, 130}) {
    const std::size_t mm = std::size_t(m);
    std::vector<S> x(mm), theta(2 * mm), y(mm), back(mm);
    const Random rng(11, std::uint64_t(m));
    for (Index j = 0; j < m; ++j) {
      x[std::size_t(j)] = S(2 * rng.normal(std::uint64_t(3 * j)));
      theta[std::size_t(2 * j)] = S(4 * rng.normal(std::uint64_t(3 * j + 1)));  // well into the clamp
      theta[std::size_t(2 * j + 1)] = S(rng.normal(std::uint64_t(3 * j + 2)));
    }
    std::vector<typename AffineTransform<S>::Partials> fwd(mm), inv(mm);
    S ld_row = 0, ld_back = 0, ld_elem = 0;
    tr.forward_row(m, x.data(), theta.data(), y.data(), ld_row, fwd.data());
    tr.inverse_row(m, y.data(), theta.data(), back.data(), ld_back, inv.data());
    for (Index j = 0; j < m; ++j) {
      const std::size_t u = std::size_t(j);
      S ye, xe, lde = 0;
      tr.forward(x[u], &theta[2 * u], ye, lde);
      tr.inverse(y[u], &theta[2 * u], xe, lde);
      ld_elem += tr.log_scale(theta[2 * u]);
      const auto d = tr.partials(x[u], &theta[2 * u]);
      // Scales of the terms that meet in y = x·e + t and x = (y − t)/e (cancellation).
      const double t = std::abs(theta[2 * u + 1]), fwd_scale = 1 + std::abs(x[u]) * d.dy_dx + t,
                   inv_scale = 1 + (std::abs(y[u]) + t) / d.dy_dx;
      CHECK(std::abs(y[u] - ye) <= tol * fwd_scale);
      CHECK(std::abs(back[u] - xe) <= tol * inv_scale);
      CHECK(std::abs(back[u] - x[u]) <= tol * inv_scale);
      for (const auto& rec : {fwd[u], inv[u]}) {
        CHECK(std::abs(rec.dy_dx - d.dy_dx) <= tol * d.dy_dx);
        CHECK(rec.dlog_det_dx == 0);
        CHECK(std::abs(rec.ds_draw - d.ds_draw) <= tol);
      }
    }
    CHECK(std::abs(ld_row - ld_elem) <= tol * double(m));
    CHECK(std::abs(ld_row + ld_back) <= tol * double(m));
  }
}

TEST_CASE("AffineTransform row kernels agree with its element functions", "[layers][affine]") {
  check_affine_rows<double>(3.0, 1e-14);
  check_affine_rows<double>(0.0, 1e-14);
  check_affine_rows<float>(3.0, 4e-6);
  check_affine_rows<float>(0.0, 4e-6);
}
