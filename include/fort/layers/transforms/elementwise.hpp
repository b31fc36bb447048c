#pragma once
/// \file
/// The contract of a one-dimensional monotone transform y = τ(x; θ) that a coupling layer applies
/// to each transformed coordinate, θ being that coordinate's slice of the conditioner output.
///
/// A transform supplies forward and inverse (each with log|dτ/dx| / log|dτ⁻¹/dy|), and its local
/// derivatives at x: `partials(x, θ)` returns at least dy_dx and dlog_det_dx, and
/// `pullback(x, θ, partials, a, b, dL_dθ)` adds a·∂y/∂θ + b·∂(log dy/dx)/∂θ into dL_dθ.
/// From these two the coupling derives the backward pass of *both* directions, so a new transform
/// never writes an inverse backward pass by hand:
///   forward:  dL/dx = a·y_x + b·ld_x,     dL/dθ += a·y_θ + b·ld_θ      (a = dL/dy, b = dL/dld)
///   inverse:  dL/dy = (dL/dx − b·ld_x)/y_x,  dL/dθ += −(dL/dy)·y_θ − b·ld_θ   (implicit function)
/// All element functions are FORT_HOST_DEVICE so device kernels and per-sample code share them.
///
/// Optionally (concept `RecordsPartials`) a transform also offers
///   Partials forward_partials(x, θ, y, log_det)   forward, returning the partials at x
///   Partials inverse_partials(y, θ, x, log_det)   inverse, returning the partials at the result x
/// with results identical to forward / inverse. A coupling recording a cache then stores these
/// partials and its backward pass reuses them instead of calling `partials` again: worth it when
/// the pass and the partials share costly work (the affine transform's tanh and exp).

#include <concepts>
#include <string>

#include "fort/core/config.hpp"

namespace fort {

template <class T>
concept ElementwiseTransform = requires(const T& t, typename T::Scalar v, const typename T::Scalar* theta,
                                        typename T::Scalar* dL_dtheta, typename T::Scalar& out,
                                        typename T::Scalar& log_det, const typename T::Partials& d) {
  typename T::Scalar;
  typename T::Partials;
  { t.params_per_dim() } -> std::same_as<Index>;
  { t.forward(v, theta, out, log_det) };
  { t.inverse(v, theta, out, log_det) };
  { t.partials(v, theta) } -> std::same_as<typename T::Partials>;
  { d.dy_dx } -> std::convertible_to<typename T::Scalar>;
  { d.dlog_det_dx } -> std::convertible_to<typename T::Scalar>;
  { t.pullback(v, theta, d, v, v, dL_dtheta) };
  { t.name() } -> std::convertible_to<std::string>;
  { t.signature() } -> std::convertible_to<std::string>;
};

template <class T>
concept RecordsPartials = ElementwiseTransform<T> &&
    requires(const T& t, typename T::Scalar v, const typename T::Scalar* theta, typename T::Scalar& out,
             typename T::Scalar& log_det) {
      { t.forward_partials(v, theta, out, log_det) } -> std::same_as<typename T::Partials>;
      { t.inverse_partials(v, theta, out, log_det) } -> std::same_as<typename T::Partials>;
    };

}  // namespace fort
