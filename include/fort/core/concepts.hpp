#pragma once
/// \file
/// The contract every flow layer (and every composite of layers) satisfies.
///
/// A layer is an *architecture*: it owns its configuration and non-trainable state, never its
/// trainable parameters. Parameters arrive as one flat span `p` of `num_params()` values, and
/// gradients are accumulated (`+=`) into a span of the same size. This makes the parameters of a
/// whole flow one contiguous vector for optimizers, files and device copies.
///
/// Direction: `forward` maps base (noise) space to data space; `inverse` maps data to noise.
/// Both *add* their log|det| of the Jacobian of the map they compute into `log_det`:
/// forward adds log|det ∂y/∂x|, inverse adds log|det ∂x/∂y|.
///
/// Training needs vector–Jacobian products in both directions. A call with a `Cache*` records
/// what the matching backward pass needs; backward receives dL/d(output) and dL/d(log_det) and
/// writes dL/d(input), accumulating parameter gradients into `dL_dp`.
///
/// Per-point functions work on one sample in raw buffers with caller-provided scratch of
/// `point_scratch_size()` scalars: no heap allocation, for use inside a simulation's own loop.

#include <concepts>
#include <string>

#include "fort/core/random.hpp"
#include "fort/core/types.hpp"

namespace fort {

template <class L>
concept FlowLayer = requires(const L& layer, Params<typename L::Scalar> p, Grads<typename L::Scalar> g,
                             ConstBatchRef<typename L::Scalar, L::Dim> in,
                             BatchRef<typename L::Scalar, L::Dim> out, VectorRef<typename L::Scalar> log_det,
                             ConstVectorRef<typename L::Scalar> dL_dlog_det, typename L::Cache& cache,
                             const typename L::Cache& recorded, const typename L::Scalar* x_point,
                             typename L::Scalar* y_point, typename L::Scalar& log_det_point,
                             typename L::Scalar* scratch, std::span<const std::int64_t> state,
                             const Random& rng, L& mutable_layer) {
  typename L::Scalar;
  typename L::Cache;
  requires std::floating_point<typename L::Scalar>;
  { L::Dim } -> std::convertible_to<int>;

  { layer.dim() } -> std::same_as<Index>;
  { layer.num_params() } -> std::same_as<Index>;
  { layer.init_params(g, rng) };

  { layer.forward(p, in, out, log_det) };
  { layer.forward(p, in, out, log_det, &cache) };
  { layer.inverse(p, in, out, log_det) };
  { layer.inverse(p, in, out, log_det, &cache) };
  { layer.backward_forward(p, recorded, in, dL_dlog_det, out, g) };
  { layer.backward_inverse(p, recorded, in, dL_dlog_det, out, g) };

  { layer.point_scratch_size() } -> std::same_as<Index>;
  { layer.forward_point(p, x_point, y_point, log_det_point, scratch) };
  { layer.inverse_point(p, x_point, y_point, log_det_point, scratch) };

  { layer.state() } -> std::same_as<State>;
  { mutable_layer.set_state(state) };
  { layer.signature() } -> std::convertible_to<std::string>;
};

/// Layers that set their parameters from data before training (ActNorm). `y` is data arriving
/// at the layer's *output* side (the data side); the layer sets `p` so that its inverse
/// normalises it.
template <class L>
concept DataInitializable = FlowLayer<L> && requires(L& layer, Grads<typename L::Scalar> p,
                                                     ConstBatchRef<typename L::Scalar, L::Dim> y) {
  { layer.initialize_from_data(p, y) };
};

}  // namespace fort
