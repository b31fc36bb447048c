#pragma once
// Two-dimensional toy distributions for the `fort data` subcommand (FFJORD-style scales).
// Every draw comes from fort::Random keyed by (seed, point index), so a data set is a pure
// function of (name, n, seed).
#include <fort/core.hpp>

#include <cmath>
#include <numbers>
#include <string>

namespace fort_cli {

inline fort::Matrix<double> toy_data(const std::string& name, fort::Index n, std::uint64_t seed) {
  using fort::Index;
  if (n < 1) throw fort::Error("fort data", "--n must be >= 1, got " + std::to_string(n));
  const fort::Random rng(seed);
  fort::Matrix<double> x(n, 2);
  const double pi = std::numbers::pi;
  for (Index i = 0; i < n; ++i) {
    const fort::Random r = rng.child(std::uint64_t(i));  // independent stream per point
    if (name == "moons") {
      const double t = pi * r.uniform(0);
      const bool upper = r.below(2, 1) == 0;
      x(i, 0) = upper ? std::cos(t) : 1.0 - std::cos(t);
      x(i, 1) = upper ? std::sin(t) : 0.5 - std::sin(t);
      x(i, 0) = 2.0 * (x(i, 0) - 0.5) + 0.1 * r.normal(4);  // block 2: normal(k) uses block k/2
      x(i, 1) = 2.0 * (x(i, 1) - 0.25) + 0.1 * r.normal(5);
    } else if (name == "8gaussians") {
      const double angle = 2.0 * pi * double(r.below(8, 0)) / 8.0;
      x(i, 0) = (4.0 * std::cos(angle) + 0.5 * r.normal(2)) / std::sqrt(2.0);
      x(i, 1) = (4.0 * std::sin(angle) + 0.5 * r.normal(3)) / std::sqrt(2.0);
    } else if (name == "checkerboard") {
      const double a = 4.0 * r.uniform(0) - 2.0;
      const double b = r.uniform(1) - 2.0 * double(r.below(2, 2));
      const double shift = double(((static_cast<long>(std::floor(a)) % 2) + 2) % 2);
      x(i, 0) = 2.0 * a;
      x(i, 1) = 2.0 * (b + shift);
    } else {
      throw fort::Error("fort data", "unknown data set '" + name + "', expected moons, 8gaussians or checkerboard");
    }
  }
  return x;
}

}  // namespace fort_cli
