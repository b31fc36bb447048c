#pragma once
/// \file
/// DeviceBuffer<T>: an owning, move-only array in device memory.
///
///   fort::cuda::DeviceBuffer<float> x(n * d);          // cudaMalloc; contents undefined
///   x.copy_from_host(host.data(), n * d);              // explicit host → device copy
///   x.copy_to_host(host.data(), n * d);                // explicit device → host copy
///
/// Copies are ordered on the buffer's stream (default: the legacy default stream); the
/// host-side copy functions wait for the copy to finish before returning, so the host array may
/// be reused at once. No implicit copies exist: the type cannot be copied, only moved.

#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include "fort/cuda/error.hpp"

namespace fort::cuda {

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;

  /// `n` elements on the current device, uninitialised. Throws fort::Error if cudaMalloc fails.
  explicit DeviceBuffer(std::size_t n, cudaStream_t stream = nullptr) : stream_(stream) {
    if (n == 0) return;
    void* p = nullptr;
    check(cudaMalloc(&p, n * sizeof(T)), "cuda::DeviceBuffer", detail::concat("cudaMalloc(", n * sizeof(T), " bytes)"));
    data_ = static_cast<T*>(p);
    size_ = n;
  }

  /// A device copy of a host array.
  DeviceBuffer(std::span<const T> host, cudaStream_t stream = nullptr) : DeviceBuffer(host.size(), stream) {
    copy_from_host(host.data(), host.size());
  }

  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept { swap(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    DeviceBuffer tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  ~DeviceBuffer() {
    if (data_) (void)cudaFree(data_);  // no throw from a destructor; errors surface on later calls
  }

  void swap(DeviceBuffer& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(stream_, o.stream_);
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  cudaStream_t stream() const { return stream_; }
  void set_stream(cudaStream_t s) { stream_ = s; }

  /// Copies n elements from host memory into the first n elements; waits for completion.
  void copy_from_host(const T* host, std::size_t n) {
    require_fits(n, "copy_from_host");
    if (n == 0) return;
    check(cudaMemcpyAsync(data_, host, n * sizeof(T), cudaMemcpyHostToDevice, stream_), "cuda::DeviceBuffer",
          "cudaMemcpyAsync host to device");
    check(cudaStreamSynchronize(stream_), "cuda::DeviceBuffer", "cudaStreamSynchronize");
  }

  /// Copies the first n elements to host memory; waits for completion.
  void copy_to_host(T* host, std::size_t n) const {
    require_fits(n, "copy_to_host");
    if (n == 0) return;
    check(cudaMemcpyAsync(host, data_, n * sizeof(T), cudaMemcpyDeviceToHost, stream_), "cuda::DeviceBuffer",
          "cudaMemcpyAsync device to host");
    check(cudaStreamSynchronize(stream_), "cuda::DeviceBuffer", "cudaStreamSynchronize");
  }

  /// The whole buffer as a host vector.
  std::vector<T> to_host() const {
    std::vector<T> v(size_);
    copy_to_host(v.data(), size_);
    return v;
  }

 private:
  void require_fits(std::size_t n, const char* what) const {
    detail::require(n <= size_, "cuda::DeviceBuffer", what, ": ", n, " elements do not fit in a buffer of ", size_);
  }

  T* data_ = nullptr;
  std::size_t size_ = 0;
  cudaStream_t stream_ = nullptr;
};

}  // namespace fort::cuda
