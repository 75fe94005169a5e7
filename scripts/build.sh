#!/usr/bin/env bash
# Configure and build twinedge into ./build (extra arguments go to cmake).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${TE_BUILD_DIR:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
