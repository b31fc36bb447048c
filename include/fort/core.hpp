#pragma once
/// \file
/// fort core: configuration, errors, shapes, counter-based random numbers, the layer concept.
#include "fort/core/config.hpp"
#include "fort/core/error.hpp"
#include "fort/core/types.hpp"
#include "fort/core/random.hpp"
#include "fort/core/concepts.hpp"
