#!/usr/bin/env bash
# Cross-build the device side (libtwinedge-device, twinedge-infer, the ring
# self-check) for 64-bit or 32-bit ARM with Debian's cross compilers, against
# a sysroot of the target's Debian packages, and run it under qemu-user.
#
#   scripts/cross-build.sh arm64|armhf [--e2e NATIVE_BUILD_DIR]
#
# The sysroot ($OUT/sysroot, OUT=build-cross-ARCH or $TE_CROSS_DIR) is made
# once: the target's packages are downloaded with a private apt state
# (lists, cache and an empty dpkg status under $OUT/apt; APT::Architecture
# set to the target) and unpacked with dpkg -x.  The machine's own apt and
# dpkg configuration are never touched: no foreign architecture is added
# (a foreign architecture made later `apt-get update`s fail while the
# mirror's index was mid-sync, and arm64/armhf -dev packages need the same
# versions as the host's to co-install).
#
# Then: te-ring-check under qemu (the portable 128-bit path on armhf,
# __int128 on arm64; same checksum as native), and with --e2e one private
# inference by the cross-built twinedge-infer under qemu against x86-64
# twinedge-host processes on loopback (from NATIVE_BUILD_DIR), compared bit
# for bit with the native twinedge-infer's.
# Needs: gcc-aarch64-linux-gnu / gcc-arm-linux-gnueabihf, qemu-user,
# protobuf-c-compiler, cmake (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
usage() { echo "usage: $0 arm64|armhf [--e2e NATIVE_BUILD_DIR]" >&2; exit 2; }
ARCH=${1:-}
case "$ARCH" in
  arm64) TRIPLE=aarch64-linux-gnu; QEMU=qemu-aarch64; RING_PATH=__int128 ;;
  armhf) TRIPLE=arm-linux-gnueabihf; QEMU=qemu-arm; RING_PATH=portable ;;
  *) usage ;;
esac
shift
NATIVE=""
if [ "${1:-}" = --e2e ]; then
  [ -n "${2:-}" ] || usage
  NATIVE=$(cd "$2" && pwd)
fi
for tool in "$TRIPLE-gcc" "$QEMU" protoc-c cmake dpkg-deb apt-get; do
  command -v "$tool" >/dev/null || { echo "cross-build: $tool not found (scripts/install-deps.sh)" >&2; exit 1; }
done
OUT=$(mkdir -p "${TE_CROSS_DIR:-build-cross-$ARCH}" && cd "${TE_CROSS_DIR:-build-cross-$ARCH}" && pwd)
SYSROOT=$OUT/sysroot
# what the device side links: libc, OpenSSL, protobuf-c, gRPC core, Brotli
# (the decoder), libpng and libjpeg (twinedge-infer's image input), cJSON
# (its report)
PKGS=(libc6-dev libssl-dev libprotobuf-c-dev libgrpc-dev libbrotli-dev libpng-dev libjpeg62-turbo-dev libcjson-dev)

if [ "$(cat "$SYSROOT/.complete" 2>/dev/null)" != "${PKGS[*]}" ]; then
  echo "== sysroot for $ARCH in $SYSROOT (private apt state in $OUT/apt) =="
  APT=$OUT/apt
  rm -rf "$SYSROOT"
  mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$SYSROOT"
  : >"$APT/status"
  opts=(-o "Dir::State=$APT" -o "Dir::State::Lists=$APT/lists" -o "Dir::State::status=$APT/status"
        -o "Dir::Cache=$APT" -o "Dir::Cache::archives=$APT/archives" -o "Dir::Cache::pkgcache="
        -o "Dir::Cache::srcpkgcache=" -o "APT::Architecture=$ARCH" -o "APT::Architectures::=$ARCH"
        -o "Debug::NoLocking=1" -o "APT::Install-Recommends=0")
  # a mirror mid-sync fails one index now and then (seen with armhf's
  # bookworm-security): try again, then go on with the indexes that came
  # (the download below fails if what it needs is missing)
  for try in 1 2 3; do
    if apt-get -q "${opts[@]}" update >"$OUT/apt.log" 2>&1; then break; fi
    echo "apt-get update (private state) failed, try $try of 3: $(grep '^E:' "$OUT/apt.log" | head -1)"
    [ "$try" = 3 ] || sleep 20
  done
  apt-get -q -y "${opts[@]}" install --download-only "${PKGS[@]}" >>"$OUT/apt.log" 2>&1 \
    || { tail -20 "$OUT/apt.log"; exit 1; }
  n=0
  for deb in "$APT"/archives/*.deb; do
    dpkg-deb -x "$deb" "$SYSROOT"
    n=$((n + 1))
  done
  # absolute symlinks (lib.so -> /lib/...) must point into the sysroot
  find "$SYSROOT" -type l -lname '/*' | while read -r l; do ln -sfn "$SYSROOT$(readlink "$l")" "$l"; done
  echo "$n packages unpacked"
  echo "${PKGS[*]}" >"$SYSROOT/.complete"
fi

echo "== device-only build for $ARCH =="
BUILD=$OUT/build
cmake -S "$SRC" -B "$BUILD" -DCMAKE_TOOLCHAIN_FILE="$SRC/cmake/toolchain-$TRIPLE.cmake" -DTE_SYSROOT="$SYSROOT" \
  -DTWINEDGE_DEVICE_ONLY=ON -DCMAKE_BUILD_TYPE=Release -DTE_WERROR=ON >"$OUT/cmake.log" 2>&1 \
  || { tail -30 "$OUT/cmake.log"; exit 1; }
cmake --build "$BUILD" -j"$(nproc)"
file "$BUILD/device-sdk/libtwinedge-device.so" "$BUILD/twinedge-infer" 2>/dev/null || true

echo "== the example app, built from the installed prefix with pkg-config =="
PREFIX=$OUT/prefix
rm -rf "$PREFIX"
cmake --install "$BUILD" --prefix "$PREFIX" >"$OUT/install.log"
PCDIR=$(dirname "$(find "$PREFIX" -name twinedge-device.pc | head -1)")
LIBDIR=$(dirname "$PCDIR")
# the prefix's own .pc (paths relative to it); the library's dependencies
# resolve in the sysroot
# shellcheck disable=SC2046  # pkg-config's words
"$TRIPLE-gcc" --sysroot="$SYSROOT" -std=c11 -O2 -Wall -Wextra -Werror "$SRC/device-sdk/examples/camera_app.c" \
  $(PKG_CONFIG_LIBDIR="$PCDIR" PKG_CONFIG_PATH="" PKG_CONFIG_SYSROOT_DIR="" pkg-config --cflags --libs twinedge-device) \
  -Wl,-rpath-link,"$SYSROOT/usr/lib/$TRIPLE" -Wl,-rpath-link,"$SYSROOT/lib/$TRIPLE" -Wl,-rpath,"$LIBDIR" \
  -o "$OUT/camera-app"
file "$OUT/camera-app" | cut -c1-120

echo "== te_ring under $QEMU =="
export QEMU_LD_PREFIX=$SYSROOT
got=$("$QEMU" "$BUILD/te-ring-check")
echo "$got"
echo "$got" | grep -q "$RING_PATH path, .* 0 failure" || { echo "cross-build: ring check failed" >&2; exit 1; }

if [ -n "$NATIVE" ]; then
  echo "== private inference: twinedge-infer ($ARCH, qemu) against x86-64 hosts =="
  export TE_HOST=$NATIVE/host/twinedge-host TE_OWNER=$NATIVE/owner/twinedge-owner
  export TE_EVIL_PLUGIN=$NATIVE/tests/libtwinedge-plugin-evil.so TE_CPU_PLUGIN=$NATIVE/plugins/libtwinedge-plugin-cpu.so
  export TE_ATTACK_BUNDLE=$NATIVE/tests/te-attack-bundle TE_TEST_DATA=${TE_TEST_DATA:-$NATIVE/testdata}
  export TWINEDGE_PLUGIN_DIR=$NATIVE/plugins
  # shellcheck source=../tests/attack/lib.sh
  . "$SRC/tests/attack/lib.sh"
  ATT_PLUGIN=$TE_CPU_PLUGIN
  att_start
  att_provision cross
  # the target's binary, run through qemu-user
  printf '#!/bin/sh\nexec %s %s "$@"\n' "$QEMU" "$BUILD/twinedge-infer" >"$WORK/infer-$ARCH"
  chmod +x "$WORK/infer-$ARCH"
  IN=$TE_TEST_DATA/lenet5.input.npy
  for mode in relay mediated; do
    att_infer "$NATIVE/tools/twinedge-infer" "$WORK/cross" "$IN" "$WORK/native-$mode.npy" $mode
    [ "$RC" = 0 ] || fail "native twinedge-infer: $(cat "$WORK/infer.err")"
    att_infer "$WORK/infer-$ARCH" "$WORK/cross" "$IN" "$WORK/$ARCH-$mode.npy" $mode
    [ "$RC" = 0 ] || fail "$ARCH twinedge-infer under $QEMU: $(cat "$WORK/infer.err")"
    cmp "$WORK/native-$mode.npy" "$WORK/$ARCH-$mode.npy" || fail "$mode: $ARCH output differs from native"
    echo "$mode: $ARCH output equals the native device's bit for bit"
  done
  # the outside app (installed SDK, pkg-config) under qemu: relay mode
  "$QEMU" "$OUT/camera-app" "$WORK/cross" "$EDGE_A" "$EDGE_B" "$IN" "$WORK/app-$ARCH.npy" >"$WORK/app.out" \
    2>"$WORK/app.err" || fail "camera app ($ARCH, installed SDK) under $QEMU: $(cat "$WORK/app.err")"
  "$PY" - "$WORK/app-$ARCH.npy" "$WORK/native-relay.npy" <<'PY' || fail "the $ARCH app's scores differ from native"
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
assert a.dtype == b.dtype == np.float32 and a.tobytes() == b.reshape(-1).tobytes(), (a, b)
PY
  echo "camera app ($ARCH, built from the installed prefix with pkg-config): $(cat "$WORK/app.out"); equals the native device's bit for bit"
fi
echo "cross-build: $ARCH done ($BUILD)"
