#include <catch2/catch.hpp>

#include <algorithm>
#include <set>
#include <span>
#include <thread>
#include <vector>

#include "fort/core/random.hpp"

using namespace fort;

TEST_CASE("Philox4x32-10 matches the published known-answer vectors", "[core][random]") {
  // Known-answer tests from the Random123 distribution (Salmon et al. 2011), philox4x32_10.
  auto zero = detail::philox4x32_10(0, 0, 0, 0, 0, 0);
  CHECK(zero.v[0] == 0x6627e8d5u);
  CHECK(zero.v[1] == 0xe169c58du);
  CHECK(zero.v[2] == 0xbc57ac4cu);
  CHECK(zero.v[3] == 0x9b00dbd8u);
  auto ones = detail::philox4x32_10(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu);
  CHECK(ones.v[0] == 0x408f276du);
  CHECK(ones.v[1] == 0x41c83b0eu);
  CHECK(ones.v[2] == 0xa20bc7c6u);
  CHECK(ones.v[3] == 0x6d5451fdu);
  auto pi = detail::philox4x32_10(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u);
  CHECK(pi.v[0] == 0xd16cfe09u);
  CHECK(pi.v[1] == 0x94fdccebu);
  CHECK(pi.v[2] == 0x5001e420u);
  CHECK(pi.v[3] == 0x24126ea1u);
}

TEST_CASE("Random draws are pure functions of (seed, stream, index)", "[core][random]") {
  const Random a(42, 7), b(42, 7), c(43, 7), d(42, 8);
  CHECK(a.normal(12345) == b.normal(12345));
  CHECK(a.normal(12345) != c.normal(12345));
  CHECK(a.normal(12345) != d.normal(12345));
  CHECK(a.child(1).stream() != a.child(2).stream());
  CHECK(a.child(1).stream() == b.child(1).stream());

  // Filling in pieces (as threads would) gives the same numbers as filling at once.
  std::vector<double> whole(1000), parts(1000);
  a.fill_normal(std::span<double>(whole));
  std::thread t1([&] { a.fill_normal(std::span<double>(parts).subspan(0, 337), 0); });
  std::thread t2([&] { a.fill_normal(std::span<double>(parts).subspan(337), 337); });
  t1.join();
  t2.join();
  CHECK(whole == parts);
}

TEST_CASE("fill_normal (pairs computed together) equals normal(k) draw by draw", "[core][random]") {
  const Random a(3, 4);
  for (std::uint64_t offset : {0, 1, 2, 7}) {
    for (std::size_t n : {0, 1, 2, 3, 6, 9}) {
      std::vector<float> f(n, -99.0f);
      std::vector<double> d(n, -99.0);
      a.fill_normal(std::span<float>(f), offset);
      a.fill_normal(std::span<double>(d), offset, 2.5);
      for (std::size_t i = 0; i < n; ++i) {
        CHECK(f[i] == float(a.normal(offset + i)));
        CHECK(d[i] == 2.5 * a.normal(offset + i));
      }
    }
  }
  double even, odd;
  a.normal_pair(5, even, odd);
  CHECK(even == a.normal(10));
  CHECK(odd == a.normal(11));
}

TEST_CASE("Random normals and uniforms have the right moments", "[core][random]") {
  const Random rng(2026, 0);
  const int n = 200000;
  double s1 = 0, s2 = 0, s4 = 0, umin = 1, umax = 0, usum = 0;
  for (int k = 0; k < n; ++k) {
    const double z = rng.normal(std::uint64_t(k));
    s1 += z;
    s2 += z * z;
    s4 += z * z * z * z;
    const double u = rng.uniform(std::uint64_t(k));
    umin = std::min(umin, u);
    umax = std::max(umax, u);
    usum += u;
  }
  // Standard errors at n = 2e5: mean 0.0022, variance 0.0032, fourth moment 0.023.
  CHECK(std::abs(s1 / n) < 0.012);
  CHECK(std::abs(s2 / n - 1.0) < 0.016);
  CHECK(std::abs(s4 / n - 3.0) < 0.12);
  CHECK(umin > 0.0);
  CHECK(umax < 1.0);
  CHECK(std::abs(usum / n - 0.5) < 0.004);
}

TEST_CASE("random_permutation is a seeded permutation", "[core][random]") {
  std::vector<int> p(100), q(100), r(100);
  random_permutation(std::span<int>(p), Random(1));
  random_permutation(std::span<int>(q), Random(1));
  random_permutation(std::span<int>(r), Random(2));
  CHECK(p == q);
  CHECK(p != r);
  std::set<int> seen(p.begin(), p.end());
  CHECK(seen.size() == 100);
  CHECK(*seen.begin() == 0);
  CHECK(*seen.rbegin() == 99);
}

TEST_CASE("mul_high is the high word of the 128-bit product", "[core][random]") {
  CHECK(detail::mul_high(~0ull, ~0ull) == ~0ull - 1);
  CHECK(detail::mul_high(1ull << 32, 1ull << 32) == 1);
  CHECK(detail::mul_high(0x123456789ABCDEFull, 0xFEDCBA9876543210ull) == 0x121FA00AD77D742ull);
  CHECK(detail::mul_high(12345, 678) == 0);
}
