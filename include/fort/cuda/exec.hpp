#pragma once
/// \file
/// The CUDA executor of FlowEngine (fort/cuda/engine.hpp): one thread per element for the
/// element kernels, cuBLAS for the dense layers, everything ordered on one stream.
///
/// Must be compiled by nvcc (it defines a __global__ kernel template).
///
/// GEMMs run in float32 (cublasSgemm) or float64 (cublasDgemm) with CUBLAS_DEFAULT_MATH;
/// TF32 tensor-core math is used only when `allow_tf32` is set (it rounds GEMM inputs to 10-bit
/// mantissas, ~1e-3 relative error per product, so it is off by default).

#include <cstdint>
#include <memory>
#include <type_traits>

#include "fort/core/config.hpp"
#include "fort/cuda/buffer.hpp"
#include "fort/cuda/error.hpp"

#ifndef __CUDACC__
#error "fort/cuda/exec.hpp defines CUDA kernels: include it from a .cu file compiled by nvcc"
#endif

namespace fort::cuda {

namespace kernels {
/// Grid-stride loop calling f(e) for e in [0, n).
template <class F>
__global__ void for_each_kernel(F f, std::int64_t n) {
  const std::int64_t stride = std::int64_t(blockDim.x) * gridDim.x;
  for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) f(e);
}
}  // namespace kernels

/// Where and how GPU work runs.
struct DeviceOptions {
  int device = 0;                ///< CUDA device ordinal
  cudaStream_t stream = nullptr; ///< stream all work is ordered on (nullptr: the default stream)
  bool allow_tf32 = false;       ///< let cuBLAS use TF32 tensor cores for float GEMMs
  int threads_per_block = 256;
};

/// Executor over device memory (see HostExec in engine.hpp for the contract).
class CudaExec {
 public:
  template <class T>
  using Buffer = DeviceBuffer<T>;

  explicit CudaExec(DeviceOptions opt = {}) : opt_(opt) {
    detail::require(opt.threads_per_block >= 32 && opt.threads_per_block <= 1024, "cuda::CudaExec",
                    "threads_per_block must be in [32, 1024], got ", opt.threads_per_block);
    set_device(opt.device);
    check(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, opt.device), "cuda::CudaExec",
          "cudaDeviceGetAttribute(multiprocessor count)");
    cublasHandle_t h = nullptr;
    check(cublasCreate(&h), "cuda::CudaExec", "cublasCreate");
    handle_ = std::shared_ptr<cublasContext>(h, [](cublasHandle_t p) { (void)cublasDestroy(p); });
    check(cublasSetStream(h, opt.stream), "cuda::CudaExec", "cublasSetStream");
    check(cublasSetMathMode(h, opt.allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH), "cuda::CudaExec",
          "cublasSetMathMode");
  }

  const DeviceOptions& options() const { return opt_; }
  cudaStream_t stream() const { return opt_.stream; }
  cublasHandle_t handle() const { return handle_.get(); }

  template <class T>
  static T* data(Buffer<T>& b) { return b.data(); }
  template <class T>
  static const T* data(const Buffer<T>& b) { return b.data(); }

  /// Grows `b` to at least n elements; contents are not kept (the engine uses this for
  /// workspace only). Allocation is stream-independent; all work on it uses the exec's stream.
  template <class T>
  static void resize(Buffer<T>& b, Index n) {
    if (Index(b.size()) < n) b = Buffer<T>(std::size_t(n), b.stream());
  }
  template <class T>
  void upload(Buffer<T>& b, const T* host, Index n) const {
    if (Index(b.size()) != n) b = Buffer<T>(std::size_t(n), opt_.stream);
    b.set_stream(opt_.stream);
    b.copy_from_host(host, std::size_t(n));
  }
  template <class T>
  void download(const T* src, T* host, Index n) const {
    if (n == 0) return;
    check(cudaMemcpyAsync(host, src, std::size_t(n) * sizeof(T), cudaMemcpyDeviceToHost, opt_.stream), "cuda::CudaExec",
          "cudaMemcpyAsync device to host");
    synchronize();
  }

  template <class F>
  void for_each(Index n, const F& f) const {
    if (n <= 0) return;
    const Index tpb = opt_.threads_per_block;
    Index blocks = (n + tpb - 1) / tpb;
    const Index cap = Index(sm_count_) * 32;  // enough blocks to fill the device; the loop strides
    if (blocks > cap) blocks = cap;
    kernels::for_each_kernel<<<unsigned(blocks), unsigned(tpb), 0, opt_.stream>>>(f, std::int64_t(n));
    check(cudaGetLastError(), "cuda::CudaExec", "kernel launch");
  }

  template <class S>
  void copy(S* dst, const S* src, Index n) const {
    if (n <= 0 || dst == src) return;
    check(cudaMemcpyAsync(dst, src, std::size_t(n) * sizeof(S), cudaMemcpyDeviceToDevice, opt_.stream),
          "cuda::CudaExec", "cudaMemcpyAsync device to device");
  }
  template <class S>
  void zero(S* p, Index n) const {
    if (n <= 0) return;
    check(cudaMemsetAsync(p, 0, std::size_t(n) * sizeof(S), opt_.stream), "cuda::CudaExec", "cudaMemsetAsync");
  }
  /// Σ|p[i]| (waits for the result).
  template <class S>
  double asum(const S* p, Index n) const {
    if (n <= 0) return 0.0;
    S r = 0;
    if constexpr (std::is_same_v<S, float>)
      check(cublasSasum(handle(), int(n), p, 1, &r), "cuda::CudaExec", "cublasSasum");
    else
      check(cublasDasum(handle(), int(n), p, 1, &r), "cuda::CudaExec", "cublasDasum");
    return double(r);
  }

  template <class S>
  void gemm(bool ta, bool tb, int m, int n, int k, S alpha, const S* A, int lda, const S* B, int ldb, S beta, S* C,
            int ldc) const {
    static_assert(std::is_same_v<S, float> || std::is_same_v<S, double>, "cuBLAS GEMM needs float or double");
    if (m == 0 || n == 0) return;
    const cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    if constexpr (std::is_same_v<S, float>)
      check(cublasSgemm(handle(), oa, ob, m, n, k, &alpha, A, lda, B, ldb, &beta, C, ldc), "cuda::CudaExec",
            "cublasSgemm");
    else
      check(cublasDgemm(handle(), oa, ob, m, n, k, &alpha, A, lda, B, ldb, &beta, C, ldc), "cuda::CudaExec",
            "cublasDgemm");
  }

  template <class S>
  void gemv(bool ta, int m, int n, S alpha, const S* A, int lda, const S* x, S beta, S* y) const {
    if (m == 0 || n == 0) return;
    const cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    if constexpr (std::is_same_v<S, float>)
      check(cublasSgemv(handle(), oa, m, n, &alpha, A, lda, x, 1, &beta, y, 1), "cuda::CudaExec", "cublasSgemv");
    else
      check(cublasDgemv(handle(), oa, m, n, &alpha, A, lda, x, 1, &beta, y, 1), "cuda::CudaExec", "cublasDgemv");
  }

  void synchronize() const { check(cudaStreamSynchronize(opt_.stream), "cuda::CudaExec", "cudaStreamSynchronize"); }

 private:
  DeviceOptions opt_;
  int sm_count_ = 1;
  std::shared_ptr<cublasContext> handle_;
};

}  // namespace fort::cuda
