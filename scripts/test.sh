#!/usr/bin/env bash
# Configure, build and run the whole test suite (Release build in ./build).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "${JOBS:-2}" --target fort_tests fort_cli
ctest --test-dir build --output-on-failure
