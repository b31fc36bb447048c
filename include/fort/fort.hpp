#pragma once
/// \file
/// fort: header-only normalizing flows trained by forward-only regression (FORT).
///
/// Direction convention: *forward* maps base (noise) space to data space — the sampling
/// direction that FORT trains; *inverse* maps data to noise. Batches are [N, D] row-major,
/// log-determinants [N]; the scalar type is a template parameter (float or double).
#include "fort/core.hpp"
#include "fort/nn.hpp"
#include "fort/layers.hpp"
#include "fort/flows.hpp"
#include "fort/train.hpp"
#include "fort/targets.hpp"
#include "fort/io.hpp"
#include "fort/metrics/density.hpp"
#include "fort/metrics/importance.hpp"
#include "fort/metrics/torus.hpp"
#include "fort/metrics/wasserstein_1d.hpp"
#include "fort/data/standardize.hpp"
