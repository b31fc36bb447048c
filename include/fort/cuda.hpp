#pragma once
/// \file
/// The optional CUDA backend (build with FORT_ENABLE_CUDA=ON, link fort::cuda, include from a
/// .cu file compiled by nvcc). See docs/cuda.md.
///
/// fort/cuda/flow_view.hpp and fort/cuda/engine.hpp need no CUDA and may be included anywhere.

#include "fort/cuda/buffer.hpp"
#include "fort/cuda/engine.hpp"
#include "fort/cuda/error.hpp"
#include "fort/cuda/exec.hpp"
#include "fort/cuda/flow.hpp"
#include "fort/cuda/flow_view.hpp"
