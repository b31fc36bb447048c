#pragma once
/// \file
/// Files: NumPy `.npy` arrays (io/npy.hpp) and safetensors model files (io/model_file.hpp).
/// Every write is atomic (io/atomic_file.hpp).
#include "fort/io/npy.hpp"
#include "fort/io/model_file.hpp"
