#!/usr/bin/env bash
# te_ring on armhf (the portable path: no unsigned __int128) and aarch64,
# cross-compiled statically with Debian's cross gcc and run under qemu-user:
# no failures, and the same checksum as the native build's (bit-identical
# arithmetic).  Skipped (77) where the cross compilers or qemu are missing.
#   ring_qemu_test.sh SOURCE_DIR NATIVE_TE_RING_CHECK
set -euo pipefail
SRC=$1
NATIVE=$2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/te-ringx.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
want=$("$NATIVE") || fail "native check failed: $want"
want_sum=$(echo "$want" | sed -n 's/.*checksum \([0-9a-f]*\).*/\1/p')
ran=0
for t in arm-linux-gnueabihf:qemu-arm:portable aarch64-linux-gnu:qemu-aarch64:__int128; do
  IFS=: read -r triple qemu path <<<"$t"
  if ! command -v "$triple-gcc" >/dev/null || ! command -v "$qemu" >/dev/null; then
    echo "skip $triple: $triple-gcc or $qemu not installed (scripts/install-deps.sh)"
    continue
  fi
  "$triple-gcc" -static -std=c11 -O2 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -I"$SRC/core" \
    "$SRC/tests/unit/ring_check.c" "$SRC/core/te_ring.c" "$SRC/core/te_error.c" -lm -o "$WORK/check-$triple" \
    || fail "$triple: te_ring does not compile"
  got=$("$qemu" "$WORK/check-$triple") || fail "$triple under $qemu: $got"
  echo "$triple: $got"
  echo "$got" | grep -q "$path path" || fail "$triple took the wrong path: $got"
  [ "$(echo "$got" | sed -n 's/.*checksum \([0-9a-f]*\).*/\1/p')" = "$want_sum" ] \
    || fail "$triple: checksum differs from the native build's ($want)"
  ran=$((ran + 1))
done
[ $ran -gt 0 ] || exit 77
echo "PASS: te_ring under qemu on $ran target(s), checksum $want_sum as native"
