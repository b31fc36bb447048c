#!/usr/bin/env bash
# Side-by-side comparison of fort with PyTorch (hand-built flow), zuko, normflows, LibTorch and
# POT (docs/performance.md). Optional tool: never needed by the build, CI or the tests.
#
#   bash benchmarks/compare/run.sh [--threads 1,2] [--reps 5] [--ot 1000,5000] [--skip train,sample,ot]
#
# Creates a virtual environment (.venv-compare, gitignored; FORT_COMPARE_VENV overrides) with
# torch, zuko, normflows, POT and numpy from PyPI, builds the fort and LibTorch programs in
# build-compare/ (FORT_COMPARE_BUILD overrides) and prints a Markdown table of medians and ratios.
# The JSON with every measurement goes to build-compare/compare.json.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${FORT_COMPARE_BUILD:-$ROOT/build-compare}
VENV=${FORT_COMPARE_VENV:-$ROOT/.venv-compare}
mkdir -p "$BUILD"

# ---- Python peers ---------------------------------------------------------------------------
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY=$VENV/bin/python
PIP="$VENV/bin/pip install -q"
if ! "$PY" -c "import torch, zuko, normflows, ot, numpy" 2>/dev/null; then
  $PIP numpy pot==0.9.7.post1 typing_extensions filelock sympy networkx jinja2 fsspec
  # The torch wheel is used on the CPU only. Without its CUDA runtime dependencies it still loads
  # when the machine has a CUDA 13 toolkit (as the project's machines do) plus these few small
  # packages; otherwise fall back to the full install.
  $PIP --no-deps torch==2.15.0 nvidia-cusparselt-cu13==0.8.1 nvidia-nvshmem-cu13==3.7.2 nvidia-cufile \
    nvidia-nccl-cu13==2.30.7
  "$PY" -c "import torch" 2>/dev/null || $PIP torch==2.15.0
  $PIP --no-deps zuko==1.6.0 normflows==1.7.3
fi

# ---- fort and LibTorch programs ---------------------------------------------------------------
EIGEN=$(pkg-config --cflags eigen3 2>/dev/null || echo -I/usr/include/eigen3)
echo "building fort_compare" >&2
g++ -std=c++20 -O3 -march=native -DNDEBUG -pthread -I"$ROOT/include" $EIGEN \
  "$ROOT/benchmarks/compare/fort_compare.cpp" -o "$BUILD/fort_compare"
TORCH_DIR=$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
ABI=$("$PY" -c 'import torch; print(int(torch.compiled_with_cxx11_abi()))')
if [ ! -x "$BUILD/libtorch_flow" ] || [ "$ROOT/benchmarks/compare/libtorch_flow.cpp" -nt "$BUILD/libtorch_flow" ]; then
  echo "building libtorch_flow" >&2
  g++ -std=c++20 -O2 -DNDEBUG -D_GLIBCXX_USE_CXX11_ABI="$ABI" -I"$TORCH_DIR/include" \
    -I"$TORCH_DIR/include/torch/csrc/api/include" "$ROOT/benchmarks/compare/libtorch_flow.cpp" \
    -o "$BUILD/libtorch_flow" -L"$TORCH_DIR/lib" -Wl,-rpath,"$TORCH_DIR/lib" -ltorch -ltorch_cpu -lc10 -pthread
fi

# ---- run --------------------------------------------------------------------------------------
"$BUILD/fort_compare" export "$BUILD/export" >&2
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')" >&2
"$PY" "$ROOT/benchmarks/compare/compare.py" --fort "$BUILD/fort_compare" --libtorch "$BUILD/libtorch_flow" \
  --export "$BUILD/export" --out "$BUILD/compare.json" "$@"
