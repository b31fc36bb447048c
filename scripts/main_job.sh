#!/usr/bin/env bash
# Placeholder until the training command exists: builds and runs the quickstart.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DFORT_BUILD_EXAMPLES=ON > /dev/null
cmake --build build -j "${JOBS:-2}" --target fort_quickstart
./build/examples/fort_quickstart
