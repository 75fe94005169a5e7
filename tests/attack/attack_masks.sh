#!/usr/bin/env bash
# Masks never repeat: EdgeA (the evil plugin in tap mode) records every
# masked input A = x + M it is sent, and tap_analyze.py looks for pairs with
# equal masks (A1 - A2 = x1 - x2 small), as a curious EdgeA would.  Each
# scenario uses its own device and distinct inputs (lenet5.input.npy plus
# small per-process noise):
#   concurrent  16 twinedge-infer processes at once on one device directory
#   copy        a copied device directory used from two processes
#   rollback    the directory copied, used, put back, used again
#   nocounter   the counter file deleted (if there is one) between uses
#   kill        a twinedge-infer killed with SIGKILL during an inference
#               (EdgeA holds the first layer), then more inferences
#
#   attack_masks.sh INFER [--expect fresh|reuse]
# --expect fresh (default): no pair flagged, every inference (but the killed
#   one) succeeds.  --expect reuse: a negative control, some pair must be
#   flagged (proof that the analysis sees a repeated mask).
source "$(dirname "$0")/lib.sh"

INFER=$1
shift
EXPECT=fresh
[ "${1:-}" = --expect ] && { EXPECT=$2; shift 2; }
case $EXPECT in fresh | reuse) ;; *) fail "--expect fresh|reuse" ;; esac
[ -x "$INFER" ] || fail "no executable $INFER"
echo "== mask reuse against $INFER, expecting $EXPECT"

# shellcheck disable=SC2034  # read by att_start
ATT_HOST_ARGS=(--workers 40) # 16 devices' streams at once, and EdgeA's calls to EdgeB
att_start
for s in concurrent copy rollback nocounter kill; do att_provision "dev-$s"; done
$PY - "$TE_TEST_DATA/lenet5.input.npy" "$WORK" <<'PY' || fail "making the inputs"
import sys, numpy as np
x = np.load(sys.argv[1]).astype(np.float32)
rng = np.random.default_rng(7)
for k in range(48):
    np.save(f"{sys.argv[2]}/in{k}.npy", (x + rng.normal(0, 0.02, x.shape)).astype(np.float32))
PY

NEXT_INPUT=0 FAILED=0 RAN=0
# run_one DEVICE_DIR: one inference with the next input, in the background
# when BG=1 (pid appended to BG_PIDS); mode alternates relay/mediated.
BG_PIDS=""
run_one() {
  local k=$NEXT_INPUT mode=relay
  NEXT_INPUT=$((NEXT_INPUT + 1))
  [ $((k % 2)) = 1 ] && mode=mediated
  RAN=$((RAN + 1))
  if [ "${BG:-0}" = 1 ]; then
    att_run "$INFER" "$1" "$WORK/in$k.npy" "$WORK/out$k.npy" $mode "$WORK/err$k" &
    BG_PIDS="$BG_PIDS $!:$k"
  elif ! att_run "$INFER" "$1" "$WORK/in$k.npy" "$WORK/out$k.npy" $mode "$WORK/err$k"; then
    FAILED=$((FAILED + 1))
    echo "  inference $k on $(basename "$1") failed: $(cat "$WORK/err$k")"
  fi
}
wait_bg() {
  local p
  for p in $BG_PIDS; do
    if ! wait "${p%:*}"; then
      FAILED=$((FAILED + 1))
      echo "  inference ${p#*:} failed: $(cat "$WORK/err${p#*:}")"
    fi
  done
  BG_PIDS=""
}
tap() { att_control a "attack=tap;tap=$1.bin${2:+;$2}"; }

echo "-- concurrent: 16 processes on one device directory"
tap concurrent
BG=1
for _ in $(seq 16); do run_one "$WORK/dev-concurrent"; done
wait_bg
BG=0

echo "-- copy: a copied device directory used from two processes"
tap copy
run_one "$WORK/dev-copy"
cp -a "$WORK/dev-copy" "$WORK/dev-copy2"
BG=1
run_one "$WORK/dev-copy"
run_one "$WORK/dev-copy2"
wait_bg
BG=0
run_one "$WORK/dev-copy"
run_one "$WORK/dev-copy2"

echo "-- rollback: copy the directory, infer, put the old copy back, infer"
tap rollback
run_one "$WORK/dev-rollback"
cp -a "$WORK/dev-rollback" "$WORK/rollback.bak"
run_one "$WORK/dev-rollback"
run_one "$WORK/dev-rollback"
rm -rf "$WORK/dev-rollback"
mv "$WORK/rollback.bak" "$WORK/dev-rollback"
run_one "$WORK/dev-rollback"
run_one "$WORK/dev-rollback"

echo "-- nocounter: delete the counter file between inferences"
tap nocounter
run_one "$WORK/dev-nocounter"
run_one "$WORK/dev-nocounter"
if [ -e "$WORK/dev-nocounter/counter" ]; then
  rm -f "$WORK/dev-nocounter/counter"
  echo "  deleted dev-nocounter/counter"
else
  echo "  no counter file in the device directory (nothing to delete)"
fi
run_one "$WORK/dev-nocounter"
run_one "$WORK/dev-nocounter"

echo "-- kill: SIGKILL a twinedge-infer while EdgeA holds its first layer"
tap kill
run_one "$WORK/dev-kill"
before=$(stat -c %s "$WORK/state-a/kill.bin")
tap kill "delay_ms=3000"
k=$NEXT_INPUT
NEXT_INPUT=$((k + 1))
"$INFER" "$WORK/dev-kill" "$WORK/in$k.npy" -o "$WORK/out$k.npy" --edge-a "$EDGE_A" --edge-b "$EDGE_B" \
  >/dev/null 2>&1 &
victim=$!
for _ in $(seq 200); do [ "$(stat -c %s "$WORK/state-a/kill.bin")" -gt "$before" ] && break; sleep 0.05; done
[ "$(stat -c %s "$WORK/state-a/kill.bin")" -gt "$before" ] || fail "the inference to kill never reached EdgeA"
kill -9 $victim
wait $victim 2>/dev/null || true
[ ! -e "$WORK/out$k.npy" ] || fail "the killed inference wrote its output"
echo "  killed pid $victim after its first layer reached EdgeA"
tap kill
for _ in 1 2 3; do run_one "$WORK/dev-kill"; done

echo
echo "== what EdgeA finds (threshold: every |A1 - A2| < 2^(l-8))"
$PY "$(dirname "$0")/tap_analyze.py" concurrent="$WORK/state-a/concurrent.bin" copy="$WORK/state-a/copy.bin" \
  rollback="$WORK/state-a/rollback.bin" nocounter="$WORK/state-a/nocounter.bin" kill="$WORK/state-a/kill.bin" \
  | tee "$WORK/analysis" || fail "tap_analyze.py"
flagged=$(sed -n 's/^flagged: //p' "$WORK/analysis")
echo "inferences: $RAN (plus the killed one), failed: $FAILED; pairs with equal masks: $flagged"
att_connect_note
if [ "$EXPECT" = reuse ]; then
  [ "$flagged" -gt 0 ] || fail "negative control: no repeated mask found"
  echo "PASS (negative control): repeated masks found"
else
  [ "$flagged" = 0 ] || fail "$flagged pair(s) of masked inputs with equal masks"
  [ "$FAILED" = 0 ] || fail "$FAILED inference(s) failed"
  echo "PASS: no mask repeated"
fi
