#pragma once
/// \file
/// CUDA and cuBLAS error checking: every failing call throws fort::Error naming the call site
/// and carrying the CUDA error string, e.g.
///   "cuda::DeviceBuffer: cudaMalloc(4096 bytes) failed: no CUDA-capable device is detected
///    (cudaErrorNoDevice)"
/// Requires the CUDA runtime (include from a translation unit built with CUDA).

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>
#include <string_view>

#include "fort/core/error.hpp"

namespace fort::cuda {

/// Throws fort::Error(where, what + CUDA error string) unless `status` is cudaSuccess.
inline void check(cudaError_t status, std::string_view where, std::string_view what) {
  if (status == cudaSuccess) return;
  throw Error(where, detail::concat(what, " failed: ", cudaGetErrorString(status), " (", cudaGetErrorName(status),
                                    ")"));
}

/// Throws fort::Error unless `status` is CUBLAS_STATUS_SUCCESS.
inline void check(cublasStatus_t status, std::string_view where, std::string_view what) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw Error(where, detail::concat(what, " failed: ", cublasGetStatusString(status), " (cuBLAS status ",
                                    int(status), ")"));
}

/// Number of CUDA devices; 0 (never an exception) when there is no device or no driver.
inline int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return 0;
  }
  return n;
}

/// Why device_count() is 0, as the CUDA runtime puts it ("" when a device exists).
inline std::string no_device_reason() {
  int n = 0;
  const cudaError_t s = cudaGetDeviceCount(&n);
  (void)cudaGetLastError();
  if (s != cudaSuccess) return detail::concat(cudaGetErrorString(s), " (", cudaGetErrorName(s), ")");
  return n == 0 ? std::string("cudaGetDeviceCount reported 0 devices") : std::string();
}

/// Makes `device` current (throws fort::Error with the CUDA message when it cannot).
inline void set_device(int device) {
  check(cudaSetDevice(device), "cuda", detail::concat("cudaSetDevice(", device, ")"));
}

}  // namespace fort::cuda
