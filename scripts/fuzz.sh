#!/usr/bin/env bash
# Build the libFuzzer harnesses with clang (ASan + UBSan) and run each for
# SECONDS (default 60) from the committed corpus in tests/fuzz/corpus/.
# New inputs go to a scratch directory; a crash fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
BUILD=${TE_FUZZ_BUILD_DIR:-build-fuzz}
CC=clang cmake -S . -B "$BUILD" -DTE_FUZZ=ON -DTE_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target fuzz_npy fuzz_bundle fuzz_wire fuzz_image fuzz_service twinedge-plugin-cpu
export TWINEDGE_PLUGIN_DIR=$PWD/$BUILD/plugins
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for f in npy bundle wire image service; do
  mkdir -p "$scratch/$f"
  echo "== fuzz_$f for ${SECONDS_EACH}s =="
  log="$scratch/$f.log"
  if ! "$BUILD/tests/fuzz/fuzz_$f" -max_total_time="$SECONDS_EACH" -timeout=20 -rss_limit_mb=2048 \
      -artifact_prefix="$scratch/$f-" -print_final_stats=1 "$scratch/$f" "tests/fuzz/corpus/$f" >"$log" 2>&1; then
    # the finding itself, not just libFuzzer's closing lines
    grep -E -A40 "runtime error|ERROR: |SUMMARY: " "$log" | head -n 80
    for a in "$scratch/$f"-*; do [ -f "$a" ] && { echo "input ($a):"; od -A d -t x1 "$a" | head -n 40; }; done
    exit 1
  fi
  tail -n 12 "$log"
done
echo "fuzzing: no findings"
