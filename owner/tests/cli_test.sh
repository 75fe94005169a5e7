#!/bin/sh
# End-to-end checks of the twinedge-owner command line.
# usage: cli_test.sh TWINEDGE_OWNER DATA_DIR
set -u
BIN=$1
DATA=$2
WORK=$(mktemp -d "${DATA}/cli.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$BIN" --help | grep -q "frac_bits 16 and ring_bits 64" || fail "--help lacks the defaults"
"$BIN" --help | grep -q "twinedge-owner deploy DEPLOY_DIR --edge-a HOST:PORT --edge-b HOST:PORT" || fail "--help lacks deploy"
"$BIN" --help | grep -q "\-\-edge-b HOST:PORT\]" || fail "--help lacks provision --edge-b"

# unsupported op: non-zero exit, op and node named, no output directory
if "$BIN" compile "$DATA/unsupported_cos.onnx" -o "$WORK/bad" 2>"$WORK/err" >/dev/null; then
    fail "compile of an unsupported model succeeded"
fi
grep -q "^twinedge-owner: error: .*'Cos'.*'my_unsupported_node'" "$WORK/err" || fail "message: $(cat "$WORK/err")"
[ ! -e "$WORK/bad" ] || fail "output directory created on error"
ls "$WORK" | grep -q "bad" && fail "temporary directory left behind"

"$BIN" compile "$DATA/malformed.onnx" -o "$WORK/bad" 2>/dev/null && fail "malformed model accepted"
[ ! -e "$WORK/bad" ] || fail "output directory created for a malformed model"

# compile with calibration, provision, read back
"$BIN" compile "$DATA/torch_cnn.onnx" -o "$WORK/dep" --calibration "$DATA/torch_cnn.calib.npy" \
    --weight-bits 10 >"$WORK/out" || fail "compile failed"
grep -q "outsourcing rate" "$WORK/out" || fail "no report"
grep -q "/fc/Gemm" "$WORK/out" || fail "no per-layer table"
[ -s "$WORK/dep/device.bundle" ] && [ -s "$WORK/dep/edge.bundle" ] || fail "bundles missing"
"$BIN" compile "$DATA/torch_cnn.onnx" -o "$WORK/q" --quiet >"$WORK/out2" || fail "quiet compile failed"
[ ! -s "$WORK/out2" ] || fail "--quiet printed something"

# branch fusion: on by default, --fuse same without embedding, --no-fuse off (owner/fuse.c)
for f in "4:" "9:--fuse same" "11:--no-fuse"; do
    # shellcheck disable=SC2086
    "$BIN" compile "$DATA/branches.onnx" -o "$WORK/fz" --calibration "$DATA/branches.calib.npy" ${f#*:} \
        >"$WORK/fz.out" || fail "compile ${f#*:}"
    grep -q "branch fusion: 11 linear layers in ${f%%:*} outsourced calls" "$WORK/fz.out" ||
        fail "${f#*:}: $(grep 'branch fusion' "$WORK/fz.out")"
done
"$BIN" compile "$DATA/branches.onnx" -o "$WORK/fz2" --fuse sometimes 2>"$WORK/err" >/dev/null && fail "--fuse sometimes accepted"
grep -q "fuse needs none, same or embed" "$WORK/err" || fail "--fuse message: $(cat "$WORK/err")"

# precision: by measurement with calibration data unless bits are given (owner/precision.c)
"$BIN" compile "$DATA/torch_cnn.onnx" -o "$WORK/pa" --calibration "$DATA/torch_cnn.calib.npy" >"$WORK/pa.out" ||
    fail "compile with --precision auto"
grep -q "^precision: auto (--min-cosine 0.9999): output cosine to the float model 0.9999" "$WORK/pa.out" ||
    fail "auto report: $(grep '^precision' "$WORK/pa.out")"
grep -q "^precision: fixed (10-bit weights, 16-bit activations)" "$WORK/out" ||
    fail "--weight-bits alone: $(grep '^precision' "$WORK/out")"
for c in 0 1 1.5 -0.5 nan 0.9x ""; do
    "$BIN" compile "$DATA/torch_cnn.onnx" -o "$WORK/pc" --calibration "$DATA/torch_cnn.calib.npy" --min-cosine "$c" \
        2>"$WORK/err" >/dev/null && fail "--min-cosine '$c' accepted"
    grep -q "min-cosine needs a number above 0 and below 1" "$WORK/err" || fail "--min-cosine '$c': $(cat "$WORK/err")"
done
"$BIN" compile "$DATA/torch_cnn.onnx" -o "$WORK/pc" --precision sometimes 2>"$WORK/err" >/dev/null &&
    fail "--precision sometimes accepted"
grep -q "precision needs auto or fixed" "$WORK/err" || fail "--precision message: $(cat "$WORK/err")"
"$BIN" compile "$DATA/torch_cnn.onnx" -o "$WORK/pc" --precision auto 2>"$WORK/err" >/dev/null &&
    fail "--precision auto without calibration accepted"
grep -q "give --calibration" "$WORK/err" || fail "auto without calibration: $(cat "$WORK/err")"
[ ! -e "$WORK/pc" ] || fail "output directory created for a refused precision option"

"$BIN" provision "$WORK/dep" --device "bad name" -o "$WORK/dev" 2>/dev/null && fail "bad device name accepted"
"$BIN" provision "$WORK/dep" --device cam-01 -o "$WORK/dev" >/dev/null || fail "provision failed"
[ -s "$WORK/dev/device.key" ] && [ -s "$WORK/dev/device.bundle" ] || fail "device files missing"
cmp -s "$WORK/dev/device.key" "$WORK/dep/hosts/b/devices/cam-01.key" || fail "registered key differs"
# integrity keys are the device's own: drawn at provisioning, never the
# deployment's template's, never another device's; files 0600 in a 0700 dir
cmp -s "$WORK/dev/device.bundle" "$WORK/dep/device.bundle" && fail "device bundle is the deployment's template"
"$BIN" provision "$WORK/dep" --device cam-02 -o "$WORK/dev2" >/dev/null || fail "second provision failed"
cmp -s "$WORK/dev/device.bundle" "$WORK/dev2/device.bundle" && fail "two devices share their integrity keys"
[ "$(stat -c %a "$WORK/dev")" = 700 ] || fail "device directory is $(stat -c %a "$WORK/dev"), not 700"
for f in device.bundle device.key; do
  [ "$(stat -c %a "$WORK/dev/$f")" = 600 ] || fail "$f is $(stat -c %a "$WORK/dev/$f"), not 600"
done

# credentials: a CA, the hosts' and the owner's certificates, the device's in DEVICE_DIR/tls
for f in ca/ca.pem ca/ca.key hosts/a/cert.pem hosts/a/key.pem hosts/b/cert.pem owner/cert.pem; do
    [ -s "$WORK/dep/$f" ] || fail "compile did not write $f"
done
[ -s "$WORK/dev/tls/cert.pem" ] && [ -s "$WORK/dev/tls/key.pem" ] || fail "device certificate missing"
cmp -s "$WORK/dev/tls/ca.pem" "$WORK/dep/ca/ca.pem" || fail "device trusts another CA"
if command -v openssl >/dev/null; then
    openssl x509 -in "$WORK/dev/tls/cert.pem" -noout -subject | grep -q "device:cam-01" || fail "device certificate CN"
    openssl verify -CAfile "$WORK/dep/ca/ca.pem" "$WORK/dep/hosts/a/cert.pem" >/dev/null || fail "host cert not signed by the CA"
fi
# recompiling into the deployment keeps its CA
cp "$WORK/dep/ca/ca.pem" "$WORK/ca.before"
"$BIN" compile "$DATA/torch_cnn.onnx" -o "$WORK/dep" --quiet || fail "recompile failed"
cmp -s "$WORK/ca.before" "$WORK/dep/ca/ca.pem" || fail "recompile replaced the CA"
[ -s "$WORK/dep/hosts/b/devices/cam-01.key" ] || fail "recompile lost the registered device"

# deploy: argument errors and an unreachable host
"$BIN" deploy "$WORK/dep" 2>/dev/null && fail "deploy without hosts accepted"
"$BIN" deploy "$WORK/dep" --edge-a 127.0.0.1:1 2>"$WORK/err" >/dev/null && fail "deploy to nowhere succeeded"
grep -q "^twinedge-owner: error: .*127.0.0.1:1" "$WORK/err" || fail "deploy error: $(cat "$WORK/err")"
"$BIN" provision "$WORK/dep" --device cam-02 -o "$WORK/dev2" --force --edge-b 127.0.0.1:1 2>"$WORK/err" >/dev/null \
    && fail "registration with an unreachable EdgeB succeeded"
grep -q "127.0.0.1:1" "$WORK/err" || fail "register error: $(cat "$WORK/err")"
"$BIN" compile 2>/dev/null && fail "missing arguments accepted"
echo "cli ok"
