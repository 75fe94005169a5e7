#!/usr/bin/env bash
# Build (if needed) and run the default test suite.  Extra arguments go to
# ctest, e.g. `scripts/test.sh -L slow` for the slow suites.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${TE_BUILD_DIR:-build}
scripts/build.sh ${TE_CMAKE_ARGS:-}
cd "$BUILD"
if [ $# -eq 0 ]; then set -- -LE slow; fi
ctest --output-on-failure -j"$(nproc)" "$@"
