#pragma once
/// \file
/// Affine (RealNVP) and additive (NICE) coupling layers: Coupling with the affine transforms.
///
///   AffineCoupling:   y_B = x_B ⊙ exp(s(x_A)) + t(x_A),  s soft-clamped to (−B, B)
///   AdditiveCoupling: y_B = x_B + t(x_A)                 (volume preserving)
///
/// The residual variant uses a residual conditioner: set `MLPConfig::residual = true`.

#include "fort/layers/coupling.hpp"
#include "fort/layers/transforms/affine.hpp"

namespace fort {

template <class Scalar, int Dim = Dynamic>
using AffineCoupling = Coupling<AffineTransform<Scalar>, Dim>;

template <class Scalar, int Dim = Dynamic>
using AdditiveCoupling = Coupling<AdditiveTransform<Scalar>, Dim>;

}  // namespace fort
