#pragma once
/// \file
/// fort neural-network building blocks (conditioners).
#include "fort/nn/activation.hpp"
#include "fort/nn/mlp.hpp"
