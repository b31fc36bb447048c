// The alanine-dipeptide charts of examples/alanine/molecule.hpp: round trips, and the claimed
// volume element against a numerical one.
//
// A chart q (60 numbers) plus a rigid motion (3 translations, 3 rotation angles) parametrise the
// 66 Cartesian coordinates. The Lebesgue measure in Cartesian space is |det ∂X/∂(t, ω, q)| d⁶(t, ω)
// d⁶⁰q, and with rotations generated at the identity the (t, ω) factor is the same for every
// configuration up to a constant. So log_jacobian(q) − ½ log det G(q), where G is the Gram matrix
// of the 66 columns {∂X/∂q_k (central differences), translations, infinitesimal rotations}, must
// not depend on q. A wrong Jacobian (a missing sin θ or r² factor) moves it by O(1).
#include <catch2/catch.hpp>

#include <Eigen/Dense>
#include <cmath>
#include <vector>

#include "../../examples/alanine/molecule.hpp"

namespace {

using alanine::kCart;
using alanine::kFrame;

// A plausible configuration: native.pdb is not available to the tests, so atoms are placed by the
// internal chart from bond lengths near 0.1–0.15 nm, angles near 110° and random dihedrals.
std::vector<double> random_internal_q(const fort::Random& rng) {
  std::vector<double> q(kFrame);
  q[0] = 0.146 + 0.01 * rng.normal(0);
  q[1] = 0.152 + 0.01 * rng.normal(1);
  q[2] = 1.92 + 0.1 * rng.normal(2);
  for (int n = 0; n < 19; ++n) {
    q[std::size_t(3 + 3 * n)] = 0.12 + 0.02 * rng.normal(std::uint64_t(10 + 3 * n));
    q[std::size_t(4 + 3 * n)] = 1.9 + 0.2 * rng.normal(std::uint64_t(11 + 3 * n));
    q[std::size_t(5 + 3 * n)] = 2.8 * (2 * rng.uniform(std::uint64_t(12 + 3 * n)) - 1);
  }
  return q;
}

alanine::Coordinates internal_chart(const fort::Random& rng) {
  alanine::Coordinates c;
  c.chart = alanine::Chart::internal;
  for (int n = 0; n < 19; ++n) c.offset[std::size_t(n)] = 3.0 * (2 * rng.uniform(std::uint64_t(500 + n)) - 1);
  return c;
}

// ½ log det of the Gram matrix of ∂X/∂q (central differences) and the 6 rigid-motion generators.
double log_volume(const alanine::Coordinates& c, const std::vector<double>& q) {
  Eigen::MatrixXd J(kCart, kCart);
  std::vector<double> qp = q, qm = q, xp(kCart), xm(kCart), x(kCart);
  const double h = 1e-6;
  for (fort::Index k = 0; k < kFrame; ++k) {
    qp = q;
    qm = q;
    qp[std::size_t(k)] += h;
    qm[std::size_t(k)] -= h;
    c.from_q(qp.data(), xp.data());
    c.from_q(qm.data(), xm.data());
    for (fort::Index i = 0; i < kCart; ++i) J(i, k) = (xp[std::size_t(i)] - xm[std::size_t(i)]) / (2 * h);
  }
  c.from_q(q.data(), x.data());
  for (int a = 0; a < 3; ++a) {  // translations
    J.col(kFrame + a).setZero();
    for (int i = 0; i < alanine::kAtoms; ++i) J(3 * i + a, kFrame + a) = 1;
  }
  for (int a = 0; a < 3; ++a) {  // rotations about the origin: e_a × x_i
    const alanine::V3 e{double(a == 0), double(a == 1), double(a == 2)};
    for (int i = 0; i < alanine::kAtoms; ++i) {
      const alanine::V3 r = alanine::cross(e, alanine::atom(x.data(), i));
      J(3 * i, kFrame + 3 + a) = r.x;
      J(3 * i + 1, kFrame + 3 + a) = r.y;
      J(3 * i + 2, kFrame + 3 + a) = r.z;
    }
  }
  return 0.5 * std::log((J.transpose() * J).determinant());
}

}  // namespace

TEST_CASE("alanine internal chart: q -> Cartesian -> q round trip and distance invariance", "[examples][alanine]") {
  for (int s = 0; s < 20; ++s) {
    const fort::Random rng(std::uint64_t(s), 1);
    const auto chart = internal_chart(rng);
    const auto q = random_internal_q(rng);
    std::vector<double> x(kCart), q2(kFrame);
    chart.from_q(q.data(), x.data());
    REQUIRE(chart.to_q(x.data(), q2.data()));
    for (fort::Index k = 0; k < kFrame; ++k)
      CHECK(std::abs(alanine::wrap_pi(q2[std::size_t(k)] - q[std::size_t(k)])) < 1e-10);
    CHECK(std::isfinite(chart.log_jacobian(q.data())));
  }
}

TEST_CASE("alanine frame chart: Cartesian -> q -> Cartesian preserves every interatomic distance", "[examples][alanine]") {
  const fort::Random rng(7, 2);
  std::vector<double> x(kCart), q(kFrame), back(kCart);
  for (fort::Index i = 0; i < kCart; ++i) x[std::size_t(i)] = 0.3 * rng.normal(std::uint64_t(i));
  alanine::Coordinates frame;
  frame.chart = alanine::Chart::frame;
  REQUIRE(frame.to_q(x.data(), q.data()));
  frame.from_q(q.data(), back.data());
  for (int p = 0; p < alanine::kAtoms; ++p)
    for (int r = p + 1; r < alanine::kAtoms; ++r)
      CHECK(std::abs(alanine::norm(alanine::atom(x.data(), p) - alanine::atom(x.data(), r)) -
                     alanine::norm(alanine::atom(back.data(), p) - alanine::atom(back.data(), r))) < 1e-12);
}

TEST_CASE("alanine charts: log_jacobian equals the numerical volume element up to one constant", "[examples][alanine]") {
  for (const auto kind : {alanine::Chart::internal, alanine::Chart::frame}) {
    double ref = 0;
    for (int s = 0; s < 8; ++s) {
      const fort::Random rng(std::uint64_t(100 + s), 3);
      alanine::Coordinates chart = internal_chart(rng);
      std::vector<double> q = random_internal_q(rng);
      if (kind == alanine::Chart::frame) {  // the same molecule, expressed in the frame chart
        std::vector<double> x(kCart), qf(kFrame);
        chart.from_q(q.data(), x.data());
        chart.chart = alanine::Chart::frame;
        REQUIRE(chart.to_q(x.data(), qf.data()));
        q = qf;
      }
      const double diff = chart.log_jacobian(q.data()) - log_volume(chart, q);
      INFO("chart " << (kind == alanine::Chart::frame ? "frame" : "internal") << ", configuration " << s);
      if (s == 0) ref = diff;
      CHECK(std::abs(diff - ref) < 1e-5);
    }
  }
}

TEST_CASE("alanine charts: points outside the chart have log_jacobian = -inf", "[examples][alanine]") {
  const fort::Random rng(3, 4);
  const auto chart = internal_chart(rng);
  auto q = random_internal_q(rng);
  q[4] = -0.1;  // a bond angle outside (0, π)
  CHECK(chart.log_jacobian(q.data()) == -std::numeric_limits<double>::infinity());
  q = random_internal_q(rng);
  q[5] = 3.5;  // a dihedral outside [−π, π)
  CHECK(chart.log_jacobian(q.data()) == -std::numeric_limits<double>::infinity());
  q = random_internal_q(rng);
  q[0] = std::numeric_limits<double>::quiet_NaN();
  CHECK(chart.log_jacobian(q.data()) == -std::numeric_limits<double>::infinity());
}
