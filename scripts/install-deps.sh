#!/usr/bin/env bash
# Install twinedge's build and test dependencies from Debian 12's packages.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
PKGS=(
  build-essential cmake pkg-config
  libssl-dev libprotobuf-c-dev protobuf-c-compiler libgrpc-dev libbrotli-dev
  opencl-headers ocl-icd-opencl-dev pocl-opencl-icd libclblast-dev
  libcmocka-dev libopenblas-dev libstb-dev libpng-dev libjpeg-dev libonnx-dev
  python3 python3-torch python3-onnx python3-numpy
  dataset-fashion-mnist
  gnuplot-nox iproute2
  # operating the hosts: metrics, sd_notify, the deploy/ checks
  libmicrohttpd-dev libsystemd-dev libcjson-dev systemd prometheus python3-yaml
  # cross builds of the device side (scripts/cross-build.sh, tests/cross) and clang's Release build in CI
  gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross libc6-dev-armhf-cross qemu-user clang
)
# kubectl with kustomize renders deploy/k8s in the tests; Debian's
# kubernetes-client conflicts with a kubectl installed otherwise
if ! command -v kubectl >/dev/null; then PKGS+=(kubernetes-client); fi
# node and npm run onnxruntime, the reference of the tests labelled ort
if ! command -v node >/dev/null; then PKGS+=(nodejs); fi
if ! command -v npm >/dev/null; then PKGS+=(npm); fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${PKGS[@]}"

# onnxruntime (CPU) for the tests labelled ort: onnxruntime-node as pinned in
# tests/ort/package-lock.json (exact version, integrity hashes), into
# tests/ort/node_modules where CMake looks for it.  --ignore-scripts: its
# postinstall only fetches CUDA binaries from GitHub; the CPU ones are in
# the package.  Skipped when the pinned version is there and loads.
ORT_DIR="$(cd "$(dirname "$0")/../tests/ort" && pwd)"
ORT_WANT=$(node -p "require('$ORT_DIR/package.json').dependencies['onnxruntime-node']")
ORT_HAVE=$(node -e "const d='$ORT_DIR/node_modules/onnxruntime-node';require(d);
  process.stdout.write(require(d+'/package.json').version)" 2>/dev/null || true)
if [ "$ORT_HAVE" != "$ORT_WANT" ]; then
  (cd "$ORT_DIR" && npm ci --ignore-scripts --no-audit --no-fund)
fi
