#include <catch2/catch.hpp>

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "support/expect_error.hpp"
#include "fort/targets.hpp"

using namespace fort;

// Tolerances, in one place. Costs are accumulated in double by the solver and by the reference
// computations here; the only differences come from summation order and from the solver's
// centring of the point clouds.
using fort::test::check_error;

namespace {

constexpr double kCostRelTol = 1e-12;     // optimal cost vs brute force / an independent solver
constexpr double kCertificateRelTol = 1e-9;  // certificate violations relative to max |c_ij|

Batch<double> normal_batch(Index n, Index d, std::uint64_t stream, double scale = 1.0) {
  Batch<double> x(n, d);
  Random(321, stream).fill_normal(std::span<double>(x.data(), std::size_t(x.size())), 0, scale);
  return x;
}

// A two-component Gaussian mixture in the plane, modes at (±3, 0) with different shapes.
Batch<double> mixture_2d(Index n, std::uint64_t stream) {
  const Random rng(77, stream);
  Batch<double> x(n, 2);
  for (Index i = 0; i < n; ++i) {
    const double a = rng.normal(std::uint64_t(3 * i)), b = rng.normal(std::uint64_t(3 * i + 1));
    if (rng.uniform(std::uint64_t(3 * i + 2)) < 0.3) {
      x(i, 0) = -3.0 + 0.4 * a;
      x(i, 1) = 1.5 * b;
    } else {
      x(i, 0) = 3.0 + 1.0 * a;
      x(i, 1) = 0.3 * a + 0.5 * b;
    }
  }
  return x;
}

// Random anisotropic Gaussian: x = z · diag(s) · Q with scales from 0.1 to 3.
Batch<double> anisotropic(Index n, Index d, std::uint64_t stream) {
  Matrix<double> q = normal_batch(d, d, stream + 1000);
  Eigen::HouseholderQR<Matrix<double>> qr(q);
  const Matrix<double> rot = qr.householderQ();
  Eigen::VectorXd s(d);
  for (Index k = 0; k < d; ++k) s[k] = 0.1 * std::pow(30.0, double(k) / double(std::max<Index>(d - 1, 1)));
  Batch<double> z = normal_batch(n, d, stream);
  return (z * s.asDiagonal()) * rot;
}

bool is_permutation(const std::vector<Index>& p, Index n) {
  if (Index(p.size()) != n) return false;
  std::vector<char> seen(static_cast<std::size_t>(n), 0);
  for (const Index j : p) {
    if (j < 0 || j >= n || seen[std::size_t(j)]) return false;
    seen[std::size_t(j)] = 1;
  }
  return true;
}

template <class M0, class M1>
double pairing_cost(const M0& x0, const M1& x1, const std::vector<Index>& target_of) {
  double total = 0.0;
  for (Index i = 0; i < x0.rows(); ++i)
    total += (x0.row(i).template cast<double>() - x1.row(target_of[std::size_t(i)]).template cast<double>()).squaredNorm();
  return total;
}

template <class M0, class M1>
Matrix<double> cost_matrix(const M0& x0, const M1& x1) {
  Matrix<double> c(x0.rows(), x1.rows());
  for (Index i = 0; i < x0.rows(); ++i)
    for (Index j = 0; j < x1.rows(); ++j)
      c(i, j) = (x0.row(i).template cast<double>() - x1.row(j).template cast<double>()).squaredNorm();
  return c;
}

// Minimum over all n! permutations.
double brute_force_min(const Matrix<double>& c) {
  const Index n = c.rows();
  std::vector<Index> p(static_cast<std::size_t>(n));
  std::iota(p.begin(), p.end(), Index(0));
  double best = std::numeric_limits<double>::infinity();
  do {
    double s = 0.0;
    for (Index i = 0; i < n; ++i) s += c(i, p[std::size_t(i)]);
    best = std::min(best, s);
  } while (std::next_permutation(p.begin(), p.end()));
  return best;
}

double cost_tol(const Matrix<double>& c) { return kCostRelTol * double(c.rows()) * std::max(1.0, c.cwiseAbs().maxCoeff()); }

// Greedy: rows in order take their nearest unused column.
std::vector<Index> greedy_pairing(const Matrix<double>& c) {
  const Index n = c.rows();
  std::vector<Index> out(static_cast<std::size_t>(n));
  std::vector<char> used(static_cast<std::size_t>(n), 0);
  for (Index i = 0; i < n; ++i) {
    Index best = -1;
    for (Index j = 0; j < n; ++j)
      if (!used[std::size_t(j)] && (best < 0 || c(i, j) < c(i, best))) best = j;
    used[std::size_t(best)] = 1;
    out[std::size_t(i)] = best;
  }
  return out;
}

}  // namespace

TEST_CASE("linear_assignment is optimal against brute force for n <= 8", "[targets][assignment]") {
  // Kinds: continuous costs, wide-range signed costs, small integers (many ties), 0/1 costs,
  // all-equal costs, additive costs a_i + b_j (every permutation optimal), float-valued costs.
  for (int kind = 0; kind < 7; ++kind)
    for (Index n = 1; n <= 8; ++n)
      for (std::uint64_t seed = 0; seed < (n <= 6 ? 60u : 25u); ++seed) {
        const Random rng(1000 + std::uint64_t(kind), seed * 16 + std::uint64_t(n));
        Matrix<double> c(n, n);
        for (Index i = 0; i < n; ++i)
          for (Index j = 0; j < n; ++j) {
            const std::uint64_t k = std::uint64_t(i * n + j);
            switch (kind) {
              case 0: c(i, j) = rng.uniform(k); break;
              case 1: c(i, j) = -1e6 + 2e6 * rng.uniform(k); break;
              case 2: c(i, j) = double(rng.below(4, k)); break;
              case 3: c(i, j) = double(rng.below(2, k)); break;
              case 4: c(i, j) = 7.0; break;
              case 5: c(i, j) = double(rng.below(10, std::uint64_t(i))) + double(rng.below(10, std::uint64_t(100 + j))); break;
              default: c(i, j) = double(float(rng.normal(k))); break;
            }
          }
        INFO("kind " << kind << " n " << n << " seed " << seed);
        const AssignmentResult r = kind == 6 ? linear_assignment(n, [&](Index i, Index j) { return float(c(i, j)); })
                                             : linear_assignment(n, [&](Index i, Index j) { return c(i, j); });
        REQUIRE(is_permutation(r.target_of, n));
        double recomputed = 0.0;
        for (Index i = 0; i < n; ++i) recomputed += c(i, r.target_of[std::size_t(i)]);
        const double best = brute_force_min(c);
        CHECK(std::abs(r.total_cost - best) <= cost_tol(c));
        CHECK(std::abs(recomputed - best) <= cost_tol(c));
        const AssignmentCertificate cert = check_assignment_optimality(n, [&](Index i, Index j) { return c(i, j); }, r);
        CHECK(cert.holds(kCertificateRelTol));
        CHECK(cert.optimality_gap_bound <= kCertificateRelTol * cert.total_scale + 1e-300);
      }
}

TEMPLATE_TEST_CASE("ot_assignment is optimal against brute force for n <= 8", "[targets][assignment]", float, double) {
  using S = TestType;
  // Kinds: Gaussian clouds, integer grid points (ties), x1 drawn from two distinct points
  // (duplicates), x1 = x0 (identity optimal, cost 0), all points equal, clouds far from the
  // origin (offset 1e4: the solver's centring must keep the arithmetic accurate).
  for (int kind = 0; kind < 6; ++kind)
    for (Index d : {1, 2, 3})
      for (Index n = 1; n <= 8; ++n)
        for (std::uint64_t seed = 0; seed < (n <= 6 ? 16u : 6u); ++seed) {
          const Random rng(2000 + std::uint64_t(kind), seed * 64 + std::uint64_t(n * 4 + d));
          Batch<S> x0(n, d), x1(n, d);
          for (Index i = 0; i < n; ++i)
            for (Index k = 0; k < d; ++k) {
              const std::uint64_t c = std::uint64_t(4 * (i * d + k));
              switch (kind) {
                case 0: x0(i, k) = S(rng.normal(c)); x1(i, k) = S(1.5 * rng.normal(c + 1) + 0.5); break;
                case 1: x0(i, k) = S(rng.below(3, c)); x1(i, k) = S(rng.below(3, c + 1)); break;
                case 2: x0(i, k) = S(rng.normal(c)); x1(i, k) = S(rng.below(2, std::uint64_t(i) + 999) == 0 ? 1.0 : -2.0); break;
                case 3: x0(i, k) = S(rng.normal(c)); x1(i, k) = x0(i, k); break;
                case 4: x0(i, k) = S(0.25); x1(i, k) = S(0.25); break;
                default: x0(i, k) = S(1e4 + rng.normal(c)); x1(i, k) = S(1e4 + rng.normal(c + 1)); break;
              }
            }
          if (kind == 3) {  // shuffle x1 so the identity is not the trivial answer
            std::vector<Index> p(static_cast<std::size_t>(n));
            random_permutation(std::span<Index>(p), rng.child(5));
            const Batch<S> copy = x1;
            for (Index i = 0; i < n; ++i) x1.row(i) = copy.row(p[std::size_t(i)]);
          }
          INFO("kind " << kind << " d " << d << " n " << n << " seed " << seed);
          const AssignmentResult r = ot_assignment(x0, x1);
          REQUIRE(is_permutation(r.target_of, n));
          const Matrix<double> c = cost_matrix(x0, x1);
          const double best = brute_force_min(c);
          // Offset data: the cost of coordinates near 1e4 in float carries rounding from the
          // centring; everything else is exact to double rounding.
          const double tol = kind == 5 ? 1e-9 * double(n) * std::max(1.0, c.maxCoeff()) : cost_tol(c);
          CHECK(std::abs(pairing_cost(x0, x1, r.target_of) - best) <= tol);
          CHECK(std::abs(r.total_cost - best) <= tol);
          if (kind == 3 || kind == 4) CHECK(r.total_cost == 0.0);
          CHECK(check_assignment_optimality(x0, x1, r).holds(kCertificateRelTol));
        }
}

TEST_CASE("ot_assignment accepts fixed-size and expression inputs", "[targets][assignment]") {
  const Batch<double> a = normal_batch(7, 2, 1), b = normal_batch(7, 2, 2);
  const Batch<double, 2> a2 = a, b2 = b;
  const AssignmentResult r = ot_assignment(a, b);
  CHECK(ot_assignment(a2, b2).target_of == r.target_of);
  CHECK(ot_assignment(a.cast<float>(), b.cast<float>()).target_of == r.target_of);
  const Batch<double> big = normal_batch(10, 3, 3);
  CHECK(ot_assignment(big.topLeftCorner(7, 2), b).total_cost == Approx(pairing_cost(big.topLeftCorner(7, 2), b, ot_assignment(big.topLeftCorner(7, 2), b).target_of)));
}

TEST_CASE("ot_assignment certificate holds on large problems", "[targets][assignment]") {
  struct Case {
    const char* name;
    Batch<double> x0, x1;
  };
  // Grid data: 1600 points on a 9 x 9 integer grid against a 40 x 40 grid — massive ties.
  Batch<double> g0(1600, 2), g1(1600, 2);
  for (Index i = 0; i < 1600; ++i) {
    g0(i, 0) = double((i * 7) % 9), g0(i, 1) = double((i * 13) % 9);
    g1(i, 0) = double(i % 40) / 5.0, g1(i, 1) = double(i / 40) / 5.0;
  }
  std::vector<Case> cases;
  cases.push_back({"N=2000 D=2 Gaussian -> mixture", normal_batch(2000, 2, 10), mixture_2d(2000, 11)});
  cases.push_back({"N=500 D=66 Gaussian -> anisotropic Gaussian", normal_batch(500, 66, 12), anisotropic(500, 66, 13)});
  cases.push_back({"N=1600 D=2 integer grids (ties)", g0, g1});
  for (const Case& c : cases) {
    INFO(c.name);
    const AssignmentResult r = ot_assignment(c.x0, c.x1);
    REQUIRE(is_permutation(r.target_of, c.x0.rows()));
    const AssignmentCertificate cert = check_assignment_optimality(c.x0, c.x1, r);
    INFO("relative violation " << cert.relative_violation() << ", gap bound " << cert.optimality_gap_bound
                               << ", total " << r.total_cost);
    // Dual feasibility and complementary slackness to 1e-9 of max |c_ij|; the resulting bound
    // on the distance from the optimum to 1e-9 of the total cost.
    CHECK(cert.holds(kCertificateRelTol));
    CHECK(cert.optimality_gap_bound <= 1e-9 * r.total_cost);
    CHECK(std::abs(pairing_cost(c.x0, c.x1, r.target_of) - r.total_cost) <= 1e-12 * r.total_cost);
  }
}

TEST_CASE("ot_assignment agrees with the general solver and with sorting in 1-D", "[targets][assignment]") {
  SECTION("point-cloud solver (multiscale warm start) vs linear_assignment on the cost matrix") {
    // N >= 1024 takes the warm-started path in ot_assignment; linear_assignment never does.
    for (std::uint64_t seed : {1u}) {
      const Batch<double> x0 = normal_batch(1100, 2, 20 + seed), x1 = mixture_2d(1100, 30 + seed);
      const Matrix<double> c = cost_matrix(x0, x1);
      const AssignmentResult a = ot_assignment(x0, x1);
      const AssignmentResult b = linear_assignment(1100, [&](Index i, Index j) { return c(i, j); });
      CHECK(std::abs(a.total_cost - b.total_cost) <= 1e-12 * b.total_cost);
    }
  }
  SECTION("D = 1: the optimal pairing matches sorted order") {
    for (Index n : {100, 1200}) {  // 1-D is the solver's hardest case: long augmenting paths
      const Batch<double> x0 = normal_batch(n, 1, 40), x1 = mixture_2d(n, 41).col(0);
      std::vector<double> s0(x0.data(), x0.data() + n), s1(x1.data(), x1.data() + n);
      std::sort(s0.begin(), s0.end());
      std::sort(s1.begin(), s1.end());
      double sorted = 0.0;
      for (Index i = 0; i < n; ++i) sorted += (s0[std::size_t(i)] - s1[std::size_t(i)]) * (s0[std::size_t(i)] - s1[std::size_t(i)]);
      const AssignmentResult r = ot_assignment(x0, x1);
      CHECK(std::abs(r.total_cost - sorted) <= 1e-12 * sorted);
      // And the pairing is monotone.
      std::vector<Index> order(static_cast<std::size_t>(n));
      std::iota(order.begin(), order.end(), Index(0));
      std::sort(order.begin(), order.end(), [&](Index a, Index b) { return x0(a, 0) < x0(b, 0); });
      bool monotone = true;
      for (Index k = 1; k < n; ++k)
        monotone = monotone && x1(r.target_of[std::size_t(order[std::size_t(k - 1)])], 0) <= x1(r.target_of[std::size_t(order[std::size_t(k)])], 0);
      CHECK(monotone);
    }
  }
}

TEST_CASE("ot_assignment never costs more than a random or a greedy pairing", "[targets][assignment]") {
  for (Index d : {2, 10}) {
    const Index n = 300;
    const Batch<double> x0 = normal_batch(n, d, 50), x1 = anisotropic(n, d, 51);
    const Matrix<double> c = cost_matrix(x0, x1);
    const AssignmentResult r = ot_assignment(x0, x1);
    const double exact = r.total_cost;
    const double greedy = pairing_cost(x0, x1, greedy_pairing(c));
    INFO("D " << d << " exact " << exact << " greedy " << greedy);
    CHECK(exact <= greedy * (1 + 1e-12));
    CHECK(exact < greedy);  // greedy is not optimal on such data
    for (std::uint64_t seed = 0; seed < 10; ++seed) {
      std::vector<Index> p(static_cast<std::size_t>(n));
      random_permutation(std::span<Index>(p), Random(60, seed));
      CHECK(exact < pairing_cost(x0, x1, p));
    }
  }
}

TEST_CASE("OT pairs between Gaussians approximate the analytic OT map", "[targets][assignment]") {
  // x0 ~ N(0, I), x1 ~ N(b, Σ) sampled independently. The OT map is T(x) = b + Σ^{1/2} x.
  Eigen::Matrix2d l;
  l << 2.0, 0.0, 1.2, 0.5;
  const Eigen::Matrix2d sigma = l * l.transpose();
  const Eigen::Matrix2d root = Eigen::SelfAdjointEigenSolver<Eigen::Matrix2d>(sigma).operatorSqrt();
  const Eigen::RowVector2d b(3.0, -1.0);
  auto relative_msd = [&](Index n, std::uint64_t seed) {
    const Batch<double> x0 = normal_batch(n, 2, 70 + 2 * seed);
    const Batch<double> x1 = (normal_batch(n, 2, 71 + 2 * seed) * l.transpose()).rowwise() + b;
    const AssignmentResult r = ot_assignment(x0, x1);
    double msd = 0.0;
    for (Index i = 0; i < n; ++i) msd += (x1.row(r.target_of[std::size_t(i)]) - (b + x0.row(i) * root)).squaredNorm();
    return msd / double(n) / sigma.trace();  // relative to the data variance
  };
  const double small = relative_msd(500, 0), large = relative_msd(4000, 0);
  INFO("relative MSD at N=500: " << small << ", at N=4000: " << large);
  // Measured: about 0.02-0.05 at N = 500 and 0.003-0.005 at N = 4000 (decays roughly like 1/N).
  CHECK(small < 0.1);
  CHECK(large < 0.01);
  CHECK(large < 0.4 * small);
}

TEST_CASE("ot_assignment is deterministic and equivariant", "[targets][assignment]") {
  SECTION("same input, same result, also with ties everywhere") {
    Batch<double> tied = Batch<double>::Zero(1100, 2);
    for (Index i = 0; i < 1100; ++i) tied(i, 0) = double(i % 3);
    for (const auto& [x0, x1] : {std::pair{normal_batch(1100, 2, 80), mixture_2d(1100, 81)}, std::pair{tied, Batch<double>(tied.colwise().reverse())}}) {
      const AssignmentResult a = ot_assignment(x0, x1), b = ot_assignment(x0, x1);
      CHECK(a.target_of == b.target_of);
      CHECK(a.total_cost == b.total_cost);
      CHECK(a.u == b.u);
      CHECK(a.v == b.v);
    }
  }
  SECTION("permuting x1 permutes the answer (unique optimum)") {
    for (Index n : {200, 1500}) {
      const Batch<double> x0 = normal_batch(n, 3, 82), x1 = anisotropic(n, 3, 83);
      std::vector<Index> pi(static_cast<std::size_t>(n));
      random_permutation(std::span<Index>(pi), Random(84));
      Batch<double> y1(n, 3);  // y1_k = x1_π(k)
      for (Index k = 0; k < n; ++k) y1.row(k) = x1.row(pi[std::size_t(k)]);
      const AssignmentResult a = ot_assignment(x0, x1), b = ot_assignment(x0, y1);
      bool same = true;
      for (Index i = 0; i < n; ++i) same = same && pi[std::size_t(b.target_of[std::size_t(i)])] == a.target_of[std::size_t(i)];
      CHECK(same);
      CHECK(b.total_cost == Approx(a.total_cost).epsilon(1e-12));
    }
  }
}

TEST_CASE("minibatch_ot_assignment", "[targets][assignment]") {
  const Index n = 700;
  const Batch<double> x0 = normal_batch(n, 2, 90), x1 = mixture_2d(n, 91);
  const AssignmentResult exact = ot_assignment(x0, x1);
  for (Index batch : {1, 64, 100, 333}) {
    INFO("batch " << batch);
    const AssignmentResult m = minibatch_ot_assignment(x0, x1, batch, Random(5));
    REQUIRE(is_permutation(m.target_of, n));
    CHECK(m.u.empty());
    CHECK(m.v.empty());
    CHECK(std::abs(m.total_cost - pairing_cost(x0, x1, m.target_of)) <= 1e-12 * m.total_cost);
    CHECK(m.total_cost >= exact.total_cost * (1 - 1e-12));
    CHECK(m.total_cost > exact.total_cost);
    const AssignmentResult again = minibatch_ot_assignment(x0, x1, batch, Random(5));
    CHECK(again.target_of == m.target_of);
    CHECK(again.total_cost == m.total_cost);
    CHECK(minibatch_ot_assignment(x0, x1, batch, Random(6)).target_of != m.target_of);
  }
  // Larger blocks are closer to the optimum.
  CHECK(minibatch_ot_assignment(x0, x1, 350, Random(5)).total_cost < minibatch_ot_assignment(x0, x1, 20, Random(5)).total_cost);
  for (Index batch : {n, n + 1, 10 * n}) {
    const AssignmentResult m = minibatch_ot_assignment(x0, x1, batch, Random(7));
    CHECK(m.target_of == exact.target_of);  // continuous data: the optimum is unique
    CHECK(m.total_cost == Approx(exact.total_cost).epsilon(1e-12));
  }
  // Float input.
  const Batch<float> f0 = x0.cast<float>(), f1 = x1.cast<float>();
  const AssignmentResult mf = minibatch_ot_assignment(f0, f1, 128, Random(5));
  CHECK(is_permutation(mf.target_of, n));
  CHECK(mf.total_cost >= ot_assignment(f0, f1).total_cost * (1 - 1e-12));
}

TEST_CASE("check_assignment_optimality detects wrong certificates", "[targets][assignment]") {
  const Batch<double> x0 = normal_batch(50, 2, 100), x1 = mixture_2d(50, 101);
  const AssignmentResult r = ot_assignment(x0, x1);
  REQUIRE(check_assignment_optimality(x0, x1, r).holds());
  AssignmentResult swapped = r;  // a non-optimal permutation with the old potentials
  std::swap(swapped.target_of[0], swapped.target_of[1]);
  swapped.total_cost = pairing_cost(x0, x1, swapped.target_of);
  const AssignmentCertificate c1 = check_assignment_optimality(x0, x1, swapped);
  CHECK_FALSE(c1.holds());
  CHECK(c1.max_slackness_violation > 1e-6);
  CHECK(c1.optimality_gap_bound >= swapped.total_cost - r.total_cost - 1e-9);
  AssignmentResult raised = r;  // dual infeasible potentials
  raised.v[3] += 1.0;
  CHECK(check_assignment_optimality(x0, x1, raised).max_dual_violation >= 1.0 - 1e-9);
  CHECK_FALSE(check_assignment_optimality(x0, x1, raised).holds());
  AssignmentResult miscounted = r;  // wrong total
  miscounted.total_cost += 1.0;
  CHECK(check_assignment_optimality(x0, x1, miscounted).total_cost_error == Approx(1.0));
  CHECK_FALSE(check_assignment_optimality(x0, x1, miscounted).holds());
}

TEST_CASE("assignment functions reject bad input", "[targets][assignment][errors]") {
  const Batch<double> a = normal_batch(5, 2, 110), b = normal_batch(5, 2, 111);
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();

  check_error([&] { ot_assignment(a, normal_batch(6, 2, 1)); },
              {"ot_assignment: ", "x0 has 5 points and x1 has 6", "equal sizes", "Sinkhorn"});
  check_error([&] { ot_assignment(a, normal_batch(5, 3, 1)); },
              {"ot_assignment: ", "x0 has dimension 2 and x1 has dimension 3"});
  check_error([&] { ot_assignment(Batch<double>(0, 2), Batch<double>(0, 2)); }, {"ot_assignment: ", "N = 0"});
  check_error([&] { ot_assignment(Batch<double>(3, 0), Batch<double>(3, 0)); }, {"ot_assignment: ", "dimension 0"});
  for (const double bad : {nan, inf, -inf}) {
    Batch<double> x = a;
    x(3, 1) = bad;
    check_error([&] { ot_assignment(x, b); }, {"ot_assignment: ", "x0 row 3 column 1 is", "expected finite"});
    check_error([&] { ot_assignment(b, x); }, {"ot_assignment: ", "x1 row 3 column 1 is", "expected finite"});
    Batch<float> xf = x.cast<float>();
    check_error([&] { ot_assignment(b.cast<float>(), xf); }, {"x1 row 3 column 1 is"});
  }
  {
    Batch<double> x = a;
    x(0, 0) = 1e200;
    check_error([&] { ot_assignment(x, b); }, {"ot_assignment: ", "too large", "overflow"});
    check_error([&] { minibatch_ot_assignment(x, b, 2, Random(1)); }, {"minibatch_ot_assignment: ", "too large"});
    check_error([&] { check_assignment_optimality(x, b, ot_assignment(a, b)); }, {"check_assignment_optimality: ", "too large"});
  }
  // Float extremes do not overflow the double arithmetic.
  {
    Batch<float> x = a.cast<float>(), y = b.cast<float>();
    x(0, 0) = std::numeric_limits<float>::max();
    y(2, 1) = -std::numeric_limits<float>::max();
    const AssignmentResult r = ot_assignment(x, y);
    CHECK(std::abs(r.total_cost - brute_force_min(cost_matrix(x, y))) <= 1e-12 * r.total_cost);
  }

  // General costs.
  check_error([&] { linear_assignment(0, [](Index, Index) { return 0.0; }); }, {"linear_assignment: ", "n = 0"});
  check_error([&] { linear_assignment(-2, [](Index, Index) { return 0.0; }); }, {"linear_assignment: ", "n = -2"});
  check_error([&] { linear_assignment(3, [&](Index i, Index j) { return i == 1 && j == 2 ? nan : 1.0; }); },
              {"linear_assignment: ", "cost(1, 2) is nan", "expected a finite cost"});
  check_error([&] { linear_assignment(3, [&](Index i, Index j) { return i == 2 && j == 0 ? -inf : 1.0; }); },
              {"cost(2, 0) is -inf"});
  check_error([&] { linear_assignment(1, [&](Index, Index) { return inf; }); }, {"cost(0, 0) is inf"});
  check_error([&] { linear_assignment(3, [](Index i, Index j) { return i == j ? 1e308 : 1.0; }); },
              {"linear_assignment: ", "costs are too large"});
  check_error([&] { check_assignment_optimality(3, [&](Index i, Index) { return i == 2 ? nan : 1.0; }, linear_assignment(3, [](Index, Index) { return 1.0; })); },
              {"check_assignment_optimality: ", "cost(2, 0) is nan"});

  // Minibatch.
  for (const Index bad : {Index(0), Index(-3)})
    check_error([&] { minibatch_ot_assignment(a, b, bad, Random(1)); },
                {"minibatch_ot_assignment: ", "batch_size is " + std::to_string(bad), "expected >= 1"});
  check_error([&] { minibatch_ot_assignment(a, normal_batch(4, 2, 1), 2, Random(1)); },
              {"minibatch_ot_assignment: ", "x0 has 5 points and x1 has 4"});
  {
    Batch<double> x = b;
    x(4, 0) = nan;
    check_error([&] { minibatch_ot_assignment(a, x, 2, Random(1)); }, {"minibatch_ot_assignment: ", "x1 row 4 column 0 is nan"});
  }

  // Certificates of malformed results.
  const AssignmentResult good = ot_assignment(a, b);
  AssignmentResult r = good;
  r.target_of[1] = r.target_of[0];
  check_error([&] { check_assignment_optimality(a, b, r); }, {"check_assignment_optimality: ", "not a permutation"});
  r = good;
  r.target_of.pop_back();
  check_error([&] { check_assignment_optimality(a, b, r); }, {"has 4 assignments, expected 5"});
  check_error([&] { check_assignment_optimality(a, b, minibatch_ot_assignment(a, b, 2, Random(1))); },
              {"potentials", "minibatch results carry no potentials"});
  check_error([&] { check_assignment_optimality(a, normal_batch(6, 2, 1), good); }, {"check_assignment_optimality: ", "x1 has 6"});
}
