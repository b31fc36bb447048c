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
/// Optionally (concept `RowTransform`) a transform also maps the m transformed coordinates of one
/// row at once, which lets it vectorise its transcendental functions across coordinates:
///   forward_row(m, x, θ, y, log_det, record)   x, y contiguous [m], θ [m × params_per_dim]
///   inverse_row(m, y, θ, x, log_det, record)
/// adding the row's log-determinant to `log_det` and, when `record` is non-null, writing the
/// partials at each coordinate's own x into record[0..m) (so a coupling's backward pass reuses
/// them instead of calling `partials`). Results agree with the element functions to rounding
/// (a few ulp: vectorised tanh/exp); couplings use the row kernels on every CPU path.

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
concept RowTransform = ElementwiseTransform<T> &&
    requires(const T& t, Index m, const typename T::Scalar* in, const typename T::Scalar* theta,
             typename T::Scalar* out, typename T::Scalar& log_det, typename T::Partials* record) {
      { t.forward_row(m, in, theta, out, log_det, record) };
      { t.inverse_row(m, in, theta, out, log_det, record) };
    };

namespace detail {

/// One row through τ (Forward) or τ⁻¹: the transform's row kernel when it has one, else the
/// element functions (and no partials recorded: returns false).
template <bool Forward, ElementwiseTransform T>
bool transform_row(const T& t, Index m, const typename T::Scalar* in, const typename T::Scalar* theta,
                   typename T::Scalar* out, typename T::Scalar& log_det, typename T::Partials* record) {
  if constexpr (RowTransform<T>) {
    if constexpr (Forward) t.forward_row(m, in, theta, out, log_det, record);
    else t.inverse_row(m, in, theta, out, log_det, record);
    return record != nullptr;
  } else {
    const Index k = t.params_per_dim();
    for (Index j = 0; j < m; ++j) {
      if constexpr (Forward) t.forward(in[j], theta + j * k, out[j], log_det);
      else t.inverse(in[j], theta + j * k, out[j], log_det);
    }
    return false;
  }
}

}  // namespace detail

}  // namespace fort
