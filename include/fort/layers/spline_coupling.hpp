#pragma once
/// \file
/// Rational-quadratic spline coupling layer (Durkan et al. 2019, "Neural Spline Flows"):
/// Coupling with the monotone rational-quadratic spline element transform.
///
///   y_A = x_A,   y_B[j] = RQS(x_B[j]; θ_j),   θ = MLP(x_A)
///   log|det ∂y/∂x| = Σ_j log RQS'(x_B[j]; θ_j)
///
/// Each transformed coordinate gets 3K − 1 conditioner outputs (K widths, K heights, K − 1
/// interior derivatives); the spline acts on [−B, B] and is the identity outside (linear tails).
/// Bins, bound and the minimum bin width/height/derivative are set on the transform:
///
///   SplineCoupling<double> layer(Mask::half(4), MLPConfig{64, 2, Activation::relu, false},
///                                RationalQuadraticTransform<double>(/*bins=*/8, /*bound=*/3.0));
///
/// The conditioner's last layer starts at zero, so a fresh layer is the identity. Works for a
/// fixed `Dim` or `Dynamic`; shapes as in Coupling: x, y [N, D], log_det [N].

#include "fort/layers/coupling.hpp"
#include "fort/layers/transforms/rational_quadratic.hpp"

namespace fort {

template <class Scalar, int Dim = Dynamic>
using SplineCoupling = Coupling<RationalQuadraticTransform<Scalar>, Dim>;

}  // namespace fort
