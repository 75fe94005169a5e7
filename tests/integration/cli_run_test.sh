#!/usr/bin/env bash
# twinedge-run end to end: the private output equals the plaintext
# fixed-point reference bit for bit, the report has its fields, and bad
# input gives clear errors (and no output).
set -euo pipefail
RUN=$1
DATA=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

for mode in relay mediated; do
  "$RUN" "$DATA/lenet5.onnx" "$DATA/lenet5.input.npy" -o "$WORK/out.npy" --mode $mode \
      --calibration "$DATA/lenet5.calib.npy" --reference "$WORK/ref.npy" --report "$WORK/report.json" \
      >"$WORK/stdout" || fail "twinedge-run --mode $mode failed"
  cmp "$WORK/out.npy" "$WORK/ref.npy" || fail "$mode output differs from the fixed-point reference"
  /usr/bin/python3 - "$WORK/report.json" "$WORK/out.npy" "$DATA/lenet5.ref.npy" <<'PY' || fail "report/output check ($mode)"
import json, sys, numpy as np
r = json.load(open(sys.argv[1]))
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
echo "cli_twinedge_run: all checks passed"
