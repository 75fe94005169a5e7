#!/usr/bin/env bash
# Follows the README's quickstart on a fresh clone of this repository:
#   scripts/setup.sh          (install dependencies, build, run the demo)
#   scripts/test.sh           (the test suite)
# Slow (a full build and the whole default suite); needs root for apt-get.
set -euo pipefail
SRC=$1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || command -v sudo >/dev/null || fail "the README's first command needs root (apt-get)"
git clone -q "$SRC" "$WORK/twinedge" || fail "git clone"
cd "$WORK/twinedge"
grep -q '^scripts/setup.sh' README.md || fail "README no longer shows 'scripts/setup.sh'"
grep -q '^scripts/test.sh' README.md || fail "README no longer shows 'scripts/test.sh'"
# a private cache, so the demo really trains its model from scratch here
export XDG_CACHE_HOME=$WORK/cache
scripts/setup.sh >"$WORK/setup.log" 2>&1 || { tail -40 "$WORK/setup.log"; fail "scripts/setup.sh"; }
grep -q "private predictions equal the plaintext ones" "$WORK/setup.log" || { tail -40 "$WORK/setup.log"; fail "the demo did not report"; }
scripts/test.sh >"$WORK/test.log" 2>&1 || { tail -60 "$WORK/test.log"; fail "scripts/test.sh"; }
grep -q "100% tests passed" "$WORK/test.log" || fail "the suite did not pass"
echo "readme_test: both README commands work on a fresh clone"
