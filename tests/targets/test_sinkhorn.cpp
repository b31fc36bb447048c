#include <catch2/catch.hpp>

#include <cmath>
#include <initializer_list>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "support/expect_error.hpp"
#include "fort/targets.hpp"

using namespace fort;

using fort::test::check_error;

namespace {

Batch<double> normal_batch(Index n, Index d, std::uint64_t stream, double scale = 1.0) {
  Batch<double> x(n, d);
  Random(654, stream).fill_normal(std::span<double>(x.data(), std::size_t(x.size())), 0, scale);
  return x;
}

// Two well-separated blobs: a target that is not a shifted copy of the prior.
Batch<double> blobs(Index n, Index d, std::uint64_t stream) {
  Batch<double> x = normal_batch(n, d, stream, 0.5);
  for (Index i = 0; i < n; ++i) x(i, 0) += (i % 3 == 0) ? -2.0 : 2.0;
  return x;
}

Matrix<double> cost_matrix(const Batch<double>& x0, const Batch<double>& x1) {
  Matrix<double> c(x0.rows(), x1.rows());
  for (Index i = 0; i < x0.rows(); ++i)
    for (Index j = 0; j < x1.rows(); ++j) c(i, j) = (x0.row(i) - x1.row(j)).squaredNorm();
  return c;
}

// Σ P log(P / (a ⊗ b)) over the support of P.
double kl_to_product(const Matrix<double>& p, const Vector<double>& a, const Vector<double>& b) {
  double kl = 0.0;
  for (Index i = 0; i < p.rows(); ++i)
    for (Index j = 0; j < p.cols(); ++j)
      if (p(i, j) > 0.0) kl += p(i, j) * std::log(p(i, j) / (a[i] * b[j]));
  return kl;
}

}  // namespace

TEST_CASE("sinkhorn satisfies the marginals, uniform and weighted, unequal sizes", "[targets][sinkhorn]") {
  const Batch<double> x0 = normal_batch(60, 2, 1), x1 = blobs(45, 2, 2);
  const Matrix<double> c = cost_matrix(x0, x1);
  SinkhornOptions o;
  o.epsilon = 0.05;
  o.tolerance = 1e-9;

  SECTION("uniform weights") {
    const SinkhornResult r = sinkhorn(x0, x1, o);
    REQUIRE(r.converged);
    CHECK(r.marginal_error <= o.tolerance);
    CHECK(r.f.size() == 60);
    CHECK(r.g.size() == 45);
    CHECK(r.a.isApproxToConstant(1.0 / 60));
    CHECK(r.b.isApproxToConstant(1.0 / 45));
    const Matrix<double> p = sinkhorn_plan(x0, x1, r);
    CHECK((p.rowwise().sum() - r.a).lpNorm<1>() <= o.tolerance * (1 + 1e-6));
    CHECK((p.rowwise().sum() - r.a).lpNorm<1>() == Approx(r.marginal_error).epsilon(1e-3).margin(1e-14));
    CHECK((p.colwise().sum().transpose() - r.b).lpNorm<1>() <= 1e-13);  // columns exact after the last g-update
    CHECK(r.transport_cost == Approx(p.cwiseProduct(c).sum()).epsilon(1e-12));
    // At convergence the dual value is the entropic OT value ⟨P, C⟩ + ε KL(P ‖ a ⊗ b).
    CHECK(r.dual_objective == Approx(r.transport_cost + r.epsilon * kl_to_product(p, r.a, r.b)).epsilon(1e-7));
    // Relative ε is a fraction of the mean cost Σ a_i b_j c_ij.
    CHECK(r.epsilon == Approx(0.05 * c.mean()).epsilon(1e-12));
  }
  SECTION("given weights with zeros and different totals") {
    Vector<double> a(60), b(45);
    for (Index i = 0; i < 60; ++i) a[i] = (i % 7 == 3) ? 0.0 : 0.5 + Random(3).uniform(std::uint64_t(i));
    for (Index j = 0; j < 45; ++j) b[j] = (j == 10) ? 0.0 : 1e-3 * (1.0 + 3.0 * Random(4).uniform(std::uint64_t(j)));
    const SinkhornResult r = sinkhorn(x0, x1, a, b, o);
    REQUIRE(r.converged);
    CHECK(r.a.isApprox(a / a.sum(), 1e-15));
    CHECK(r.b.isApprox(b / b.sum(), 1e-15));
    const Matrix<double> p = sinkhorn_plan(x0, x1, r);
    CHECK((p.rowwise().sum() - r.a).lpNorm<1>() <= o.tolerance * (1 + 1e-6));
    CHECK((p.colwise().sum().transpose() - r.b).lpNorm<1>() <= 1e-13);
    CHECK(p.row(3).isZero(0.0));  // zero-weight row carries no mass
    CHECK(p.col(10).isZero(0.0));
    CHECK(r.f.allFinite());
    CHECK(r.g.allFinite());
    // Float weights and row-vector weights are accepted and give the same result.
    CHECK(sinkhorn(x0, x1, a.transpose(), b, o).f == r.f);
    // A column block: an expression without linear access.
    CHECK(sinkhorn(x0, x1, Matrix<double>(a.replicate(1, 2)).block(0, 1, 60, 1), b, o).f == r.f);
    CHECK(sinkhorn(x0, x1, a.cast<float>(), b.cast<float>(), o).f.isApprox(r.f, 1e-5));
  }
  SECTION("absolute epsilon, larger D") {
    const Batch<double> y0 = normal_batch(100, 66, 5), y1 = blobs(80, 66, 6);
    o.relative_epsilon = false;
    o.epsilon = 10.0;
    o.tolerance = 1e-8;
    const SinkhornResult r = sinkhorn(y0, y1, o);
    REQUIRE(r.converged);
    CHECK(r.epsilon == 10.0);
    const Matrix<double> p = sinkhorn_plan(y0, y1, r);
    CHECK((p.rowwise().sum() - r.a).lpNorm<1>() <= 1e-8 * (1 + 1e-6));
    CHECK((p.colwise().sum().transpose() - r.b).lpNorm<1>() <= 1e-13);
  }
}

TEST_CASE("sinkhorn approaches the exact OT cost as epsilon -> 0", "[targets][sinkhorn]") {
  const Index n = 8;
  const Batch<double> x0 = normal_batch(n, 2, 10), x1 = blobs(n, 2, 11);
  const AssignmentResult exact_assignment = ot_assignment(x0, x1);
  const double exact = exact_assignment.total_cost / double(n);  // uniform weights 1/n
  const double max_cost = cost_matrix(x0, x1).maxCoeff();
  double previous_gap = std::numeric_limits<double>::infinity();
  for (const double eps : {1.0, 0.3, 0.1, 0.03, 0.01, 0.003}) {
    SinkhornOptions o;
    o.epsilon = eps;
    o.epsilon_start = 1.0;
    // Below ε ≈ 0.01 · mean cost this instance (two nearly equal matchings) converges only
    // like 1/iterations: measured marginal error 2.5e-6 after 1e5 iterations at ε = 0.003.
    o.tolerance = eps >= 0.01 ? 1e-10 : 3e-6;
    o.max_iterations = 300000;
    const SinkhornResult r = sinkhorn(x0, x1, o);
    REQUIRE(r.converged);
    const double gap = r.transport_cost - exact;
    const double slack = 10 * o.tolerance * max_cost;  // the plan is feasible only to the tolerance
    INFO("epsilon " << eps << " (absolute " << r.epsilon << "): gap " << gap << ", bound " << r.epsilon * std::log(double(n))
                    << ", iterations " << r.iterations);
    // exact ≤ ⟨P_ε, C⟩ ≤ OT_ε ≤ exact + ε KL(P* ‖ a ⊗ b) = exact + ε log n.
    CHECK(gap >= -slack);
    CHECK(r.dual_objective >= r.transport_cost - slack);
    CHECK(r.dual_objective <= exact + r.epsilon * std::log(double(n)) + slack);
    CHECK(gap <= previous_gap + slack);  // ⟨P_ε, C⟩ is non-decreasing in ε
    previous_gap = gap;
    if (eps == 0.003) CHECK(gap <= 1e-3 * exact);
  }
}

TEST_CASE("sinkhorn targets recover a unique OT permutation as epsilon -> 0", "[targets][sinkhorn]") {
  // x1 = shuffled (2 x0 + b): T(x) = 2x + b is the gradient of a convex function, so the OT
  // pairing is x0_i -> T(x0_i) with a margin (swapping i and k costs 4 ‖x0_i − x0_k‖² more;
  // x0 is a jittered grid so that margin is at least about 2, i.e. > 100 ε).
  const Index n = 10;
  Batch<double> x0 = normal_batch(n, 2, 15, 0.1);
  for (Index k = 0; k < n; ++k) x0.row(k) += Eigen::RowVector2d(double(k % 4), double(k / 4));
  std::vector<Index> perm(static_cast<std::size_t>(n));
  random_permutation(std::span<Index>(perm), Random(16));
  Batch<double> x1(n, 2);
  std::vector<Index> expected(static_cast<std::size_t>(n));
  for (Index k = 0; k < n; ++k) {
    const Index i = perm[std::size_t(k)];
    x1.row(k) = 2.0 * x0.row(i) + Eigen::RowVector2d(1.0, -0.5);
    expected[std::size_t(i)] = k;
  }
  REQUIRE(ot_assignment(x0, x1).target_of == expected);
  SinkhornOptions o;
  o.epsilon = 1e-3;
  o.epsilon_start = 1.0;
  o.tolerance = 1e-8;
  o.max_iterations = 100000;
  const SinkhornResult r = sinkhorn(x0, x1, o);
  REQUIRE(r.converged);
  INFO("iterations " << r.iterations);
  for (std::uint64_t seed = 0; seed < 5; ++seed) CHECK(sinkhorn_sample_targets(x0, x1, r, Random(seed)) == expected);
  const Batch<double> bary = sinkhorn_barycentric_targets(x0, x1, r);
  for (Index i = 0; i < n; ++i) CHECK((bary.row(i) - x1.row(expected[std::size_t(i)])).norm() <= 1e-6);
}

TEST_CASE("sinkhorn with unequal sizes: duplicated targets", "[targets][sinkhorn]") {
  // x1 holds every point of x0 three times: the exact OT cost is 0 and row i's mass goes to its
  // three copies; as ε → 0 the barycentric target of x0_i is x0_i itself.
  const Index n = 12;
  const Batch<double> x0 = normal_batch(n, 2, 20, 2.0);
  Batch<double> x1(3 * n, 2);
  for (Index k = 0; k < 3 * n; ++k) x1.row(k) = x0.row(k % n);
  SinkhornOptions o;
  o.epsilon = 1e-3;
  o.epsilon_start = 1.0;
  o.tolerance = 1e-9;
  const SinkhornResult r = sinkhorn(x0, x1, o);
  REQUIRE(r.converged);
  CHECK(r.transport_cost <= 1e-6);
  CHECK(sinkhorn_barycentric_targets(x0, x1, r).isApprox(x0, 1e-6));
  for (const Index j : sinkhorn_sample_targets(x0, x1, r, Random(2))) CHECK(j >= 0);
  const std::vector<Index> t = sinkhorn_sample_targets(x0, x1, r, Random(2));
  for (Index i = 0; i < n; ++i) CHECK(t[std::size_t(i)] % n == i);

  // And the other way round: N = 3M.
  const SinkhornResult back = sinkhorn(x1, x0, o);
  REQUIRE(back.converged);
  const std::vector<Index> tb = sinkhorn_sample_targets(x1, x0, back, Random(3));
  for (Index k = 0; k < 3 * n; ++k) CHECK(tb[std::size_t(k)] == k % n);
}

TEST_CASE("sinkhorn annealing reaches the same solution", "[targets][sinkhorn]") {
  const Batch<double> x0 = normal_batch(80, 2, 30), x1 = blobs(70, 2, 31);
  SinkhornOptions o;
  o.epsilon = 0.005;
  o.tolerance = 1e-8;
  o.max_iterations = 100000;
  const SinkhornResult plain = sinkhorn(x0, x1, o);
  o.epsilon_start = 1.0;
  const SinkhornResult annealed = sinkhorn(x0, x1, o);
  REQUIRE(plain.converged);
  REQUIRE(annealed.converged);
  INFO("iterations plain " << plain.iterations << ", annealed " << annealed.iterations);
  CHECK(annealed.epsilon == plain.epsilon);
  CHECK(annealed.transport_cost == Approx(plain.transport_cost).epsilon(1e-6));
  CHECK(annealed.dual_objective == Approx(plain.dual_objective).epsilon(1e-6));
}

TEST_CASE("sinkhorn works for float input and matches double", "[targets][sinkhorn]") {
  const Batch<float> x0 = normal_batch(40, 3, 40).cast<float>(), x1 = blobs(30, 3, 41).cast<float>();
  const SinkhornResult rf = sinkhorn(x0, x1);
  const SinkhornResult rd = sinkhorn(x0.cast<double>(), x1.cast<double>());
  REQUIRE(rf.converged);
  CHECK(rf.f == rd.f);  // float values convert exactly; the arithmetic is double in both
  CHECK(rf.g == rd.g);
  const auto bary = sinkhorn_barycentric_targets(x0, x1, rf);
  STATIC_REQUIRE(std::is_same_v<std::remove_const_t<decltype(bary)>, Batch<float>>);
  CHECK(bary.rows() == 40);
  CHECK(bary.cols() == 3);
  CHECK(bary.cast<double>().isApprox(sinkhorn_barycentric_targets(x0.cast<double>(), x1.cast<double>(), rd), 1e-6));
  CHECK(sinkhorn_sample_targets(x0, x1, rf, Random(5)) == sinkhorn_sample_targets(x0.cast<double>(), x1.cast<double>(), rd, Random(5)));
}

TEST_CASE("sinkhorn sampled targets follow the plan's conditionals", "[targets][sinkhorn]") {
  const Batch<double> x0 = normal_batch(3, 2, 50), x1 = normal_batch(4, 2, 51);
  Vector<double> a = Vector<double>::Ones(3), b(4);
  b << 1.0, 2.0, 0.0, 1.0;  // column 2 has no mass and must never be drawn
  SinkhornOptions o;
  o.epsilon = 0.5;
  o.tolerance = 1e-12;
  const SinkhornResult r = sinkhorn(x0, x1, a, b, o);
  const Matrix<double> p = sinkhorn_plan(x0, x1, r);
  const int draws = 20000;
  Matrix<double> counts = Matrix<double>::Zero(3, 4);
  for (int k = 0; k < draws; ++k) {
    const std::vector<Index> t = sinkhorn_sample_targets(x0, x1, r, Random(std::uint64_t(k)));
    for (Index i = 0; i < 3; ++i) counts(i, t[std::size_t(i)]) += 1.0;
  }
  CHECK(counts.col(2).isZero(0.0));
  for (Index i = 0; i < 3; ++i)
    for (Index j = 0; j < 4; ++j) {
      const double q = p(i, j) / p.row(i).sum(), freq = counts(i, j) / draws;
      INFO("row " << i << " col " << j << ": conditional " << q << ", frequency " << freq);
      CHECK(std::abs(freq - q) <= 5.0 * std::sqrt(q * (1 - q) / draws) + 1e-12);
    }

  // Deterministic per Random; different streams differ.
  const Batch<double> y0 = normal_batch(200, 2, 52), y1 = blobs(150, 2, 53);
  const SinkhornResult ry = sinkhorn(y0, y1);
  const std::vector<Index> s1 = sinkhorn_sample_targets(y0, y1, ry, Random(9)), s2 = sinkhorn_sample_targets(y0, y1, ry, Random(9));
  CHECK(s1 == s2);
  CHECK(sinkhorn_sample_targets(y0, y1, ry, Random(9).child(1)) != s1);
  for (const Index j : s1) CHECK((j >= 0 && j < 150));
}

TEST_CASE("sinkhorn reports non-convergence", "[targets][sinkhorn][errors]") {
  const Batch<double> x0 = normal_batch(30, 2, 60), x1 = blobs(30, 2, 61);
  SinkhornOptions o;
  o.epsilon = 0.001;
  o.tolerance = 1e-12;
  o.max_iterations = 3;
  check_error([&] { sinkhorn(x0, x1, o); }, {"sinkhorn: ", "no convergence after 3 iterations", "marginal error", "tolerance 1e-12"});
  o.throw_on_no_convergence = false;
  const SinkhornResult r = sinkhorn(x0, x1, o);
  CHECK_FALSE(r.converged);
  CHECK(r.iterations == 3);
  CHECK(r.marginal_error > o.tolerance);
  // The reported error belongs to the returned potentials (columns exact, rows off by it).
  const Matrix<double> p = sinkhorn_plan(x0, x1, r);
  CHECK((p.rowwise().sum() - r.a).lpNorm<1>() == Approx(r.marginal_error).epsilon(1e-9));
  CHECK((p.colwise().sum().transpose() - r.b).lpNorm<1>() <= 1e-13);
  // Annealing stages share the budget and always leave the final ε at least one iteration.
  o.epsilon_start = 1.0;
  o.max_iterations = 5;
  const SinkhornResult ra = sinkhorn(x0, x1, o);
  CHECK(ra.iterations <= 5);
  CHECK(ra.epsilon == Approx(r.epsilon));
}

TEST_CASE("sinkhorn functions reject bad input", "[targets][sinkhorn][errors]") {
  const Batch<double> a = normal_batch(5, 2, 70), b = normal_batch(4, 2, 71);
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();

  check_error([&] { sinkhorn(a, normal_batch(4, 3, 1)); }, {"sinkhorn: ", "x0 has dimension 2 and x1 has dimension 3"});
  check_error([&] { sinkhorn(Batch<double>(0, 2), b); }, {"sinkhorn: ", "x0 has no points (N = 0)"});
  check_error([&] { sinkhorn(a, Batch<double>(0, 2)); }, {"sinkhorn: ", "x1 has no points (M = 0)"});
  check_error([&] { sinkhorn(Batch<double>(5, 0), Batch<double>(4, 0)); }, {"sinkhorn: ", "dimension 0"});
  for (const double bad : {nan, inf, -inf}) {
    Batch<double> x = a;
    x(1, 0) = bad;
    check_error([&] { sinkhorn(x, b); }, {"sinkhorn: ", "x0 row 1 column 0 is", "expected finite coordinates"});
    check_error([&] { sinkhorn(b, x); }, {"sinkhorn: ", "x1 row 1 column 0 is"});
    check_error([&] { sinkhorn(b.cast<float>(), x.cast<float>()); }, {"x1 row 1 column 0 is"});
  }
  {
    Batch<double> x = a;
    x(2, 1) = 1e200;
    check_error([&] { sinkhorn(x, b); }, {"sinkhorn: ", "too large", "overflow"});
    x(2, 1) = 1.7e308;  // the centre itself would overflow with a plain sum
    check_error([&] { sinkhorn(x, x); }, {"sinkhorn: ", "too large"});
  }

  // Weights.
  const Vector<double> wa = Vector<double>::Ones(5), wb = Vector<double>::Ones(4);
  check_error([&] { sinkhorn(a, b, Vector<double>::Ones(4), wb); }, {"sinkhorn: ", "a has 4 entries, expected 5 (one per point of x0)"});
  check_error([&] { sinkhorn(a, b, wa, Vector<double>::Ones(5)); }, {"b has 5 entries, expected 4 (one per point of x1)"});
  check_error([&] { sinkhorn(a, b, wa, Matrix<double>::Ones(2, 2)); }, {"b has shape [2, 2]; expected a vector"});
  for (const double bad : {-0.5, nan, inf}) {
    Vector<double> w = wa;
    w[1] = bad;
    check_error([&] { sinkhorn(a, b, w, wb); }, {"sinkhorn: ", "a[1] is", "expected finite non-negative weights"});
  }
  check_error([&] { sinkhorn(a, b, Vector<double>::Zero(5), wb); }, {"a sums to 0; expected a positive finite total"});
  check_error([&] { sinkhorn(a, b, wa, Vector<double>::Constant(4, 1e308)); }, {"b sums to inf"});

  // Options.
  auto with = [](auto change) {
    SinkhornOptions o;
    change(o);
    return o;
  };
  for (const double e : {0.0, -1.0, nan, inf})
    check_error([&] { sinkhorn(a, b, with([&](SinkhornOptions& o) { o.epsilon = e; })); }, {"sinkhorn: ", "epsilon is", "expected finite > 0"});
  check_error([&] { sinkhorn(a, b, with([](SinkhornOptions& o) { o.tolerance = 0.0; })); }, {"tolerance is 0; expected finite > 0"});
  check_error([&] { sinkhorn(a, b, with([](SinkhornOptions& o) { o.max_iterations = 0; })); }, {"max_iterations is 0; expected >= 1"});
  check_error([&] { sinkhorn(a, b, with([](SinkhornOptions& o) { o.epsilon_start = -1.0; })); }, {"epsilon_start is -1"});
  check_error([&] { sinkhorn(a, b, with([](SinkhornOptions& o) { o.epsilon_decay = 1.0; })); }, {"epsilon_decay is 1; expected in (0, 1)"});
  check_error([&] { sinkhorn(a, b, with([](SinkhornOptions& o) { o.stage_tolerance = 0.0; })); }, {"stage_tolerance is 0"});
  check_error([&] {
    sinkhorn(a, b, with([](SinkhornOptions& o) {
               o.relative_epsilon = false;
               o.epsilon = 1e-310;
             }));
  },
              {"sinkhorn: ", "is too small for costs up to", "cost / epsilon overflows"});

  // Results that do not belong to the clouds.
  const SinkhornResult r = sinkhorn(a, b);
  check_error([&] { sinkhorn_plan(normal_batch(6, 2, 1), b, r); }, {"sinkhorn_plan: ", "result has 5 row potentials and 5 row weights, but x0 has 6 points"});
  check_error([&] { sinkhorn_sample_targets(a, normal_batch(3, 2, 1), r, Random(1)); }, {"sinkhorn_sample_targets: ", "but x1 has 3 points"});
  check_error([&] { sinkhorn_barycentric_targets(a, b, SinkhornResult{}); }, {"sinkhorn_barycentric_targets: ", "result has 0 row potentials"});
  SinkhornResult broken = r;
  broken.epsilon = 0.0;
  check_error([&] { sinkhorn_barycentric_targets(a, b, broken); }, {"result has epsilon 0"});
  Batch<double> x = a;
  x(0, 1) = nan;
  check_error([&] { sinkhorn_sample_targets(x, b, r, Random(1)); }, {"sinkhorn_sample_targets: ", "x0 row 0 column 1 is nan"});
  check_error([&] { sinkhorn_barycentric_targets(a, normal_batch(4, 3, 1), r); }, {"x0 has dimension 2 and x1 has dimension 3"});
}
