#pragma once
// Coupling flows with random masks and random (non-identity) parameters, shared by the host-side
// checks of the CUDA backend's code (tests/cuda/test_*_host.cpp, in fort_tests) and the GPU
// tests (tests/cuda/*.cu, in fort_cuda_tests).

#include <cstdint>
#include <vector>

#include "fort/core/random.hpp"
#include "fort/flows/distributions.hpp"
#include "fort/flows/flow.hpp"
#include "fort/flows/repeat.hpp"
#include "fort/layers/coupling.hpp"
#include "fort/layers/transforms/affine.hpp"
#include "fort/layers/transforms/rational_quadratic.hpp"

namespace fort::testing {

template <class Transform>
using CouplingFlow = Flow<StandardNormal<typename Transform::Scalar>, Repeat<Coupling<Transform>>>;

/// A mask that passes a seeded random subset of about half the coordinates (at least one of each).
inline Mask random_mask(Index d, const Random& rng) {
  std::vector<Index> perm(static_cast<std::size_t>(d));
  random_permutation(std::span<Index>(perm), rng);
  const Index n_pass = 1 + Index(rng.below(std::uint64_t(d - 1), 99));
  std::vector<bool> pass(static_cast<std::size_t>(d), false);
  for (Index i = 0; i < n_pass; ++i) pass[std::size_t(perm[std::size_t(i)])] = true;
  return Mask(std::move(pass));
}

/// `layers` couplings of `transform` on dimension d with random masks; parameters drawn
/// N(0, scale²) so that every coupling is far from the identity.
template <class Transform>
CouplingFlow<Transform> make_coupling_flow(Index d, Index layers, MLPConfig mlp, Transform transform,
                                           std::uint64_t seed, double scale) {
  using S = typename Transform::Scalar;
  const Random rng(seed);
  Repeat<Coupling<Transform>> blocks(layers, [&](Index i) {
    return Coupling<Transform>(random_mask(d, rng.child(std::uint64_t(i))), mlp, transform);
  });
  CouplingFlow<Transform> flow(StandardNormal<S>(d), std::move(blocks), seed);
  Vector<S> p(flow.num_params());
  rng.child(1000).fill_normal(std::span<S>(p.data(), std::size_t(p.size())), 0, scale);
  flow.set_params(p);
  return flow;
}

/// Standard-normal inputs scaled by `scale` (scale > 1 puts some spline inputs in the tails).
template <class S>
Batch<S> normal_batch(Index n, Index d, std::uint64_t seed, double scale = 1.0) {
  Batch<S> x(n, d);
  Random(seed).fill_normal(std::span<S>(x.data(), std::size_t(x.size())), 0, scale);
  return x;
}

}  // namespace fort::testing
