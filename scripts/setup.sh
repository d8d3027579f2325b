#!/usr/bin/env bash
# Install the Debian packages confit needs (when root, or through sudo) and build it (Release)
# into build/. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS="cmake gcc g++ make lua5.4 liblua5.4-dev lua-lpeg lua-lpeg-dev lua-cjson libopenblas-dev
      libcjson-dev libutf8proc-dev libedit-dev"
missing=$(for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
B=${CONFIT_BUILD_DIR:-build}
cmake -S . -B "$B" ${CONFIT_CMAKE_ARGS:--DCMAKE_BUILD_TYPE=Release} >/dev/null
cmake --build "$B" -j"$(nproc)"
