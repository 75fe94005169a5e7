# shellcheck shell=bash disable=SC2034  # PY, RC: used by the drivers
# Shared by the attack drivers (sourced): a LeNet-5 deployment served by two
# real twinedge-host processes on loopback over mutual TLS, each loading the
# evil plugin (tests/attack/evil_plugin.c) over the real CPU plugin.  What
# each host does is switched per inference through its control file
# ($WORK/control-a, $WORK/control-b), so the hosts start once per test.
#
# Environment (tests/attack.cmake sets it): TE_HOST, TE_OWNER, TE_EVIL_PLUGIN,
# TE_CPU_PLUGIN, TE_ATTACK_BUNDLE (bundle_tool.c), TE_TEST_DATA.
set -euo pipefail
PY=/usr/bin/python3
for v in TE_HOST TE_OWNER TE_EVIL_PLUGIN TE_CPU_PLUGIN TE_ATTACK_BUNDLE TE_TEST_DATA; do
  [ -n "${!v:-}" ] || { echo "FAIL: $v is not set (run through ctest)" >&2; exit 1; }
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/te-attack.XXXXXX")
HOST_PIDS=""
att_cleanup() {
  local p
  for p in $HOST_PIDS; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [ -n "${TE_ATTACK_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap att_cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# The model under attack: TE_ATTACK_MODEL (default lenet5; a model with fused
# branches, owner/fuse.c, runs the same attacks on fused layers).
ATT_MODEL=${TE_ATTACK_MODEL:-lenet5}

# Compile ATT_MODEL into $WORK/dep and start EdgeB, then EdgeA (relay peer: B),
# deploy to both.  Sets EDGE_A, EDGE_B.  ATT_HOST_ARGS: more twinedge-host flags;
# ATT_HOST_ARGS_A / ATT_HOST_ARGS_B: more for one role only (words).
# ATT_PLUGIN: a plugin (path) the hosts load instead of the evil plugin, for
# other tests that need real hosts (tests/sdk, tests/deploy).
ATT_HOST_ARGS=()
ATT_HOST_ARGS_A=${ATT_HOST_ARGS_A:-}
ATT_HOST_ARGS_B=${ATT_HOST_ARGS_B:-}
ATT_PLUGIN=${ATT_PLUGIN:-}
att_start() {
  att_start_hosts
  att_deploy
}

# att_start without the deployment: compile, start EdgeB then EdgeA.
att_start_hosts() {
  "$TE_OWNER" compile "$TE_TEST_DATA/$ATT_MODEL.onnx" -o "$WORK/dep" \
    --calibration "$TE_TEST_DATA/$ATT_MODEL.calib.npy" --quiet >/dev/null || fail "twinedge-owner compile"
  local role
  for role in b a; do att_start_host $role; done
}

# att_start_host ROLE: (re)start one host on a free port; its pid in HOST_PID_<ROLE>.
att_start_host() {
  local role=$1 peer=() plugin extra
  mkdir -p "$WORK/state-$role"
  [ -e "$WORK/control-$role" ] || echo "attack=none" >"$WORK/control-$role"
  [ "$role" = a ] && peer=(--peer "$EDGE_B")
  plugin=(--plugin "$TE_EVIL_PLUGIN"
          --plugin-config "inner=$TE_CPU_PLUGIN;control=$WORK/control-$role;state=$WORK/state-$role;role=$role")
  [ -n "$ATT_PLUGIN" ] && plugin=(--plugin "$ATT_PLUGIN")
  if [ "$role" = a ]; then extra=$ATT_HOST_ARGS_A; else extra=$ATT_HOST_ARGS_B; fi
  rm -f "$WORK/port-$role"
  # shellcheck disable=SC2086  # extra: words
  "$TE_HOST" --role "$role" --listen 127.0.0.1:0 --store "$WORK/store-$role" \
    --credentials "$WORK/dep/hosts/$role" --port-file "$WORK/port-$role" "${peer[@]}" "${ATT_HOST_ARGS[@]}" \
    $extra "${plugin[@]}" 2>>"$WORK/host-$role.log" &
  HOST_PIDS="$HOST_PIDS $!"
  if [ "$role" = b ]; then HOST_PID_B=$!; else HOST_PID_A=$!; fi
  for _ in $(seq 400); do [ -s "$WORK/port-$role" ] && break; sleep 0.05; done
  [ -s "$WORK/port-$role" ] || fail "twinedge-host $role did not start: $(cat "$WORK/host-$role.log")"
  if [ "$role" = b ]; then EDGE_B=127.0.0.1:$(cat "$WORK/port-b"); else EDGE_A=127.0.0.1:$(cat "$WORK/port-a"); fi
}

att_deploy() {
  "$TE_OWNER" deploy "$WORK/dep" --edge-a "$EDGE_A" --edge-b "$EDGE_B" >/dev/null || fail "twinedge-owner deploy"
}

# att_provision NAME: a device directory $WORK/NAME, registered with EdgeB.
att_provision() {
  "$TE_OWNER" provision "$WORK/dep" --device "$1" -o "$WORK/$1" --edge-b "$EDGE_B" >/dev/null \
    || fail "twinedge-owner provision $1"
}

# att_control ROLE ITEMS: what host ROLE's plugin does from its next run() on
# (written whole, then renamed, so a run never reads half a file).
att_control() {
  printf '%s\n' "$2" >"$WORK/control-$1.tmp"
  mv "$WORK/control-$1.tmp" "$WORK/control-$1"
}

# att_run INFER DEVICE_DIR INPUT OUTPUT MODE ERRFILE: one twinedge-infer,
# started again (at most 3 tries) when it could not connect at all.  Under
# load its gRPC connection attempts time out ("connection attempt timed out
# before receiving SETTINGS frame", "handshaker shutdown": 16 processes at
# once on 2 cores fail that way), which is not what these tests are about;
# such tries are counted in $WORK/connect-retries.
att_run() {
  local rc _
  for _ in 1 2 3; do
    rc=0
    "$1" "$2" "$3" -o "$4" --edge-a "$EDGE_A" --edge-b "$EDGE_B" --mode "$5" >/dev/null 2>"$6" || rc=$?
    if [ $rc = 0 ] || ! grep -q "failed to connect to all addresses" "$6"; then return $rc; fi
    echo "$2 $3" >>"$WORK/connect-retries"
  done
  return $rc
}

# att_infer INFER DEVICE_DIR INPUT OUTPUT MODE: att_run; sets RC, stderr in
# $WORK/infer.err.
att_infer() {
  RC=0
  att_run "$@" "$WORK/infer.err" || RC=$?
}

# A line for the summary: how many tries could not connect.
att_connect_note() {
  local n=0
  [ -e "$WORK/connect-retries" ] && n=$(wc -l <"$WORK/connect-retries")
  echo "tries that could not connect to a host and were started again: $n"
}
