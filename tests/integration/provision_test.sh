#!/usr/bin/env bash
# twinedge-owner provision refuses a device name already provisioned in the
# deployment, and a directory that already holds a device, unless --force;
# a refusal changes nothing.
#   provision_test.sh TWINEDGE_OWNER TEST_DATA
set -euo pipefail
OWNER=$1
DATA=$2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/te-provision.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$OWNER" compile "$DATA/lenet5.onnx" -o "$WORK/dep" --quiet >/dev/null || fail "compile"
"$OWNER" provision "$WORK/dep" --device cam -o "$WORK/cam" >/dev/null || fail "first provision"
cp "$WORK/dep/hosts/b/devices/cam.key" "$WORK/cam.key.1"

# the same name again, into a new directory: refused, nothing changed
if "$OWNER" provision "$WORK/dep" --device cam -o "$WORK/cam-again" >/dev/null 2>"$WORK/err"; then
  fail "a second provision of 'cam' was accepted"
fi
grep -q "already provisioned" "$WORK/err" && grep -q -- "--force" "$WORK/err" || fail "unclear refusal: $(cat "$WORK/err")"
cmp -s "$WORK/dep/hosts/b/devices/cam.key" "$WORK/cam.key.1" || fail "the refused provision replaced the key"
[ ! -e "$WORK/cam-again" ] || fail "the refused provision wrote $WORK/cam-again"

# another name into a directory that holds a device: refused
if "$OWNER" provision "$WORK/dep" --device cam-2 -o "$WORK/cam" >/dev/null 2>"$WORK/err"; then
  fail "provisioning over an existing device directory was accepted"
fi
grep -q "already holds a provisioned device" "$WORK/err" || fail "unclear refusal: $(cat "$WORK/err")"
[ ! -e "$WORK/dep/hosts/b/devices/cam-2.key" ] || fail "the refused provision registered cam-2"

# --force replaces: a new key
"$OWNER" provision "$WORK/dep" --device cam -o "$WORK/cam" --force >/dev/null || fail "provision --force"
if cmp -s "$WORK/dep/hosts/b/devices/cam.key" "$WORK/cam.key.1"; then fail "--force kept the old key"; fi
echo "PASS: re-provisioning refused without --force, replaced with it"
