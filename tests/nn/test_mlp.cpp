// The conditioner MLP on its own: hand-written backward against central differences for every
// activation, with and without residual connections and at several depths; the per-point path
// against the batched one; zero output at initialisation; errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "fort/nn/mlp.hpp"

using namespace fort;

namespace {

std::vector<double> random_values(Index n, double scale, std::uint64_t stream) {
  std::vector<double> v(static_cast<std::size_t>(n));
  Random(5, stream).fill_normal(std::span<double>(v), 0, scale);
  return v;
}

Matrix<double> random_matrix(Index rows, Index cols, std::uint64_t stream) {
  Matrix<double> m(rows, cols);
  Random(6, stream).fill_normal(std::span<double>(m.data(), std::size_t(m.size())), 0, 1);
  return m;
}

// L = Σ c ⊙ MLP(x) for fixed random c.
double loss(const MLP<double>& mlp, const std::vector<double>& p, const Matrix<double>& x, const Matrix<double>& c) {
  Matrix<double> y;
  mlp.forward(Params<double>(p), x, y);
  return (y.array() * c.array()).sum();
}

// Relative error with a floor of 1 on the scale, as in the layer conformance checks.
double rel(double a, double b) { return std::abs(a - b) / std::max(1.0, std::abs(b)); }

}  // namespace

TEST_CASE("MLP backward matches central differences for every activation, depth and residual setting", "[nn][mlp]") {
  for (Activation act : {Activation::relu, Activation::silu, Activation::tanh}) {
    for (Index depth : {0, 1, 3}) {
      for (bool residual : {false, true}) {
        const Index in = 5, out = 4, width = 5;  // width == in makes the first hidden layer residual too
        const MLP<double> mlp(in, out, MLPConfig{width, depth, act, residual});
        INFO(mlp.signature());
        const auto p = random_values(mlp.num_params(), 0.7, 1);  // non-zero last layer
        const Matrix<double> x = random_matrix(3, in, 2), c = random_matrix(3, out, 3);

        MLP<double>::Cache cache;
        Matrix<double> y, dx;
        mlp.forward(Params<double>(p), x, y, &cache);
        std::vector<double> g(p.size(), 0.0);
        mlp.backward(Params<double>(p), cache, c, &dx, Grads<double>(g));

        const double h = 1e-5, tol = 1e-6;
        double worst = 0;
        for (Index i = 0; i < x.rows(); ++i)
          for (Index j = 0; j < in; ++j) {
            Matrix<double> xp = x, xm = x;
            xp(i, j) += h;
            xm(i, j) -= h;
            const double fd = (loss(mlp, p, xp, c) - loss(mlp, p, xm, c)) / (2 * h);
            worst = std::max(worst, rel(dx(i, j), fd));
          }
        CHECK(worst < tol);
        worst = 0;
        for (std::size_t k = 0; k < p.size(); ++k) {
          auto pp = p, pm = p;
          pp[k] += h;
          pm[k] -= h;
          const double fd = (loss(mlp, pp, x, c) - loss(mlp, pm, x, c)) / (2 * h);
          worst = std::max(worst, rel(g[k], fd));
        }
        CHECK(worst < tol);

        // Accumulation: a second backward adds the same gradient again.
        std::vector<double> g2 = g;
        mlp.backward(Params<double>(p), cache, c, nullptr, Grads<double>(g2));
        for (std::size_t k = 0; k < p.size(); ++k) REQUIRE(g2[k] == Approx(2 * g[k]).margin(1e-14));
      }
    }
  }
}

TEMPLATE_TEST_CASE("MLP per-point forward equals the batched forward", "[nn][mlp]", float, double) {
  using S = TestType;
  for (Activation act : {Activation::relu, Activation::silu, Activation::tanh}) {
    const MLP<S> mlp(3, 7, MLPConfig{16, 2, act, true});
    const auto pd = random_values(mlp.num_params(), 0.5, 4);
    const std::vector<S> p(pd.begin(), pd.end());
    const Matrix<S> x = random_matrix(9, 3, 5).cast<S>();
    Matrix<S> y;
    mlp.forward(Params<S>(p), x, y);
    std::vector<S> scratch(std::size_t(mlp.point_scratch_size())), yp(7);
    for (Index i = 0; i < x.rows(); ++i) {
      mlp.forward_point(Params<S>(p), x.row(i).data(), yp.data(), scratch.data());
      for (Index j = 0; j < 7; ++j)
        REQUIRE(double(yp[std::size_t(j)]) == Approx(double(y(i, j))).epsilon(std::is_same_v<S, float> ? 1e-5 : 1e-13).margin(1e-6));
    }
  }
}

TEST_CASE("MLP initialisation: zero last layer (zero output), bounded hidden weights, seeded", "[nn][mlp]") {
  const MLP<double> mlp(4, 6, MLPConfig{8, 2, Activation::silu, false});
  std::vector<double> p(std::size_t(mlp.num_params())), q(p.size());
  mlp.init_params(Grads<double>(p), Random(3));
  mlp.init_params(Grads<double>(q), Random(3));
  CHECK(p == q);
  Matrix<double> y;
  mlp.forward(Params<double>(p), random_matrix(5, 4, 7), y);
  CHECK(y.cwiseAbs().maxCoeff() == 0.0);
  // First layer: uniform on ±1/sqrt(fan_in = 4).
  for (Index k = 0; k < 4 * 8 + 8; ++k) CHECK(std::abs(p[std::size_t(k)]) <= 0.5);
  // Hidden and first layers are not all zero.
  double s = 0;
  for (Index k = 0; k < 4 * 8; ++k) s += std::abs(p[std::size_t(k)]);
  CHECK(s > 0);
}

TEST_CASE("MLP errors name the MLP, the expectation and the value", "[nn][mlp][errors]") {
  CHECK_THROWS_WITH(MLP<double>(3, 0, MLPConfig{}), Catch::Contains("MLP") && Catch::Contains("out >= 1"));
  CHECK_THROWS_WITH(MLP<double>(3, 2, MLPConfig{8, -1}), Catch::Contains("depth must be >= 0, got -1"));
  CHECK_THROWS_WITH(MLP<double>(3, 2, MLPConfig{0, 2}), Catch::Contains("width must be >= 1, got 0"));
  const MLP<double> mlp(3, 2, MLPConfig{4, 1});
  std::vector<double> p(std::size_t(mlp.num_params() - 1));
  Matrix<double> y;
  CHECK_THROWS_WITH(mlp.forward(Params<double>(p), random_matrix(2, 3, 1), y),
                    Catch::Contains("parameter span has " + std::to_string(p.size()) + " values, expected " +
                                    std::to_string(mlp.num_params())));
}

TEST_CASE("MLP rejects inputs of the wrong width and backward without a recorded cache", "[nn][mlp][errors]") {
  const MLP<double> mlp(3, 2, MLPConfig{4, 1});
  std::vector<double> p(std::size_t(mlp.num_params()), 0.1), g(p.size(), 0.0);
  Matrix<double> y;
  CHECK_THROWS_WITH(mlp.forward(Params<double>(p), random_matrix(2, 4, 1), y),
                    Catch::Contains("input has 4 columns, expected 3"));
  MLP<double>::Cache empty;
  CHECK_THROWS_WITH(mlp.backward(Params<double>(p), empty, random_matrix(2, 2, 1), nullptr, Grads<double>(g)),
                    Catch::Contains("cache recorded by forward"));
}
