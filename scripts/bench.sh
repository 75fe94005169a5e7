#!/usr/bin/env bash
# Build (if needed), generate the full-size benchmark models once (AlexNet,
# FaceNet, ResNet-18 with PyTorch; cached), then run the benchmark suite.
# Arguments go to twinedge-bench, e.g. `scripts/bench.sh --quick`.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${TE_BUILD_DIR:-build}
scripts/build.sh ${TE_CMAKE_ARGS:-}
DATA=${TE_TEST_DATA:-$PWD/$BUILD/testdata}/full
mkdir -p "$DATA"
/usr/bin/python3 tests/models/make_testdata.py "$DATA" --full --only alexnet,facenet,resnet18
exec "$BUILD/tools/bench/twinedge-bench" --models-dir "$DATA" "$@"
