// fort_cuda_tests: GPU tests of the CUDA backend. Without a CUDA device only the tests tagged
// [nogpu] run (error reporting without a device) and every GPU test is reported as skipped.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>

#include "fort/cuda/error.hpp"

int main(int argc, char** argv) {
  Catch::Session session;
  if (const int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
  const int devices = fort::cuda::device_count();
  if (devices == 0) {
    std::printf("fort_cuda_tests: skipped: no CUDA device (%s); GPU tests [gpu] not run, running only [nogpu]\n",
                fort::cuda::no_device_reason().c_str());
    session.configData().testsOrTags = {"[nogpu]"};
    session.useConfigData(session.configData());
  } else {
    cudaDeviceProp prop{};
    (void)cudaGetDeviceProperties(&prop, 0);
    std::printf("fort_cuda_tests: %d CUDA device(s); device 0: %s (sm_%d%d)\n", devices, prop.name, prop.major,
                prop.minor);
  }
  return session.run();
}
