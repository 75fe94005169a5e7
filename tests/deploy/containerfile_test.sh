#!/usr/bin/env bash
# deploy/container/Containerfile without a container engine (CI has none):
# the runtime stage must hold every shared library the installed host,
# probe and plugins load.  The build tree is installed as the build stage
# installs it; each library those programs need (ldd) must come from a
# Debian package that the runtime stage's apt-get line installs, directly
# or as a dependency; the entrypoint must exist, run, and find its plugin.
# A negative control drops one runtime package and must be caught.
set -euo pipefail
SRC=$1
BUILD=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
CF=$SRC/deploy/container/Containerfile

# the runtime stage: after the last FROM, the packages of its apt-get install
awk '/^FROM /{n++} n==2' "$CF" >"$WORK/runtime"
[ -s "$WORK/runtime" ] || fail "no runtime stage (second FROM) in $CF"
tr ' \\' '\n\n' <"$WORK/runtime" | sed -n '/--no-install-recommends/,/^&&$/p' | grep -E '^[a-z0-9][a-z0-9.+-]+$' \
  | grep -vx 'apt-get' >"$WORK/pkgs" || true
[ -s "$WORK/pkgs" ] || fail "no packages found in the runtime stage's apt-get install"
grep -q '^ENTRYPOINT \["/usr/bin/twinedge-host"' "$WORK/runtime" || fail "the entrypoint is not /usr/bin/twinedge-host"

DESTDIR="$WORK/root" cmake --install "$BUILD" --prefix /usr >/dev/null || fail "cmake --install"
R=$WORK/root/usr
for b in twinedge-host twinedge-probe; do [ -x "$R/bin/$b" ] || fail "$b is not installed"; done
find "$R" -name 'libtwinedge-plugin-*.so' >"$WORK/plugins"
grep -q cpu "$WORK/plugins" || fail "the cpu plugin is not installed"

# every library each program needs, and the Debian package it comes from
closure() {  # packages -> themselves and their Depends/PreDepends, recursively
  apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
    --no-enhances "$@" 2>/dev/null | sed -n 's/^ *\(Pre\)\{0,1\}Depends: <\{0,1\}\([^>:]*\).*/\2/p; s/^\([a-z0-9][^ :]*\)$/\1/p' \
    | sort -u
}
# each program's libraries and their packages, looked up once (dpkg -S is slow)
for f in "$R/bin/twinedge-host" "$R/bin/twinedge-probe" $(cat "$WORK/plugins"); do
  LD_LIBRARY_PATH= ldd "$f" | awk -v f="$(basename "$f")" '$2 == "=>" {print f, $1, $3}' | grep -v ' libtwinedge'
done >"$WORK/libs"
: >"$WORK/needs"
while read -r path; do
  case "$path" in /*) ;; *) fail "a library is not found: $(grep -F " $path" "$WORK/libs" | head -1)" ;; esac
  pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -1 | cut -d: -f1) \
    || pkg=$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1) || pkg=""
  [ -n "$pkg" ] || fail "$path belongs to no package"
  echo "$path $pkg" >>"$WORK/needs"
done < <(awk '{print $3}' "$WORK/libs" | sort -u)
check() {  # PKGFILE -> 0 when every needed library's package is installed with them
  closure $(cat "$1") >"$WORK/have"
  local ok=0 path pkg
  while read -r path pkg; do
    grep -qx "$pkg" "$WORK/have" || { echo "  $pkg ($path, for $(grep -F " $path" "$WORK/libs" | cut -d' ' -f1 \
      | sort -u | tr '\n' ' '))"; ok=1; }
  done <"$WORK/needs"
  return $ok
}
check "$WORK/pkgs" >"$WORK/missing" || fail "the runtime stage lacks: $(cat "$WORK/missing")"
grep -vx 'libgrpc29' "$WORK/pkgs" >"$WORK/pkgs-less"
if check "$WORK/pkgs-less" >/dev/null; then fail "negative control: dropping libgrpc29 went unnoticed"; fi

# the installed host runs and finds the plugin it is configured with
"$R/bin/twinedge-host" --version | grep -q '^twinedge-host ' || fail "installed twinedge-host --version"
"$R/bin/twinedge-host" --config "$SRC/deploy/k8s/edge-b/host.conf" --check-config >/dev/null \
  || fail "installed twinedge-host --check-config"
echo "Containerfile runtime stage: $(wc -l <"$WORK/pkgs") packages cover the host, the probe and $(wc -l <"$WORK/plugins") plugins"
