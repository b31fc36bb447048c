#pragma once
/// \file
/// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11).
///
/// A `Random` is a key: (seed, stream). Draw number `k` is a pure function of (seed, stream, k),
/// so results do not depend on how work is split over threads and there is no hidden state.
/// Independent sub-streams come from `child(i)`.

#include <cmath>
#include <numbers>
#include <span>

#include "fort/core/config.hpp"

namespace fort {

namespace detail {

struct PhiloxBlock {
  std::uint32_t v[4];
};

FORT_HOST_DEVICE inline PhiloxBlock philox4x32_10(std::uint32_t c0, std::uint32_t c1, std::uint32_t c2,
                                                  std::uint32_t c3, std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr std::uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = std::uint64_t(M0) * c0;
    const std::uint64_t p1 = std::uint64_t(M1) * c2;
    const std::uint32_t hi0 = std::uint32_t(p0 >> 32), lo0 = std::uint32_t(p0);
    const std::uint32_t hi1 = std::uint32_t(p1 >> 32), lo1 = std::uint32_t(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += W0;
    k1 += W1;
  }
  return {{c0, c1, c2, c3}};
}

/// SplitMix64 finaliser: used only to derive child stream ids.
FORT_HOST_DEVICE inline std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// High 64 bits of a 64x64-bit product, portably (no __int128).
FORT_HOST_DEVICE inline std::uint64_t mul_high(std::uint64_t a, std::uint64_t b) {
  const std::uint64_t a_lo = a & 0xFFFFFFFFull, a_hi = a >> 32, b_lo = b & 0xFFFFFFFFull, b_hi = b >> 32;
  const std::uint64_t lo_lo = a_lo * b_lo, hi_lo = a_hi * b_lo, lo_hi = a_lo * b_hi, hi_hi = a_hi * b_hi;
  const std::uint64_t cross = (lo_lo >> 32) + (hi_lo & 0xFFFFFFFFull) + lo_hi;
  return hi_hi + (hi_lo >> 32) + (cross >> 32);
}

/// 53 random bits to a double strictly inside (0, 1), so log() never sees 0.
FORT_HOST_DEVICE inline double open_unit(std::uint64_t bits) {
  return (double(bits >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

}  // namespace detail

/// Key of a counter-based random stream. Cheap to copy; never mutated by drawing.
class Random {
 public:
  FORT_HOST_DEVICE constexpr Random(std::uint64_t seed = 0, std::uint64_t stream = 0)
      : seed_(seed), stream_(stream) {}

  FORT_HOST_DEVICE constexpr std::uint64_t seed() const { return seed_; }
  FORT_HOST_DEVICE constexpr std::uint64_t stream() const { return stream_; }

  /// An independent stream derived from this one (for a layer, an epoch, a thread's task...).
  FORT_HOST_DEVICE Random child(std::uint64_t i) const {
    return Random(seed_, detail::mix64(stream_ * 0x9E3779B97F4A7C15ull + detail::mix64(i + 1)));
  }

  /// Four 32-bit words for counter `k`.
  FORT_HOST_DEVICE detail::PhiloxBlock block(std::uint64_t k) const {
    return detail::philox4x32_10(std::uint32_t(k), std::uint32_t(k >> 32), std::uint32_t(stream_),
                                 std::uint32_t(stream_ >> 32), std::uint32_t(seed_),
                                 std::uint32_t(seed_ >> 32));
  }

  /// Uniform draw number `k`, strictly inside (0, 1).
  FORT_HOST_DEVICE double uniform(std::uint64_t k) const {
    const auto b = block(k);
    return detail::open_unit((std::uint64_t(b.v[0]) << 32) | b.v[1]);
  }

  /// Standard normal draw number `k` (Box–Muller on counter k/2; draw k and k^1 share a pair).
  FORT_HOST_DEVICE double normal(std::uint64_t k) const {
    const auto [r, angle] = polar(k >> 1);
    return (k & 1) ? r * std::sin(angle) : r * std::cos(angle);
  }

  /// Draws 2p and 2p + 1 together (one Box–Muller pair), equal to normal(2p) and normal(2p + 1).
  FORT_HOST_DEVICE void normal_pair(std::uint64_t p, double& even, double& odd) const {
    const auto [r, angle] = polar(p);
    even = r * std::cos(angle);
    odd = r * std::sin(angle);
  }

  /// Uniform integer in [0, n) for draw number `k` (n > 0). Bias below 2^-32 for n < 2^32.
  FORT_HOST_DEVICE std::uint64_t below(std::uint64_t n, std::uint64_t k) const {
    const auto b = block(k);
    const std::uint64_t bits = (std::uint64_t(b.v[0]) << 32) | b.v[1];
    return detail::mul_high(bits, n);
  }

  /// Fills `out` with normals scaled by `scale`, using draws offset .. offset + size - 1.
  /// Whole Box–Muller pairs are computed once (same values as `normal`, half the work).
  template <class Scalar>
  void fill_normal(std::span<Scalar> out, std::uint64_t offset = 0, double scale = 1.0) const {
    fill_normal(out.data(), out.size(), offset, scale);
  }

  /// As above, for `n` values at `out` (also in device code).
  template <class Scalar>
  FORT_HOST_DEVICE void fill_normal(Scalar* out, std::size_t n, std::uint64_t offset, double scale = 1.0) const {
    std::size_t i = 0;
    if (i < n && (offset & 1)) {
      out[i] = static_cast<Scalar>(scale * normal(offset));
      ++i;
    }
    for (; i + 1 < n; i += 2) {
      double even, odd;
      normal_pair((offset + i) >> 1, even, odd);
      out[i] = static_cast<Scalar>(scale * even);
      out[i + 1] = static_cast<Scalar>(scale * odd);
    }
    if (i < n) out[i] = static_cast<Scalar>(scale * normal(offset + i));
  }

  /// Fills `out` with uniforms on (lo, hi), using draws offset .. offset + size - 1.
  template <class Scalar>
  void fill_uniform(std::span<Scalar> out, double lo, double hi, std::uint64_t offset = 0) const {
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i] = static_cast<Scalar>(lo + (hi - lo) * uniform(offset + i));
  }

 private:
  struct Polar {
    double r, angle;
  };
  /// Radius and angle of Box–Muller pair p.
  FORT_HOST_DEVICE Polar polar(std::uint64_t p) const {
    const auto b = block(p);
    const double u1 = detail::open_unit((std::uint64_t(b.v[0]) << 32) | b.v[1]);
    const double u2 = detail::open_unit((std::uint64_t(b.v[2]) << 32) | b.v[3]);
    return {std::sqrt(-2.0 * std::log(u1)), 2.0 * std::numbers::pi * u2};
  }

  std::uint64_t seed_;
  std::uint64_t stream_;
};

/// A seeded random permutation of 0..n-1 (Fisher–Yates driven by `rng`).
template <class Int>
void random_permutation(std::span<Int> out, const Random& rng) {
  const std::size_t n = out.size();
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<Int>(i);
  for (std::size_t i = n; i > 1; --i) {
    const std::size_t j = static_cast<std::size_t>(rng.below(i, i));
    std::swap(out[i - 1], out[j]);
  }
}

}  // namespace fort
