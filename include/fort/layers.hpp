#pragma once
/// \file
/// fort flow layers.
#include "fort/layers/mask.hpp"
#include "fort/layers/coupling.hpp"
#include "fort/layers/affine_coupling.hpp"
#include "fort/layers/spline_coupling.hpp"
#include "fort/layers/actnorm.hpp"
#include "fort/layers/lu_linear.hpp"
#include "fort/layers/permutation.hpp"
