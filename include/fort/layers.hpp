#pragma once
/// \file
/// fort flow layers.
#include "fort/layers/mask.hpp"
#include "fort/layers/coupling.hpp"
#include "fort/layers/affine_coupling.hpp"
