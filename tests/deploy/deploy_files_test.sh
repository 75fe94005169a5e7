#!/usr/bin/env bash
# deploy/ as an operator would use it: the systemd unit passes
# `systemd-analyze verify` without a single complaint (a misspelt key is only
# a warning there, so any output fails; a negative control shows a typo is
# caught), the example host configs pass twinedge-host --check-config, and
# the Kubernetes overlays render with `kubectl kustomize` into EdgeA and EdgeB
# in separate namespaces with the probes, secrets, store and scrape
# annotations they need, consistent with their host configs.
set -euo pipefail
SRC=$1
HOST=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# systemd: the unit as installed, its ExecStart pointed at the built host
# (verify insists that the program exists)
verify_unit() {  # FILE -> 0 when systemd-analyze says nothing at all
  local d
  d=$(mktemp -d "$WORK/unit.XXXXXX")
  sed "s|/usr/bin/twinedge-host|$HOST|" "$1" >"$d/twinedge-host@edge-a.service"
  (cd "$d" && systemd-analyze verify --man=no ./twinedge-host@edge-a.service) >"$d/out" 2>&1 || true
  if [ -s "$d/out" ]; then cat "$d/out" >&2; return 1; fi
}
if command -v systemd-analyze >/dev/null; then
  verify_unit "$SRC/deploy/systemd/twinedge-host@.service" || fail "systemd-analyze verify complained"
  sed 's/^UMask=/UMaks=/' "$SRC/deploy/systemd/twinedge-host@.service" >"$WORK/typo.service"
  if verify_unit "$WORK/typo.service" 2>/dev/null; then fail "negative control: a misspelt key went unnoticed"; fi
  grep -q '^Type=notify' "$SRC/deploy/systemd/twinedge-host@.service" || fail "the unit is not Type=notify"
else
  fail "systemd-analyze is not installed (package systemd)"
fi

# the example configs are valid for twinedge-host itself (--check-config reads
# them as the daemon would; a bad one is refused)
for f in "$SRC"/deploy/systemd/edge-?.conf "$SRC"/deploy/k8s/edge-?/host.conf; do
  "$HOST" --config "$f" --check-config >"$WORK/out" 2>&1 || fail "$f: $(cat "$WORK/out")"
done
printf 'role = a\nlisten = 0.0.0.0:1\nbogus = 1\n' >"$WORK/bad.conf"
if "$HOST" --config "$WORK/bad.conf" --store x --credentials y --check-config >/dev/null 2>&1; then
  fail "--check-config took an unknown key"
fi

# Kubernetes
command -v kubectl >/dev/null || fail "kubectl (with kustomize) is not installed"
for r in a b; do
  kubectl kustomize "$SRC/deploy/k8s/edge-$r" >"$WORK/edge-$r.yaml" || fail "kubectl kustomize edge-$r"
done
/usr/bin/python3 - "$WORK/edge-a.yaml" "$WORK/edge-b.yaml" <<'PY' || fail "rendered manifests"
import sys, yaml
seen = {}
for path, role in zip(sys.argv[1:], "ab"):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    kinds = {d["kind"]: d for d in docs}
    for k in ("Namespace", "Deployment", "Service", "ConfigMap", "PersistentVolumeClaim"):
        assert k in kinds, (role, k, list(kinds))
    ns = kinds["Namespace"]["metadata"]["name"]
    assert all(d["metadata"].get("namespace", ns) == ns for d in docs), role
    seen[role] = ns
    conf = next(iter(kinds["ConfigMap"]["data"].values()))
    assert f"role = {role}" in conf, conf
    assert ("peer = " in conf) == (role == "a"), conf
    if role == "a":
        assert seen.get("b") is None and "twinedge-edge-b" in conf, conf
    dep = kinds["Deployment"]
    tmpl = dep["spec"]["template"]
    ann = tmpl["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"].isdigit(), ann
    c = tmpl["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert int(ann["prometheus.io/port"]) == ports["metrics"], (ann, ports)
    assert f"listen = 0.0.0.0:{ports['grpc']}" in conf, conf
    assert f"metrics_listen = 0.0.0.0:{ports['metrics']}" in conf, conf
    for probe, live in (("readinessProbe", False), ("livenessProbe", True)):
        cmd = c[probe]["exec"]["command"]
        assert cmd[0] == "twinedge-probe" and "--credentials" in cmd, cmd
        assert ("--live" in cmd) == live, (probe, cmd)
        assert f"127.0.0.1:{ports['grpc']}" in cmd, cmd
    vols = {v["name"]: v for v in tmpl["spec"]["volumes"]}
    assert vols["tls"]["secret"]["secretName"] == "twinedge-tls", vols
    assert vols["conf"]["configMap"]["name"] == kinds["ConfigMap"]["metadata"]["name"], vols
    assert "persistentVolumeClaim" in vols["store"], vols
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert "credentials = " + mounts["tls"] in conf and "store = " + mounts["store"] in conf, (mounts, conf)
    sel = dep["spec"]["selector"]["matchLabels"]
    assert kinds["Service"]["spec"]["selector"] == sel, (kinds["Service"]["spec"]["selector"], sel)
    assert sel.get("twinedge.io/role") == f"edge-{role}", sel
assert seen["a"] != seen["b"], seen
PY
echo "deploy files: ok"
