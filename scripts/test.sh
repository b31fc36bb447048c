#!/usr/bin/env bash
# Configure, build and run the whole test suite (Release build in ./build): the Catch2 suite and
# the `fort` command tests, through CTest. Installs the Debian packages it needs when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
need_apt=""
command -v cmake > /dev/null || need_apt="$need_apt cmake"
command -v g++ > /dev/null || need_apt="$need_apt g++"
command -v make > /dev/null || need_apt="$need_apt make"  # cmake only recommends it
[ -f /usr/include/eigen3/Eigen/Core ] || need_apt="$need_apt libeigen3-dev"
[ -f /usr/include/catch2/catch.hpp ] || need_apt="$need_apt catch2"
if [ -n "$need_apt" ]; then
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO=sudo
  echo "== installing:$need_apt"
  $SUDO apt-get update -q > /dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need_apt > /dev/null
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DFORT_BUILD_TESTS=ON > /dev/null
cmake --build build -j "${JOBS:-2}" --target fort_tests fort_cli
ctest --test-dir build --output-on-failure
