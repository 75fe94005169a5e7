#!/bin/sh
# Issue 12 on the command line: a model with open N/H/W dimensions.
# usage: wild_cli_test.sh TWINEDGE_OWNER TWINEDGE_RUN WILD_DATA_DIR
set -u
OWNER=$1
RUN=$2
DATA=$3
WORK=$(mktemp -d "${TMPDIR:-/tmp}/wildcli.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
M=$DATA/wild_fpn_o11.onnx

# open H and W without --input-shape or calibration data: refused, naming the option
"$OWNER" compile "$M" -o "$WORK/no" 2>"$WORK/err" >/dev/null && fail "compile without a shape succeeded"
grep -q "input-shape input:" "$WORK/err" || fail "message: $(cat "$WORK/err")"
[ ! -e "$WORK/no" ] || fail "output directory created on error"
"$OWNER" compile "$M" -o "$WORK/no" --input-shape input:1,3,x 2>/dev/null && fail "bad --input-shape accepted"

# --input-shape fixes them; the report lists the device ops and why
"$OWNER" compile "$M" -o "$WORK/dep" --input-shape input:1,3,24,28 >"$WORK/out" || fail "compile failed"
grep -q "Resize .*interpolation" "$WORK/out" || fail "report lacks Resize and why: $(cat "$WORK/out")"
grep -q "24x28" "$WORK/out" || fail "the layers are not at 24x28"
grep -q "outsourcing rate" "$WORK/out" || fail "no outsourcing rate"

# the attention model keeps its products of activations on the device: flagged below 90%
"$OWNER" compile "$DATA/wild_vit_o11.onnx" -o "$WORK/vit" >"$WORK/vit.out" || fail "vit compile failed"
grep -q "MatMul .*not outsourced" "$WORK/vit.out" || fail "MatMul not reported: $(cat "$WORK/vit.out")"
grep -q "^WARNING: only .*below 90%" "$WORK/vit.out" || fail "no warning below 90%"

# twinedge-run takes the open dimensions from its input tensor
"$RUN" "$M" "$DATA/wild_fpn_o11.input.npy" -o "$WORK/y.npy" --reference "$WORK/ref.npy" --in-process \
    >"$WORK/run.out" 2>&1 || fail "twinedge-run: $(cat "$WORK/run.out")"
cmp -s "$WORK/y.npy" "$WORK/ref.npy" || fail "private output differs from the fixed-point reference"
# an input of another size than --input-shape is refused
"$RUN" "$M" "$DATA/wild_fpn_o11.input.npy" -o "$WORK/y2.npy" --input-shape input:1,3,24,28 --in-process \
    >"$WORK/run2.out" 2>&1 && fail "mismatched input accepted"
grep -q "1,3,24,28" "$WORK/run2.out" || fail "mismatch message: $(cat "$WORK/run2.out")"
echo "wild_cli: ok"
