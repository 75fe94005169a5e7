#!/usr/bin/env bash
# Per-device integrity keys: two devices provisioned from one deployment
# must not share r (a host that learns one device's r could forge results
# for every other device: attack_lattice), and a device directory keeps its
# secrets from other local users: the directory 0700, device.bundle (r, s),
# device.key and the TLS key without group/other permissions, even under
# umask 022.
source "$(dirname "$0")/lib.sh"

"$TE_OWNER" compile "$TE_TEST_DATA/lenet5.onnx" -o "$WORK/dep" --calibration "$TE_TEST_DATA/lenet5.calib.npy" \
  --quiet >/dev/null || fail "twinedge-owner compile"
umask 022
for d in cam-1 cam-2; do
  "$TE_OWNER" provision "$WORK/dep" --device $d -o "$WORK/$d" >/dev/null || fail "provision $d"
done
err=""
keys=$("$TE_ATTACK_BUNDLE" same-r "$WORK/cam-1/device.bundle" "$WORK/cam-2/device.bundle" || true)
echo "integrity keys r of two devices of one deployment: $keys"
[ "$keys" = different ] || err="$err two devices share their integrity keys r;"

mode_of() { stat -c %a "$1"; }
echo "modes under cam-1 (umask 022):"
(cd "$WORK/cam-1" && find . -exec stat -c '  %a %F %n' {} +)
m=$(mode_of "$WORK/cam-1")
[ $((8#$m & 8#077)) = 0 ] || err="$err device directory has mode $m (want 0700);"
for f in device.bundle device.key tls/key.pem; do
  [ -e "$WORK/cam-1/$f" ] || { err="$err no $f;"; continue; }
  m=$(mode_of "$WORK/cam-1/$f")
  [ $((8#$m & 8#077)) = 0 ] || err="$err $f has mode $m (want 0600);"
done
[ -z "$err" ] || fail "$err"
echo "PASS: per-device keys, device files private"
