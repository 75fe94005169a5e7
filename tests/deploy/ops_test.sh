#!/usr/bin/env bash
# Operating real twinedge-host processes as a service manager and a
# monitoring stack would:
#   health   NOT_SERVING before a deployment, SERVING after it, and EdgeA
#            NOT_SERVING once its EdgeB is gone (twinedge-probe, mutual TLS)
#   metrics  a real Prometheus server scrapes both hosts; a metric read back
#            through its HTTP API counts the inferences served
#   logs     --log-format json: every line is JSON; refusals are errors;
#            gRPC core's own lines come through the same logger at debug
#   signals  sd_notify READY / RELOADING / STOPPING on NOTIFY_SOCKET; SIGHUP
#            loads a device key added to the store and a new log level
#            while inferences go on, none of them failing
#   config   --config=FILE, --check-config, --version
set -euo pipefail
PROBE=$1
INFER=$2
SRC=$(cd "$(dirname "$0")/../.." && pwd)
ATT_PLUGIN=$TE_CPU_PLUGIN
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
MA=$(free_port)
MB=$(free_port)
# shellcheck source=../attack/lib.sh
. "$SRC/tests/attack/lib.sh"
command -v prometheus >/dev/null || fail "prometheus is not installed (Debian package prometheus)"

# sd_notify: a datagram socket that records what EdgeB tells its manager
/usr/bin/python3 - "$WORK/notify.sock" "$WORK/notify.log" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a", buffering=1) as f:
    while True:
        f.write(s.recv(4096).decode().replace("\n", " ") + "\n")
PY
HOST_PIDS="$HOST_PIDS $!"
for _ in $(seq 100); do [ -S "$WORK/notify.sock" ] && break; sleep 0.05; done
printf 'log_format = json\nlog_level = info\n' >"$WORK/b.conf"
ATT_HOST_ARGS_A="--metrics-listen 127.0.0.1:$MA"
ATT_HOST_ARGS_B="--config=$WORK/b.conf --metrics-listen 127.0.0.1:$MB"
# GRPC_TRACE: gRPC core logs each TLS handshake (at its INFO: our debug)
GRPC_TRACE=handshaker NOTIFY_SOCKET=$WORK/notify.sock att_start_hosts

probe() {  # ROLE [flags] -> the probe's exit status
  local t=$EDGE_A; [ "$1" = b ] && t=$EDGE_B
  local r=0; "$PROBE" --target "$t" --credentials "$WORK/dep/hosts/$1" --quiet "${@:2}" 2>/dev/null || r=$?
  echo $r
}
wait_probe() {  # ROLE WANT: up to 10 s (EdgeA asks EdgeB every 2 s)
  local r
  for _ in $(seq 100); do r=$(probe "$1"); [ "$r" = "$2" ] && return 0; sleep 0.1; done
  fail "edge-$1 health: $r, want $2"
}
# no deployment yet: both up (live) but not ready
[ "$(probe a)" = 1 ] && [ "$(probe b)" = 1 ] || fail "hosts without a deployment report SERVING"
[ "$(probe a --live)" = 0 ] && [ "$(probe b --live)" = 0 ] || fail "--live of hosts without a deployment"
grep -q "READY=1" "$WORK/notify.log" || fail "no READY=1 on NOTIFY_SOCKET: $(cat "$WORK/notify.log")"
# Watch follows the change the deployment makes
"$PROBE" --target "$EDGE_B" --credentials "$WORK/dep/hosts/b" --watch 2 --timeout-ms 30000 >"$WORK/watch" \
  2>"$WORK/watch.err" &
watcher=$!
sleep 0.5
att_deploy
wait_probe b 0
wait_probe a 0
wait $watcher || fail "Watch: $(cat "$WORK/watch" "$WORK/watch.err")"
[ "$(cut -d' ' -f2 "$WORK/watch" | tr '\n' ' ')" = "NOT_SERVING SERVING " ] || fail "Watch said: $(cat "$WORK/watch")"

# Prometheus scrapes both hosts every second
PP=$(free_port)
cat >"$WORK/prometheus.yml" <<EOF
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: twinedge
    static_configs: [{targets: ["127.0.0.1:$MA", "127.0.0.1:$MB"]}]
EOF
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prom" \
  --web.listen-address="127.0.0.1:$PP" >"$WORK/prometheus.log" 2>&1 &
HOST_PIDS="$HOST_PIDS $!"

att_provision cam-1
for i in 1 2 3; do
  "$INFER" "$WORK/cam-1" "$TE_TEST_DATA/lenet5.input.npy" -o "$WORK/y$i.npy" --edge-a "$EDGE_A" --edge-b "$EDGE_B" \
    >/dev/null 2>"$WORK/infer.err" || fail "inference $i: $(cat "$WORK/infer.err")"
done
promql() {  # QUERY -> the first value, or empty
  /usr/bin/python3 - "$PP" "$1" <<'PY'
import json, sys, urllib.parse, urllib.request
url = "http://127.0.0.1:%s/api/v1/query?query=%s" % (sys.argv[1], urllib.parse.quote(sys.argv[2]))
try:
    r = json.load(urllib.request.urlopen(url, timeout=5))
    print(r["data"]["result"][0]["value"][1] if r["data"]["result"] else "")
except Exception:
    print("")
PY
}
q='sum(twinedge_calls_total{method="/twinedge.EdgeHost/Infer",code="OK"})'
# Prometheus spreads its scrapes of the two targets over the interval, and a
# scrape of one may predate the inferences: wait until every figure has
# arrived (or 30 s), then say which did not
got="" up="" la="" lb=""
for _ in $(seq 60); do
  got=$(promql "$q")
  up=$(promql 'sum(up{job="twinedge"})')
  la=$(promql 'sum(twinedge_layer_seconds_count{role="a"})')
  lb=$(promql 'sum(twinedge_layer_seconds_count{role="b"})')
  [ "${got%%.*}" -ge 3 ] 2>/dev/null && [ "$up" = 2 ] && [ "${la:-0}" -ge 15 ] && [ "${lb:-0}" -ge 15 ] && break
  sleep 0.5
done
# relay mode: the device's streams go to EdgeA, EdgeA asks EdgeB per layer
[ -n "$got" ] && [ "${got%%.*}" -ge 3 ] || fail "Prometheus: $q = '$got' (want >= 3); $(tail -5 "$WORK/prometheus.log")"
[ "$up" = 2 ] || fail "Prometheus does not see both hosts up (up = '$up'): $(tail -5 "$WORK/prometheus.log")"
[ "${la:-0}" -ge 15 ] || fail "edge-a layer latency count '$la' (3 x 5 linear layers)"
[ "${lb:-0}" -ge 15 ] || fail "edge-b layer latency count '$lb' (3 x 5 linear layers)"
[ "$(promql 'max(twinedge_deployments)')" = 1 ] || fail "twinedge_deployments"
curl_metrics() { /usr/bin/python3 -c "import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1]).read().decode())" "$1"; }
curl_metrics "http://127.0.0.1:$MB/metrics" >"$WORK/metrics-b.txt" || fail "GET /metrics of EdgeB"
grep -q '^twinedge_build_info{version="[0-9.]*",role="b",plugin="[^"]*cpu[^"]*",plugin_device="CPU' \
  "$WORK/metrics-b.txt" || fail "build info: $(grep build_info "$WORK/metrics-b.txt")"

# a device EdgeB does not know: refused, and the refusal is an error line (JSON)
"$TE_OWNER" provision "$WORK/dep" --device cam-2 -o "$WORK/cam-2" >/dev/null || fail "provision cam-2"
if "$INFER" "$WORK/cam-2" "$TE_TEST_DATA/lenet5.input.npy" -o "$WORK/y.npy" --edge-a "$EDGE_A" --edge-b "$EDGE_B" \
     >/dev/null 2>"$WORK/infer.err"; then fail "an unregistered device was served"; fi
# ... and the device is told what is wrong and how to fix it
grep -q "unknown device 'cam-2': EdgeB holds no key for it.*register it" "$WORK/infer.err" \
  || fail "unregistered device: $(cat "$WORK/infer.err")"
/usr/bin/python3 - "$WORK/host-b.log" <<'PY' || fail "EdgeB's JSON log"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]   # every line parses
assert all({"ts", "level", "pid", "msg", "source"} <= set(l) for l in lines), lines[:3]
assert any(l["level"] == "error" and "cam-2" in l["msg"] for l in lines), [l["msg"] for l in lines]
assert not any(l["source"].startswith("grpc") for l in lines), "gRPC debug lines at log_level info"
# the compute plugin's own lines come through the same logger, named
assert any(l["source"] == "plugin cpu" and l["level"] == "info" and l["msg"].startswith("ready: CPU")
           for l in lines), [l for l in lines if l["source"].startswith("plugin")]
PY

# SIGHUP: cam-2's key (written into EdgeB's store by the operator, as a
# Secret or shared volume would) and log_level = debug, with inferences
# running throughout
cp "$WORK/dep/hosts/b/devices/cam-2.key" "$WORK/store-b/devices/"
printf 'log_format = json\nlog_level = debug\n' >"$WORK/b.conf"
( for i in $(seq 8); do
    "$INFER" "$WORK/cam-1" "$TE_TEST_DATA/lenet5.input.npy" -o "$WORK/bg$i.npy" --edge-a "$EDGE_A" \
      --edge-b "$EDGE_B" >/dev/null 2>>"$WORK/bg.err" || echo "fail $i" >>"$WORK/bg.fail"
  done ) &
bg=$!
sleep 0.3
kill -HUP "$HOST_PID_B"
wait $bg
[ ! -e "$WORK/bg.fail" ] || fail "inferences failed across SIGHUP: $(cat "$WORK/bg.fail") $(cat "$WORK/bg.err")"
kill -0 "$HOST_PID_B" || fail "SIGHUP stopped EdgeB"
for _ in $(seq 50); do grep -q "RELOADING=1" "$WORK/notify.log" && break; sleep 0.1; done
grep -q "RELOADING=1" "$WORK/notify.log" && [ "$(grep -c "READY=1" "$WORK/notify.log")" -ge 2 ] \
  || fail "sd_notify around the reload: $(cat "$WORK/notify.log")"
"$INFER" "$WORK/cam-2" "$TE_TEST_DATA/lenet5.input.npy" -o "$WORK/y.npy" --edge-a "$EDGE_A" --edge-b "$EDGE_B" \
  >/dev/null 2>"$WORK/infer.err" || fail "cam-2 after SIGHUP: $(cat "$WORK/infer.err")"
[ "$(probe b)" = 0 ] || fail "edge-b after SIGHUP"  # a new connection: a handshake for gRPC to log
/usr/bin/python3 - "$WORK/host-b.log" <<'PY' || fail "EdgeB's log after SIGHUP"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert any(l["msg"].startswith("reload: store") and "1 deployment(s), 2 device key(s)" in l["msg"]
           for l in lines), [l["msg"] for l in lines if "reload" in l["msg"]]
assert any(l["msg"].startswith("reload: log level debug") for l in lines)
assert any(l["level"] == "debug" and "MaskShare from edge-a: OK" in l["msg"] for l in lines), "no per-call debug line"
assert any(l["source"].startswith("grpc ") for l in lines), "gRPC's own lines are not routed to the log"
PY

# EdgeB gone: EdgeA stays live but is no longer ready; a Watch open on
# EdgeB ends with the host (UNAVAILABLE) instead of holding it up
"$PROBE" --target "$EDGE_B" --credentials "$WORK/dep/hosts/b" --watch 5 --timeout-ms 60000 >"$WORK/watch" \
  2>"$WORK/watch.err" &
watcher=$!
sleep 1
kill -TERM "$HOST_PID_B"
rc=0; wait "$HOST_PID_B" || rc=$?
# a clean stop (under the sanitizers: no leak, no error on the way out)
[ $rc = 0 ] || fail "EdgeB exited with status $rc after SIGTERM: $(tail -20 "$WORK/host-b.log")"
rc=0; wait $watcher || rc=$?
[ $rc = 2 ] && grep -q "stopping" "$WORK/watch.err" || fail "Watch across SIGTERM: rc $rc $(cat "$WORK/watch.err")"
grep -q "STOPPING=1" "$WORK/notify.log" || fail "no STOPPING=1: $(cat "$WORK/notify.log")"
wait_probe a 1
[ "$(probe a --live)" = 0 ] || fail "EdgeA not live without EdgeB"

# configuration
"$TE_HOST" --version | grep -q "^twinedge-host [0-9]" || fail "--version"
"$TE_HOST" --config="$WORK/b.conf" --role b --store "$WORK/s" --credentials "$WORK/dep/hosts/b" --check-config \
  >/dev/null || fail "--config=FILE --check-config"
printf 'log_level = loud\n' >"$WORK/bad.conf"
if "$TE_HOST" --config="$WORK/bad.conf" --role b --store "$WORK/s" --credentials x --check-config 2>"$WORK/err"; then
  fail "--config=FILE was ignored (a bad log_level passed)"
fi
grep -q "log_level" "$WORK/err" || fail "bad log_level: $(cat "$WORK/err")"
echo "operations: ok"
