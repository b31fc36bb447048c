#pragma once
/// \file
/// Shapes used across fort. Batches are `[N, D]` row-major (one sample per row); log-determinants
/// are `[N]`; trainable parameters are one flat contiguous span; non-trainable state (masks,
/// permutations, flags) is a flat vector of integers.

#include <span>
#include <vector>

#include "fort/core/config.hpp"

namespace fort {

/// A batch of samples, one per row. `Dim` is the compile-time dimension or `Dynamic`.
template <class Scalar, int Dim = Dynamic>
using Batch = Eigen::Matrix<Scalar, Eigen::Dynamic, Dim, (Dim == 1 ? Eigen::ColMajor : Eigen::RowMajor)>;  // Eigen requires column storage for one column

/// Writable view of a caller's batch (an Eigen matrix or an `Eigen::Map` over a raw buffer).
template <class Scalar, int Dim = Dynamic>
using BatchRef = Eigen::Ref<Batch<Scalar, Dim>>;

/// Read-only view of a batch. Passing a row-major matrix or map never copies.
template <class Scalar, int Dim = Dynamic>
using ConstBatchRef = Eigen::Ref<const Batch<Scalar, Dim>>;

/// One value per sample: log-determinants, log-densities, per-sample losses.
template <class Scalar>
using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

template <class Scalar>
using VectorRef = Eigen::Ref<Vector<Scalar>>;

template <class Scalar>
using ConstVectorRef = Eigen::Ref<const Vector<Scalar>>;

/// Row-major dense matrix with run-time sizes (weights, conditioner activations).
template <class Scalar>
using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Flat parameter views: layers never own parameters, they read them from a span.
template <class Scalar>
using Params = std::span<const Scalar>;

template <class Scalar>
using Grads = std::span<Scalar>;

/// Non-trainable state saved with a model (masks, permutations, initialised flags).
using State = std::vector<std::int64_t>;

namespace detail {
template <int Dim>
inline constexpr bool valid_dim = (Dim == Dynamic || Dim >= 1);
}  // namespace detail

}  // namespace fort
