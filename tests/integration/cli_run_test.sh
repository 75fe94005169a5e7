#!/usr/bin/env bash
# twinedge-run end to end: over two real twinedge-host processes (the
# default) and in-process, the private output equals the plaintext
# fixed-point reference bit for bit, the report has its fields, and bad
# input gives clear errors (and no output).  Then the owner CLI's deploy and
# provision --edge-b, the example camera app against hosts started here, and
# twinedge-host's fallback-plugin.
set -euo pipefail
RUN=$1
DATA=$2
BUILD=$(cd "$(dirname "$RUN")/.." && pwd)
HOST=$BUILD/host/twinedge-host
OWNER=$BUILD/owner/twinedge-owner
APP=$BUILD/device-sdk/twinedge-camera-app
WORK=$(mktemp -d)
PIDS=""
cleanup() {
  for p in $PIDS; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
no_hosts_left() {  # no twinedge-host whose store lies under $1
  if pgrep -f -- "--store $1" >/dev/null; then fail "twinedge-host processes left running: $(pgrep -af -- "--store $1")"; fi
}

for mode in relay mediated; do
  # network (default): hosts kept under --workdir so we can check they are gone afterwards
  "$RUN" "$DATA/lenet5.onnx" "$DATA/lenet5.input.npy" -o "$WORK/out.npy" --mode $mode \
      --calibration "$DATA/lenet5.calib.npy" --reference "$WORK/ref.npy" --report "$WORK/report.json" \
      --workdir "$WORK/wd" >"$WORK/stdout" || fail "twinedge-run --mode $mode failed"
  cmp "$WORK/out.npy" "$WORK/ref.npy" || fail "$mode output differs from the fixed-point reference"
  no_hosts_left "$WORK/wd"
  grep -q "serving on" "$WORK/wd/hosts/host-a.log" && grep -q "stopped" "$WORK/wd/hosts/host-a.log" \
    && grep -q "stopped" "$WORK/wd/hosts/host-b.log" || fail "hosts did not serve and stop cleanly"
  # in-process: the same output bit for bit and the same byte counts
  "$RUN" "$DATA/lenet5.onnx" "$DATA/lenet5.input.npy" -o "$WORK/inproc.npy" --mode $mode \
      --calibration "$DATA/lenet5.calib.npy" --report "$WORK/inproc.json" --in-process >/dev/null \
      || fail "twinedge-run --in-process --mode $mode failed"
  cmp "$WORK/out.npy" "$WORK/inproc.npy" || fail "$mode: network output differs from --in-process"
  /usr/bin/python3 - "$WORK/report.json" "$WORK/out.npy" "$DATA/lenet5.ref.npy" "$WORK/inproc.json" <<'PY' || fail "report/output check ($mode)"
import json, sys, numpy as np
r = json.load(open(sys.argv[1]))
ip = json.load(open(sys.argv[4]))
assert r["transport"] == "grpc" and ip["transport"] == "in-process", (r["transport"], ip["transport"])
for k in ["bytes_device_up", "bytes_device_down", "bytes_edge_a_in", "bytes_edge_b_in", "bytes_edge_a_out",
          "bytes_edge_b_out"]:
    assert r[k] == ip[k], (k, r[k], ip[k])
for k in ["bytes_device_up", "bytes_device_down", "bytes_edge_a_in", "bytes_edge_b_in", "wall_s",
          "device_cpu_s", "linear_layers", "layers_checked", "outsourced_flops_fraction"]:
    assert k in r, k
assert r["linear_layers"] == 5 and r["layers_checked"] == 5, r
assert r["bytes_device_up"] > 0 and r["bytes_edge_a_in"] > 0 and r["bytes_edge_b_in"] > 0, r
assert 0.5 < r["outsourced_flops_fraction"] <= 1.0, r
out, ref = np.load(sys.argv[2]), np.load(sys.argv[3])
assert out.shape == ref.shape, (out.shape, ref.shape)
cos = float((out * ref).sum() / np.sqrt((out * out).sum() * (ref * ref).sum()))
assert cos > 0.9999, cos
PY
done

# calibrating on the input itself (no --calibration) works too
"$RUN" "$DATA/alexnet.onnx" "$DATA/alexnet.input.npy" -o "$WORK/a.npy" --reference "$WORK/a_ref.npy" >/dev/null \
  || fail "alexnet without --calibration"
cmp "$WORK/a.npy" "$WORK/a_ref.npy" || fail "alexnet output differs from the reference"

# an unsupported op: a clear error naming the op and the node, no output
rm -f "$WORK/bad.npy"
if "$RUN" "$DATA/op_unsupported.onnx" "$DATA/op_unsupported.input.npy" -o "$WORK/bad.npy" 2>"$WORK/err"; then
  fail "unsupported op accepted"
fi
grep -q "Cos" "$WORK/err" && grep -q "my_unsupported_node" "$WORK/err" || fail "error does not name op and node: $(cat "$WORK/err")"
[ ! -e "$WORK/bad.npy" ] || fail "output written despite the error"

# an input of the wrong shape
if "$RUN" "$DATA/lenet5.onnx" "$DATA/alexnet.input.npy" -o "$WORK/bad.npy" 2>"$WORK/err"; then
  fail "wrong-shape input accepted"
fi
grep -q "shape" "$WORK/err" || fail "wrong-shape error unclear: $(cat "$WORK/err")"

# a missing file
if "$RUN" "$WORK/nope.onnx" "$DATA/lenet5.input.npy" -o "$WORK/bad.npy" 2>"$WORK/err"; then
  fail "missing model accepted"
fi
grep -q "nope.onnx" "$WORK/err" || fail "missing-file error unclear: $(cat "$WORK/err")"
# the owner's CLI against real hosts: compile (with credentials), start both
# hosts, deploy, provision with --edge-b, then the example camera app
"$OWNER" compile "$DATA/lenet5.onnx" -o "$WORK/dep" --calibration "$DATA/lenet5.calib.npy" --quiet \
  || fail "owner compile"
for f in ca/ca.pem ca/ca.key hosts/a/cert.pem hosts/b/key.pem owner/cert.pem; do
  [ -s "$WORK/dep/$f" ] || fail "compile did not write $f"
done
start_host() {  # role extra-args...
  local role=$1; shift
  rm -f "$WORK/port-$role"
  "$HOST" --role "$role" --listen 127.0.0.1:0 --store "$WORK/store-$role" --credentials "$WORK/dep/hosts/$role" \
    --port-file "$WORK/port-$role" "$@" 2>"$WORK/host-$role.log" &
  PIDS="$PIDS $!"
  for _ in $(seq 300); do [ -s "$WORK/port-$role" ] && break; sleep 0.05; done
  [ -s "$WORK/port-$role" ] || fail "twinedge-host $role did not start: $(cat "$WORK/host-$role.log")"
}
# EdgeB with an unloadable plugin falls back to cpu and says so in its log
start_host b --plugin "$WORK/no-such-plugin.so" --fallback-plugin cpu
B=127.0.0.1:$(cat "$WORK/port-b")
start_host a --peer "$B"
A=127.0.0.1:$(cat "$WORK/port-a")
grep -q "no-such-plugin.so.*falling back to 'cpu'" "$WORK/host-b.log" || fail "fallback not logged: $(cat "$WORK/host-b.log")"
# without a fallback the same plugin is fatal
if "$HOST" --role b --listen 127.0.0.1:0 --store "$WORK/store-x" --credentials "$WORK/dep/hosts/b" \
     --plugin "$WORK/no-such-plugin.so" 2>"$WORK/err"; then fail "host started without its plugin"; fi
grep -q "no-such-plugin.so" "$WORK/err" || fail "plugin error unclear: $(cat "$WORK/err")"
"$OWNER" deploy "$WORK/dep" --edge-a "$A" --edge-b "$B" >/dev/null || fail "owner deploy"
"$OWNER" provision "$WORK/dep" --device cam-1 -o "$WORK/cam" --edge-b "$B" >"$WORK/prov" || fail "provision --edge-b"
grep -q "registered device 'cam-1' with EdgeB" "$WORK/prov" || fail "provision did not register: $(cat "$WORK/prov")"
[ -s "$WORK/cam/tls/cert.pem" ] && [ -s "$WORK/cam/tls/ca.pem" ] || fail "device credentials missing"
"$APP" "$WORK/cam" "$A" "$B" "$DATA/lenet5.input.npy" >"$WORK/app" || fail "camera app failed"
# its top-1 is the reference's top-1
want=$(/usr/bin/python3 -c "import numpy as np,sys; print(int(np.argmax(np.load(sys.argv[1]))))" "$DATA/lenet5.ref.npy")
grep -q "^top-1: class $want " "$WORK/app" || fail "camera app: $(cat "$WORK/app"), expected class $want"
# an image input: a deployment that records its preprocessing; the PNG and
# the tensor it stands for give the same private output, bit for bit
INFER=$(dirname "$RUN")/twinedge-infer
"$OWNER" compile "$DATA/lenet5.onnx" -o "$WORK/dep" --calibration "$DATA/lenet5.calib.npy" \
  --mean 0.5 --std 0.25 --quiet || fail "owner compile --mean/--std"
"$OWNER" deploy "$WORK/dep" --edge-a "$A" --edge-b "$B" >/dev/null || fail "owner deploy (preprocessing)"
"$OWNER" provision "$WORK/dep" --device cam-3 -o "$WORK/cam3" --edge-b "$B" >/dev/null || fail "provision cam-3"
/usr/bin/python3 - "$WORK" "$(dirname "$0")/../unit" <<'PY' || fail "making the test image"
import sys, numpy as np
sys.path.insert(0, sys.argv[2])
from image_ref import png
img = (np.arange(28 * 28).reshape(28, 28) * 7 % 256).astype(np.uint8)
png(sys.argv[1] + "/digit.png", img)
f32 = np.float32  # the device's arithmetic: (pixel / 255 - mean) / std in float32
x = (img.astype(f32) / f32(255) - f32(0.5)) / f32(0.25)
np.save(sys.argv[1] + "/digit.npy", x.astype(f32).reshape(1, 1, 28, 28))
wide = np.concatenate([np.full((28, 6), 255, np.uint8), img, np.zeros((28, 6), np.uint8)], axis=1)
png(sys.argv[1] + "/wide.png", wide)  # 40 x 28: the digit in its centre
PY
"$INFER" "$WORK/cam3" "$WORK/digit.png" -o "$WORK/from_png.npy" --edge-a "$A" --edge-b "$B" >/dev/null \
  || fail "twinedge-infer with a PNG"
"$INFER" "$WORK/cam3" "$WORK/digit.npy" -o "$WORK/from_npy.npy" --edge-a "$A" --edge-b "$B" >/dev/null \
  || fail "twinedge-infer with the .npy"
cmp "$WORK/from_png.npy" "$WORK/from_npy.npy" || fail "the PNG and its tensor give different outputs"
# another aspect ratio: centre-cropped by default (the digit itself, bit for
# bit), stretched on request, and said either way
"$INFER" "$WORK/cam3" "$WORK/wide.png" -o "$WORK/from_wide.npy" --edge-a "$A" --edge-b "$B" >/dev/null \
  2>"$WORK/note" || fail "twinedge-infer with a wide PNG"
grep -q "centre-cropped" "$WORK/note" || fail "no note on the crop: $(cat "$WORK/note")"
cmp "$WORK/from_wide.npy" "$WORK/from_npy.npy" || fail "the centre crop of the wide PNG is not the digit"
"$INFER" "$WORK/cam3" "$WORK/wide.png" -o "$WORK/from_wide.npy" --edge-a "$A" --edge-b "$B" --fit stretch \
  >/dev/null 2>"$WORK/note" || fail "twinedge-infer --fit stretch"
grep -q "stretched" "$WORK/note" || fail "no note on the stretch: $(cat "$WORK/note")"
if cmp -s "$WORK/from_wide.npy" "$WORK/from_npy.npy"; then fail "--fit stretch gave the cropped input"; fi
# an unregistered device is refused by EdgeB
"$OWNER" provision "$WORK/dep" --device cam-2 -o "$WORK/cam2" >/dev/null || fail "provision cam-2"
if "$APP" "$WORK/cam2" "$A" "$B" "$DATA/lenet5.input.npy" >/dev/null 2>"$WORK/err"; then
  fail "unregistered device served"
fi
# unreachable host: deploy fails with a clear error
if "$OWNER" deploy "$WORK/dep" --edge-a 127.0.0.1:1 2>"$WORK/err" >/dev/null; then fail "deploy to nowhere succeeded"; fi
grep -q "127.0.0.1:1" "$WORK/err" || fail "deploy error unclear: $(cat "$WORK/err")"
# a detector with three outputs (boxes, scores, NonMaxSuppression's
# selection) through twinedge-infer: output k > 0 in OUT.k.npy, the
# selection with its real length, equal to the float reference's
D=$DATA/detect/det_ssd_nms_o11
"$OWNER" compile "$D.onnx" -o "$WORK/dep" --calibration "$D.calib.npy" --quiet || fail "owner compile (detector)"
"$OWNER" deploy "$WORK/dep" --edge-a "$A" --edge-b "$B" >/dev/null || fail "owner deploy (detector)"
"$OWNER" provision "$WORK/dep" --device cam-4 -o "$WORK/cam4" --edge-b "$B" >/dev/null || fail "provision cam-4"
"$INFER" "$WORK/cam4" "$D.input.npy" -o "$WORK/det.npy" --edge-a "$A" --edge-b "$B" >/dev/null \
  || fail "twinedge-infer with three outputs"
/usr/bin/python3 - "$WORK/det" "$D" <<'PY' || fail "detector outputs differ from the reference"
import sys, numpy as np
got, ref = sys.argv[1], sys.argv[2]
for k, (g, r) in enumerate([("%s.npy", "%s.ref.npy"), ("%s.1.npy", "%s.ref.1.npy"), ("%s.2.npy", "%s.ref.2.npy")]):
    a, b = np.load(g % got).astype(np.float64), np.load(r % ref).astype(np.float64)
    if k == 2:
        assert a.shape == b.shape and (a == b).all(), "selection %s, reference %s" % (a.tolist(), b.tolist())
    else:
        c = (a.ravel() @ b.ravel()) / np.linalg.norm(a) / np.linalg.norm(b)
        assert a.shape == b.shape and c >= 0.999, "output %d: shape %s/%s cosine %g" % (k, a.shape, b.shape, c)
PY
echo "cli_twinedge_run: all checks passed"
