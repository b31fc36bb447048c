#!/usr/bin/env bash
# Device check of the CUDA backend, for a machine with an NVIDIA GPU (sized for one H100/H200;
# about 2-3 minutes of build with 16 cores, well under 5 minutes in total):
#   1. configures and builds the CUDA test and benchmark executables (sm_90 only),
#   2. runs the GPU tests (fort_cuda_tests: GPU against CPU on the same weights and inputs),
#   3. runs the GPU benchmarks (fort_cuda_bench: sample_and_log_prob at N = 65,536 and 200,000,
#      D = 66; per-thread FlowView sampling; training-step throughput),
# and writes everything to one results file: $OUT/device_check.md when $OUT is set (the device
# runner's output folder), else build-cuda-check/device_check.md.
#
#   bash benchmarks/cuda/device_check.sh            # from the repository root (or anywhere)
#
# Needs: nvcc + cuBLAS (CUDA 12 or 13), cmake >= 3.25, a C++20 host compiler, Eigen 3.4 and
# Catch2 v2 headers (Debian: libeigen3-dev catch2; installed here if missing and apt is usable).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD_DIR:-build-cuda-check}
RESULT_DIR=${OUT:-$BUILD}
mkdir -p "$RESULT_DIR"
RESULT="$RESULT_DIR/device_check.md"
JOBS=${JOBS:-$(nproc)}
T0=$(date +%s)

if ! [ -f /usr/include/eigen3/Eigen/Core ] || ! [ -f /usr/include/catch2/catch.hpp ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ] && command -v sudo > /dev/null; then SUDO=sudo; fi
  echo "== installing Eigen and Catch2 headers"
  $SUDO apt-get install -y -q --no-install-recommends libeigen3-dev catch2 > /dev/null
fi
command -v nvcc > /dev/null || export PATH="/usr/local/cuda/bin:$PATH"

{
  echo "# fort CUDA device check"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- commit: $(git rev-parse --short HEAD 2> /dev/null || echo unknown)$(git diff --quiet 2> /dev/null || echo ' (with local changes)')"
  echo "- nvcc: $(nvcc --version | tail -1)"
  echo "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2> /dev/null || echo 'nvidia-smi not available')"
  echo
} > "$RESULT"

echo "== configure + build ($BUILD, sm_90)"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DFORT_ENABLE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DFORT_BUILD_EXAMPLES=OFF -DFORT_BUILD_BENCHMARKS=OFF > /dev/null
cmake --build "$BUILD" -j "$JOBS" --target fort_cuda_tests fort_cuda_bench
T1=$(date +%s)
echo "- build: $((T1 - T0)) s" >> "$RESULT"

echo "== GPU tests"
set +e
timeout 180 "./$BUILD/tests/cuda/fort_cuda_tests" > "$BUILD/fort_cuda_tests.log" 2>&1
TEST_RC=$?
set -e
cat "$BUILD/fort_cuda_tests.log"
T2=$(date +%s)
{
  echo "- GPU tests: exit code $TEST_RC, $((T2 - T1)) s"
  echo
  echo '```'
  tail -n 40 "$BUILD/fort_cuda_tests.log"
  echo '```'
  echo
  echo "## Benchmarks"
  echo
} >> "$RESULT"

echo "== GPU benchmarks"
set +e
timeout 240 "./$BUILD/benchmarks/cuda/fort_cuda_bench" --out "$BUILD/bench.md"
BENCH_RC=$?
set -e
if [ -f "$BUILD/bench.md" ]; then cat "$BUILD/bench.md" >> "$RESULT"; fi
T3=$(date +%s)
{
  echo
  echo "- benchmarks: exit code $BENCH_RC, $((T3 - T2)) s; total $((T3 - T0)) s"
} >> "$RESULT"
echo "== results in $RESULT"
[ "$TEST_RC" = 0 ] && [ "$BENCH_RC" = 0 ]
