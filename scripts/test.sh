#!/usr/bin/env bash
# Build confit (installing its Debian packages first when missing) and run every test:
# ctest is the one entry point.
#   CONFIT_BUILD_DIR   build folder (default build)
#   CONFIT_CMAKE_ARGS  extra cmake arguments (default -DCMAKE_BUILD_TYPE=Release)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
B=${CONFIT_BUILD_DIR:-build}
ctest --test-dir "$B" --output-on-failure -j"$(nproc)"
