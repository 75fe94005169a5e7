#!/usr/bin/env bash
# Inputs a device must not take silently, through twinedge-run (hosts in
# process) and twinedge-infer (real hosts, tests/attack/lib.sh): an NHWC
# array with the right element count, NaN and inf, a float64 array whose
# values float32 cannot hold (and one it can: converted with a note, same
# output), a missing batch dimension (accepted); the report JSON of both
# tools: valid for a path with a quote in it, and the same keys.
#   input_report_test.sh TWINEDGE_RUN TWINEDGE_INFER   (environment: as lib.sh)
RUN=$1
INFER=$2
SRC=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../attack/lib.sh
. "$SRC/tests/attack/lib.sh"
M=$TE_TEST_DATA/lenet5.onnx
IN=$TE_TEST_DATA/lenet5.input.npy
CAL=(--calibration "$TE_TEST_DATA/lenet5.calib.npy")

"$PY" - "$IN" "$WORK" <<'PY'
import sys, numpy as np
x = np.load(sys.argv[1]); w = sys.argv[2]           # (1, 1, 28, 28) float32
np.save(w + "/nhwc.npy", x.transpose(0, 2, 3, 1))   # (1, 28, 28, 1): same element count
np.save(w + "/nobatch.npy", x[0])                   # (1, 28, 28)
y = x.copy(); y[0, 0, 3, 4] = np.nan; np.save(w + "/nan.npy", y)
y = x.copy(); y[0, 0, 0, 1] = np.inf; np.save(w + "/inf.npy", y)
np.save(w + "/f64_exact.npy", x.astype(np.float64))
y = x.astype(np.float64); y[0, 0, 5, 5] += 1e-12; np.save(w + "/f64_inexact.npy", y)
PY

# expect_refused TOOL_OUTPUT_PREFIX WANT_TEXT CMD...: fails, says WANT_TEXT, writes no output
expect_refused() {
  local want=$1 rc=0
  shift
  "$@" >/dev/null 2>"$WORK/err" || rc=$?
  [ $rc != 0 ] || fail "accepted: $*"
  grep -q -- "$want" "$WORK/err" || fail "refusal of '$*' does not say '$want': $(cat "$WORK/err")"
  [ ! -e "$WORK/o.npy" ] || fail "output written by a refused run: $*"
}

for tool in run infer; do
  if [ $tool = run ]; then
    go() { "$RUN" "$M" "$1" -o "$WORK/o.npy" "${CAL[@]}" --in-process "${@:2}"; }
  else
    if [ -z "${EDGE_A:-}" ]; then att_start; att_provision dev; fi
    go() { "$INFER" "$WORK/dev" "$1" -o "$WORK/o.npy" --edge-a "$EDGE_A" --edge-b "$EDGE_B" "${@:2}"; }
  fi
  expect_refused "channels-last (NHWC)" go "$WORK/nhwc.npy"
  expect_refused "element 88 is NaN" go "$WORK/nan.npy"
  expect_refused "element 1 is +inf" go "$WORK/inf.npy"
  expect_refused "not exact in float32" go "$WORK/f64_inexact.npy"
  go "$IN" >/dev/null || fail "$tool: the float32 input"
  mv "$WORK/o.npy" "$WORK/ref-$tool.npy"
  go "$WORK/f64_exact.npy" >/dev/null 2>"$WORK/err" || fail "$tool: exact float64 refused: $(cat "$WORK/err")"
  grep -q "converted to float32 (every value exact)" "$WORK/err" || fail "$tool: no note on the conversion"
  cmp -s "$WORK/o.npy" "$WORK/ref-$tool.npy" || fail "$tool: exact float64 gave another output"
  rm "$WORK/o.npy"
  go "$WORK/f64_inexact.npy" --allow-rounding >/dev/null 2>"$WORK/err" || fail "$tool: --allow-rounding refused"
  grep -q "1 value(s) rounded" "$WORK/err" || fail "$tool: no note on the rounding: $(cat "$WORK/err")"
  rm "$WORK/o.npy"
  go "$WORK/nobatch.npy" >/dev/null || fail "$tool: input without the batch dimension refused"
  cmp -s "$WORK/o.npy" "$WORK/ref-$tool.npy" || fail "$tool: input without the batch dimension gave another output"
  rm "$WORK/o.npy"
  # the report: a path with a quote and a backslash is still JSON
  mkdir -p "$WORK/a\"b\\c"
  go "$IN" --report "$WORK/a\"b\\c/report-$tool.json" >/dev/null || fail "$tool --report"
  cp "$WORK/a\"b\\c/report-$tool.json" "$WORK/report-$tool.json"
  rm "$WORK/o.npy"
done
"$PY" - "$WORK/report-run.json" "$WORK/report-infer.json" <<'PY' || fail "reports"
import json, sys
r, i = (json.load(open(p)) for p in sys.argv[1:])
assert set(r) == set(i), (sorted(set(r) ^ set(i)))
assert r["schema"] == i["schema"] == 1
assert r["tool"] == "twinedge-run" and i["tool"] == "twinedge-infer"
assert r["transport"] == "in-process" and i["transport"] == "grpc"
for k in ["linear_layers", "layers_checked", "bytes_device_up", "bytes_device_down", "wall_s", "device_cpu_s"]:
    assert isinstance(r[k], (int, float)) and isinstance(i[k], (int, float)), k
assert r["linear_layers"] == i["linear_layers"] == r["layers_checked"] == i["layers_checked"] == 5
assert i["edge_flops"] is None and r["edge_flops"] > 0
assert i["edge_a"].startswith("127.0.0.1:") and r["edge_a"] is None
PY
echo "PASS: NHWC, NaN, inf and inexact float64 refused with their reasons; exact float64 and a missing batch" \
     "dimension accepted (same output); one report schema for twinedge-run and twinedge-infer"
