// fort_cuda_bench: GPU throughput of the CUDA backend at alanine-dipeptide size (D = 66).
//
//   fort_cuda_bench [--out FILE] [--quick]
//
// Measures, with CUDA events around device-only work (inputs already on the device):
//   - sample_and_log_prob (batched kernels + cuBLAS) at N = 65,536 and N = 200,000;
//   - the same through the host API (including the device → host copy of the results);
//   - per-thread sampling through FlowView inside a user kernel (one sample per thread);
//   - training steps (regression loss + gradient + AdamW) at batch 1,024 and 8,192.
// Flows: rational-quadratic spline couplings (8 bins) and affine couplings, random masks,
// conditioners 2 x 256 ReLU, random weights of scale 0.05 (timing does not depend on them).
// Writes a Markdown table to FILE (and stdout). Exits 2 without a CUDA device.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "fort/cuda.hpp"
#include "test_flows.hpp"

using namespace fort;

namespace {

struct Timer {
  cudaEvent_t a, b;
  Timer() {
    cuda::check(cudaEventCreate(&a), "bench", "cudaEventCreate");
    cuda::check(cudaEventCreate(&b), "bench", "cudaEventCreate");
  }
  ~Timer() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
  /// Median over `reps` runs of f (after one warm-up), in milliseconds.
  template <class F>
  double median_ms(int reps, F&& f) {
    f();
    cuda::check(cudaDeviceSynchronize(), "bench", "warm-up");
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
      cudaEventRecord(a);
      f();
      cudaEventRecord(b);
      cuda::check(cudaEventSynchronize(b), "bench", "cudaEventSynchronize");
      float ms = 0;
      cudaEventElapsedTime(&ms, a, b);
      t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  }
};

template <class Transform>
__global__ void view_sample_kernel(cuda::FlowView<Transform> v, Random rng, float* x, float* lp, float* scratch, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  lp[i] = v.sample_point(rng, std::uint64_t(i), x + std::int64_t(i) * v.dim, scratch + std::int64_t(i) * v.scratch_size);
}

std::string report;

void row(const std::string& flow, const std::string& what, long long n, double ms, const char* unit) {
  char line[512];
  std::snprintf(line, sizeof line, "| %s | %s | %lld | %.3f | %.3g %s |\n", flow.c_str(), what.c_str(), n, ms,
                double(n) / (ms * 1e-3), unit);
  std::fputs(line, stdout);
  std::fflush(stdout);
  report += line;
}

template <class Transform>
void bench_flow(const std::string& name, Transform tr, Index couplings, bool quick) {
  const Index D = 66;
  auto cpu = testing::make_coupling_flow(D, couplings, MLPConfig{256, 2, Activation::relu, false}, tr, 1, 0.05);
  cuda::GpuFlow gpu(cpu);
  Timer timer;
  const int reps = quick ? 3 : 10;
  const std::string label = name + " x" + std::to_string(couplings) + ", " + std::to_string(cpu.num_params()) + " params";
  for (Index n : {Index(65536), Index(200000)}) {
    cuda::DeviceBuffer<float> x{std::size_t(n * D)}, lp{std::size_t(n)};
    const double ms = timer.median_ms(reps, [&] { gpu.sample_and_log_prob_device(n, Random(3), 0, x.data(), lp.data()); });
    row(label, "sample_and_log_prob (device)", n, ms, "samples/s");
    const auto t0 = std::chrono::steady_clock::now();
    auto res = gpu.sample_and_log_prob(n, Random(3));
    const double host_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    row(label, "sample_and_log_prob (host API, incl. copy back)", n, host_ms, "samples/s");
    if (!res.second.allFinite()) std::printf("WARNING: non-finite log-densities\n");
    const double ms_lp = timer.median_ms(reps, [&] { gpu.log_prob_device(x.data(), n, lp.data()); });
    row(label, "log_prob (device)", n, ms_lp, "samples/s");
  }
  {
    const Index n = 200000;
    const auto view = gpu.view();
    cuda::DeviceBuffer<float> x{std::size_t(n * D)}, lp{std::size_t(n)}, scratch{std::size_t(n * view.scratch_size)};
    const double ms = timer.median_ms(reps, [&] {
      view_sample_kernel<Transform><<<unsigned((n + 127) / 128), 128>>>(view, Random(3), x.data(), lp.data(),
                                                                         scratch.data(), int(n));
    });
    row(label, "per-thread FlowView::sample_point in a user kernel", n, ms, "samples/s");
  }
  for (Index batch : {Index(1024), Index(8192)}) {
    const Batch<float> x0 = testing::normal_batch<float>(batch, D, 4), x1 = testing::normal_batch<float>(batch, D, 5);
    cuda::DeviceBuffer<float> d0(std::span<const float>(x0.data(), x0.size()));
    cuda::DeviceBuffer<float> d1(std::span<const float>(x1.data(), x1.size()));
    cuda::GpuAdam adam(gpu, AdamOptions::adamw(1e-4));
    LossOptions opt;
    opt.lambda_log_det = 1e-6;
    const int steps = quick ? 5 : 20;
    const double ms = timer.median_ms(3, [&] {
      for (int s = 0; s < steps; ++s) adam.step_device(d0.data(), d1.data(), batch, opt, 1e-4);
    });
    row(label, "training step (loss + gradient + AdamW), batch " + std::to_string(batch), steps, ms, "steps/s");
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string out;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
    else if (!std::strcmp(argv[i], "--quick")) quick = true;
  }
  if (cuda::device_count() == 0) {
    std::printf("fort_cuda_bench: skipped: no CUDA device (%s)\n", cuda::no_device_reason().c_str());
    return 2;
  }
  cudaDeviceProp prop{};
  cuda::check(cudaGetDeviceProperties(&prop, 0), "bench", "cudaGetDeviceProperties");
  report = std::string("Device: ") + prop.name + ", float32, TF32 off, CUDA events, median of runs.\n\n" +
           "| flow | measurement | N | ms | throughput |\n|---|---|---|---|---|\n";
  std::fputs(report.c_str(), stdout);
  bench_flow("spline(K=8)", RationalQuadraticTransform<float>(8, 5.0), 8, quick);
  bench_flow("affine", AffineTransform<float>(3.0), 8, quick);
  if (!out.empty()) {
    FILE* f = std::fopen(out.c_str(), "w");
    if (!f) {
      std::perror(out.c_str());
      return 1;
    }
    std::fputs(report.c_str(), f);
    std::fclose(f);
    std::printf("results written to %s\n", out.c_str());
  }
  return 0;
}
