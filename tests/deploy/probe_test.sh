#!/usr/bin/env bash
# twinedge-probe against real hosts (mutual TLS on loopback): serving hosts
# answer 0 to their own credentials and to a device's; a certificate from
# another CA, a closed port and a wrong server name answer 2 with the
# reason; --live answers 0 whenever the host answers.
set -euo pipefail
PROBE=$1
SRC=$(cd "$(dirname "$0")/../.." && pwd)
ATT_PLUGIN=$TE_CPU_PLUGIN
# shellcheck source=../attack/lib.sh
. "$SRC/tests/attack/lib.sh"
att_start
att_provision cam-1
for role in a b; do
  t=$EDGE_A; [ $role = b ] && t=$EDGE_B
  # EdgeA is ready once it has seen EdgeB ready (it asks every 250 ms until then)
  for _ in $(seq 40); do "$PROBE" --target "$t" --credentials "$WORK/dep/hosts/$role" --quiet && break; sleep 0.25; done
  out=$("$PROBE" --target "$t" --credentials "$WORK/dep/hosts/$role") || fail "probe of edge-$role: rc $?"
  [ "$out" = "$t: SERVING" ] || fail "probe of edge-$role said: $out"
  "$PROBE" --target "$t" --credentials "$WORK/dep/hosts/$role" --live --quiet || fail "--live of edge-$role"
done
# a device's certificate is a deployment certificate too; it names no host,
# so the host's name is given
"$PROBE" --target "$EDGE_A" --credentials "$WORK/cam-1/tls" --server-name edge-a --quiet || fail "device probe"
# forged: a certificate called edge-a from a CA of its own
mkdir -p "$WORK/forged"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=forged-ca \
  -keyout "$WORK/forged/ca.key" -out "$WORK/forged/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=edge-a \
  -keyout "$WORK/forged/key.pem" -out "$WORK/forged/req.csr" 2>/dev/null
openssl x509 -req -in "$WORK/forged/req.csr" -CA "$WORK/forged/ca.crt" -CAkey "$WORK/forged/ca.key" \
  -CAcreateserial -days 1 -out "$WORK/forged/cert.pem" 2>/dev/null
cp "$WORK/dep/hosts/a/ca.pem" "$WORK/forged/ca.pem"  # it trusts the real CA, the host does not trust it
rc=0; "$PROBE" --target "$EDGE_A" --credentials "$WORK/forged" --quiet 2>"$WORK/err" || rc=$?
[ $rc = 2 ] || fail "forged certificate: rc $rc (want 2): $(cat "$WORK/err")"
grep -qi "credentials\|certificate\|handshake" "$WORK/err" || fail "forged: reason unclear: $(cat "$WORK/err")"
# nobody listening
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rc=0; "$PROBE" --target "127.0.0.1:$port" --credentials "$WORK/dep/hosts/a" --timeout-ms 1500 2>"$WORK/err" || rc=$?
[ $rc = 2 ] || fail "closed port: rc $rc"
grep -qi "unreachable\|connect" "$WORK/err" || fail "closed port: reason unclear: $(cat "$WORK/err")"
rc=0; "$PROBE" --target "127.0.0.1:$port" --credentials "$WORK/dep/hosts/a" --live --timeout-ms 1500 2>/dev/null \
  || rc=$?
[ $rc = 2 ] || fail "closed port with --live: rc $rc"
# EdgeB's certificate does not carry the name edge-a
rc=0; "$PROBE" --target "$EDGE_B" --credentials "$WORK/dep/hosts/a" --quiet 2>"$WORK/err" || rc=$?
[ $rc = 2 ] || fail "wrong server name: rc $rc"
echo "probe: ok"
