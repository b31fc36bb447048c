#pragma once
/// \file
/// Build-wide definitions: the host/device marker, index type and the `Dynamic` size sentinel.
///
/// Direction convention, stated once for the whole library: **forward** maps base (noise) space
/// to data space — the sampling direction that FORT trains. **inverse** maps data to noise and is
/// what maximum likelihood evaluates.

#include <Eigen/Core>
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FORT_HOST_DEVICE __host__ __device__
#else
#define FORT_HOST_DEVICE
#endif

namespace fort {

/// Signed index used for sizes and loop counters (Eigen's index type).
using Index = Eigen::Index;

/// Size sentinel for dimensions chosen at run time (same value as `Eigen::Dynamic`).
inline constexpr int Dynamic = Eigen::Dynamic;

}  // namespace fort
