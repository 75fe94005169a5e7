#!/usr/bin/env bash
# Configure and build twinedge into ./build (extra arguments go to cmake).
# Warnings are errors here (TE_WERROR), as in CI; a plain cmake build only warns.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${TE_BUILD_DIR:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTE_WERROR=ON "$@" >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
