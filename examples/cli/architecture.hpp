#pragma once
// The flows the `fort` command builds, described by a small runtime record that is stored in
// the model file's metadata, so `sample` and `eval` rebuild exactly the trained architecture:
//
//   Repeat<Sequential<Coupling<Transform>, Permutation>> × layers,  base N(0, I)
//
// Transform is AffineTransform (RealNVP, soft-clamped log-scale) or RationalQuadraticTransform
// (neural spline flow on [−bound, bound]); the mask is the half split and the permutation after
// each coupling is the reversal or a seeded random permutation.
#include <fort/fort.hpp>

#include <map>
#include <string>

#include "args.hpp"

namespace fort_cli {

using Metadata = std::map<std::string, std::string>;

struct Architecture {
  std::string arch = "spline";   // spline | affine
  std::string scalar = "float";  // float | double
  fort::Index dim = 2;
  fort::Index layers = 8;
  fort::Index width = 128;
  fort::Index depth = 2;
  std::string activation = "relu";
  fort::Index bins = 8;
  double bound = 4.0;   // spline interval [−bound, bound] (standardised units)
  double clamp = 3.0;   // affine log-scale soft bound
  std::string permute = "reverse";  // reverse | random
  std::uint64_t seed = 0;           // parameter initialisation and random permutations

  static void declare(Args& a) {
    a.value("arch", "spline", "coupling transform: spline (rational-quadratic) or affine (RealNVP)")
        .value("layers", "8", "number of coupling layers")
        .value("width", "128", "conditioner MLP width")
        .value("depth", "2", "conditioner MLP hidden layers")
        .value("activation", "relu", "conditioner activation: relu, silu or tanh")
        .value("bins", "8", "spline bins K")
        .value("bound", "4", "spline interval [-B, B] in standardised units (identity outside)")
        .value("clamp", "3", "affine log-scale soft bound (0 = none)")
        .value("permute", "reverse", "permutation after each coupling: reverse or random")
        .value("precision", "float", "scalar type: float or double");
  }

  static Architecture from_args(const Args& a, fort::Index dim, std::uint64_t seed) {
    Architecture r;
    r.arch = a.choice("arch", {"spline", "affine"});
    r.scalar = a.choice("precision", {"float", "double"});
    r.dim = dim;
    r.layers = a.integer("layers", 1, 1000);
    r.width = a.integer("width", 1, 65536);
    r.depth = a.integer("depth", 0, 64);
    r.activation = a.choice("activation", {"relu", "silu", "tanh"});
    r.bins = a.integer("bins", 1, 1024);
    r.bound = a.real("bound", 1e-3, 1e6);
    r.clamp = a.real("clamp", 0, 100);
    r.permute = a.choice("permute", {"reverse", "random"});
    r.seed = seed;
    return r;
  }

  Metadata to_metadata() const {
    auto s = [](auto v) { return fort::detail::concat(v); };
    return {{"fort.arch", arch},         {"fort.scalar", scalar},   {"fort.dim", s(dim)},
            {"fort.layers", s(layers)},  {"fort.width", s(width)},  {"fort.depth", s(depth)},
            {"fort.activation", activation}, {"fort.bins", s(bins)}, {"fort.bound", real(bound)},
            {"fort.clamp", real(clamp)}, {"fort.permute", permute}, {"fort.seed", s(seed)}};
  }

  static Architecture from_metadata(const Metadata& m, const std::string& path) {
    auto get = [&](const std::string& key) {
      const auto it = m.find(key);
      if (it == m.end())
        throw fort::Error("fort", "'" + path + "' has no metadata key '" + key +
                                      "'; expected a model written by `fort train`");
      return it->second;
    };
    auto num = [&](const std::string& key) {
      const std::string v = get(key);
      try {
        std::size_t used = 0;
        const double d = std::stod(v, &used);
        if (used == v.size()) return d;
      } catch (const std::exception&) {
      }
      throw fort::Error("fort", "'" + path + "': metadata " + key + " = '" + v + "' is not a number");
    };
    Architecture r;
    r.arch = get("fort.arch");
    r.scalar = get("fort.scalar");
    r.dim = fort::Index(num("fort.dim"));
    r.layers = fort::Index(num("fort.layers"));
    r.width = fort::Index(num("fort.width"));
    r.depth = fort::Index(num("fort.depth"));
    r.activation = get("fort.activation");
    r.bins = fort::Index(num("fort.bins"));
    r.bound = num("fort.bound");
    r.clamp = num("fort.clamp");
    r.permute = get("fort.permute");
    r.seed = std::stoull(get("fort.seed"));
    return r;
  }

  static std::string real(double v) {
    std::ostringstream o;
    o.precision(17);
    o << v;
    return o.str();
  }
};

template <class S, class T>
using Block = fort::Sequential<fort::Coupling<T>, fort::Permutation<S>>;
template <class S, class T>
using CliFlow = fort::Flow<fort::StandardNormal<S>, fort::Repeat<Block<S, T>>>;

template <class S, class T>
CliFlow<S, T> build_flow(const Architecture& a, const T& transform) {
  const fort::MLPConfig mlp{a.width, a.depth, fort::parse_activation(a.activation), false};
  const fort::Random perm_rng(a.seed, /*stream=*/7);
  fort::Repeat<Block<S, T>> layers(a.layers, [&](fort::Index i) {
    auto perm = a.permute == "random" ? fort::Permutation<S>::random(a.dim, perm_rng.child(std::uint64_t(i)))
                                      : fort::Permutation<S>::reverse(a.dim);
    return Block<S, T>(fort::Coupling<T>(fort::Mask::half(a.dim), mlp, transform), std::move(perm));
  });
  return CliFlow<S, T>(fort::StandardNormal<S>(a.dim), std::move(layers), a.seed);
}

/// Calls f(flow) with the flow `a` describes, for each supported (scalar, transform) pair.
template <class F>
decltype(auto) with_flow(const Architecture& a, F&& f) {
  auto by_transform = [&]<class S>(std::type_identity<S>) -> decltype(auto) {
    if (a.arch == "affine") {
      auto flow = build_flow<S>(a, fort::AffineTransform<S>(a.clamp));
      return f(flow);
    }
    if (a.arch != "spline") throw fort::Error("fort", "unknown architecture '" + a.arch + "', expected spline or affine");
    auto flow = build_flow<S>(a, fort::RationalQuadraticTransform<S>(a.bins, a.bound));
    return f(flow);
  };
  if (a.scalar == "double") return by_transform(std::type_identity<double>{});
  if (a.scalar != "float") throw fort::Error("fort", "unknown precision '" + a.scalar + "', expected float or double");
  return by_transform(std::type_identity<float>{});
}

}  // namespace fort_cli
