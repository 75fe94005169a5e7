#!/usr/bin/env bash
# The SDKs as an outside project gets them: `cmake --install` into a
# temporary prefix, then from that prefix alone (pkg-config; the CMake
# package too) build device-sdk/examples/camera_app.c and the third-party
# plugin plugins/examples/naive_plugin.c; check that libtwinedge-device
# exports exactly the headers' TWINEDGE_API functions and does not link the
# Brotli encoder; start two real twinedge-host processes (tests/attack/lib.sh)
# that load the example plugin, and run a private inference with the
# example app: bit-identical to twinedge-infer's from the build tree.
#
#   sdk_install_test.sh BUILD_DIR SOURCE_DIR TWINEDGE_INFER
# Environment: as tests/attack/lib.sh (tests/sdk.cmake sets it).
BUILD=$1
SRC=$2
INFER=$3
# shellcheck source=../attack/lib.sh
. "$SRC/tests/attack/lib.sh"

PREFIX=$WORK/prefix
cmake --install "$BUILD" --prefix "$PREFIX" >"$WORK/install.log" || fail "cmake --install: $(tail -5 "$WORK/install.log")"
LIB=$(find "$PREFIX" -name 'libtwinedge-device.so' | head -1)
[ -n "$LIB" ] || fail "no libtwinedge-device.so under $PREFIX"
LIBDIR=$(dirname "$LIB")
[ -f "$PREFIX/include/twinedge/te_plugin.h" ] || fail "te_plugin.h not installed"
for h in twinedge_device.h twinedge_net.h twinedge_version.h; do
  [ -f "$PREFIX/include/$h" ] || fail "$h not installed"
done
# the installed headers include nothing of the tree's
if grep -n '#include "te_\|#include <te_' "$PREFIX"/include/twinedge_*.h; then fail "internal include in a public header"; fi

# exports: the TWINEDGE_API declarations of the installed headers, nothing else
want=$(sed -n 's/^TWINEDGE_API[^(]*[ *]\([a-z_0-9]*\)(.*/\1/p' "$PREFIX"/include/twinedge_*.h | sort)
got=$(nm -D --defined-only "$LIB" | awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }' | sort)
[ -n "$want" ] && [ "$want" = "$got" ] || fail "exported symbols differ from the headers' API:
$(diff <(echo "$want") <(echo "$got"))"
others=$(nm -D --defined-only "$LIB" | awk '$2 != "T" && $2 != "A"')
[ -z "$others" ] || fail "libtwinedge-device exports data or other symbols: $others"
if readelf -d "$LIB" | grep -q 'NEEDED.*brotlienc'; then fail "libtwinedge-device links the Brotli encoder"; fi
if nm -D --undefined-only "$LIB" | grep -q BrotliEncoder; then fail "libtwinedge-device calls the Brotli encoder"; fi

# from the prefix alone: pkg-config ...
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig
CFLAGS=(-std=c11 -Wall -Wextra -Werror -O2)
# a sanitizer build's library needs its runtime first in the app too
if readelf -d "$LIB" | grep -q 'NEEDED.*libasan'; then CFLAGS+=(-fsanitize=address,undefined); fi
# shellcheck disable=SC2046  # pkg-config's words
cc "${CFLAGS[@]}" "$SRC/device-sdk/examples/camera_app.c" $(pkg-config --cflags --libs twinedge-device) \
  -Wl,-rpath,"$LIBDIR" -o "$WORK/camera-app" || fail "camera_app.c does not build with pkg-config twinedge-device"
# shellcheck disable=SC2046
cc "${CFLAGS[@]}" -shared -fPIC -fvisibility=hidden "$SRC/plugins/examples/naive_plugin.c" \
  $(pkg-config --cflags twinedge-plugin) -o "$WORK/libtwinedge-plugin-naive.so" \
  || fail "naive_plugin.c does not build with pkg-config twinedge-plugin"
# ... and find_package(twinedge)
for ex in device-sdk/examples plugins/examples; do
  b=$WORK/cmake-$(echo "$ex" | tr / -)
  { cmake -S "$SRC/$ex" -B "$b" -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_C_FLAGS="${CFLAGS[*]}" \
    && cmake --build "$b"; } >"$WORK/cmake.log" 2>&1 || fail "$ex with find_package(twinedge): $(tail -20 "$WORK/cmake.log")"
done
rc=0; "$WORK/cmake-device-sdk-examples/camera_app" 2>/dev/null || rc=$?
[ $rc = 2 ] || fail "camera_app (CMake build) did not run (status $rc, want 2: usage)"

# real hosts with the third-party plugin
ATT_PLUGIN=$WORK/libtwinedge-plugin-naive.so
att_start
grep -q "plugin $ATT_PLUGIN" "$WORK/host-a.log" && grep -q "plugin $ATT_PLUGIN" "$WORK/host-b.log" \
  || fail "the hosts did not load the example plugin: $(cat "$WORK/host-a.log")"
# its line through the host's services (te_plugin_host.log)
grep -q "info plugin naive: ready" "$WORK/host-a.log" || fail "no log line from the plugin: $(cat "$WORK/host-a.log")"
att_provision cam
IN=$TE_TEST_DATA/lenet5.input.npy
"$WORK/camera-app" "$WORK/cam" "$EDGE_A" "$EDGE_B" "$IN" "$WORK/app.npy" >"$WORK/app.out" 2>"$WORK/app.err" \
  || fail "the example app (installed SDK) failed: $(cat "$WORK/app.err")"
grep -q "top-1: class" "$WORK/app.out" || fail "unexpected app output: $(cat "$WORK/app.out")"
att_infer "$INFER" "$WORK/cam" "$IN" "$WORK/infer.npy" relay
[ "$RC" = 0 ] || fail "twinedge-infer failed: $(cat "$WORK/infer.err")"
"$PY" - "$WORK/app.npy" "$WORK/infer.npy" <<'PY' || fail "the app's scores differ from twinedge-infer's"
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
assert a.dtype == b.dtype == np.float32, (a.dtype, b.dtype)
assert a.tobytes() == b.reshape(-1).tobytes(), (a, b)
PY
echo "PASS: installed SDKs: $(echo "$got" | wc -l) exported functions; app and twinedge-infer agree bit for bit" \
     "over hosts running the example plugin; $(cat "$WORK/app.out")"
