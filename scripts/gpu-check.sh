#!/bin/sh
# Everything issue 10 asks of a GPU machine, in one run (docs/opencl.md):
#
#   1. the OpenCL plugin's tests on the GPU through its vendor ICD (NVIDIA by
#      default): every geometry on both exact paths, the float32 baseline,
#      and, where the reduced test models are there, every layer of each test
#      architecture on the DGEMM limbs;
#   2. the ulong GEMM's tile sizes tuned on that GPU (gemm_tile= / gemm_wg=);
#   3. per-layer figures for the full-size AlexNet and ResNet-18 with the
#      tuned tiles: blinded ulong kernels, blinded DGEMM limbs (each forced,
#      at the layer's ring width and at l = 64) and CLBlast SGEMM, batch 1
#      and 16, side by side in one run.
#
# Usage: scripts/gpu-check.sh [OUT_DIR]      (default: $OUT, else gpu-report)
# Environment:
#   TE_BUILD_DIR      build tree to use; built here (only the targets needed)
#                     when it lacks them (default build-gpu)
#   TE_GPU_PLATFORM   OpenCL platform name or index (default nvidia)
#   TE_GPU_DEVICE_TYPE  gpu (default); cpu with TE_GPU_PLATFORM=portable
#                     rehearses the whole script on PoCL
#   TE_GPU_REPS       repetitions per figure, medians (default 5)
#   TE_TEST_DATA      reduced test models (tests/models/make_testdata.py);
#                     without them the per-architecture tests are skipped
#   TE_GPU_MODELS     a directory with the full-size alexnet.onnx and
#                     resnet18.onnx (+ .calib.npy); else they are generated
#                     when PyTorch is installed, else the layer shapes in
#                     scripts/gpu-check.shapes are used with random weights
#                     of the same width (the timings depend only on those)
# Exit status: 0 when every step ran and every test passed.
set -u
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-gpu-report}}
BUILD=${TE_BUILD_DIR:-build-gpu}
PLATFORM=${TE_GPU_PLATFORM:-nvidia}
DEVTYPE=${TE_GPU_DEVICE_TYPE:-gpu}
REPS=${TE_GPU_REPS:-5}
mkdir -p "$OUT_DIR"
SUMMARY=$OUT_DIR/SUMMARY.md
status=0
say() { printf '%s\n' "$*" | tee -a "$SUMMARY"; }
fail() { say "FAILED: $*"; status=1; }
: > "$SUMMARY"
say "# twinedge GPU check ($(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
say ""

# ---- the GPU and its OpenCL ICD ----------------------------------------------
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi > "$OUT_DIR/nvidia-smi.txt" 2>&1
    say "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
fi
# The NVIDIA driver ships libnvidia-opencl.so.1; containers often lack the
# /etc/OpenCL/vendors entry the ICD loader looks for: supply one.
if ! grep -qsi nvidia /etc/OpenCL/vendors/*.icd 2>/dev/null; then
    lib=$(ldconfig -p 2>/dev/null | awk '/libnvidia-opencl\.so\.1/ {print $NF; exit}')
    if [ -n "$lib" ]; then
        mkdir -p "$OUT_DIR/icd"
        echo "$lib" > "$OUT_DIR/icd/nvidia.icd"
        OCL_ICD_VENDORS=$PWD/$OUT_DIR/icd
        export OCL_ICD_VENDORS
        say "- OpenCL ICD: $lib (vendors entry supplied in $OUT_DIR/icd)"
    fi
fi
if command -v clinfo >/dev/null 2>&1; then
    clinfo > "$OUT_DIR/clinfo.txt" 2>&1
    say "- OpenCL platforms: $(clinfo -l 2>/dev/null | tr '\n' ' ')"
fi
OCL_CFG="platform=$PLATFORM;device_type=$DEVTYPE"
say "- plugin configuration: $OCL_CFG"

# ---- build ------------------------------------------------------------------
need="twinedge-plugin-opencl twinedge-plugin-cpu test_opencl_plugin twinedge-bench"
if [ ! -x "$BUILD/tests/test_opencl_plugin" ] || [ ! -x "$BUILD/tools/bench/twinedge-bench" ]; then
    say "- building $need in $BUILD"
    if ! { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release ${TE_TEST_DATA:+-DTE_TEST_DATA=$TE_TEST_DATA} &&
           cmake --build "$BUILD" -j "$(nproc)" --target $need; } > "$OUT_DIR/build.log" 2>&1; then
        fail "build (see $OUT_DIR/build.log)"
        exit 1
    fi
fi
TWINEDGE_PLUGIN_DIR=$PWD/$BUILD/plugins
export TWINEDGE_PLUGIN_DIR
BENCH=$BUILD/tools/bench/twinedge-bench

# ---- 1. the tests on the GPU ---------------------------------------------------
say ""
say "## Tests on the GPU"
if TE_TEST_OCL_CONFIG=$OCL_CFG "$BUILD/tests/test_opencl_plugin" > "$OUT_DIR/test_opencl_plugin.log" 2>&1; then
    say "- test_opencl_plugin: passed ($(grep -c '\[       OK \]' "$OUT_DIR/test_opencl_plugin.log") tests)"
else
    fail "test_opencl_plugin (see $OUT_DIR/test_opencl_plugin.log)"
fi
if [ -n "${TE_TEST_DATA:-}" ] && [ -f "$TE_TEST_DATA/alexnet.onnx" ]; then
    for m in lenet5 alexnet vgg16 resnet18 resnet50 mobilenetv2 squeezenet11 facenet; do
        if TE_TEST_OCL_CONFIG=$OCL_CFG "$BUILD/tests/test_opencl_plugin" --arch $m > "$OUT_DIR/test_arch_$m.log" 2>&1
        then say "- DGEMM limbs, every layer of $m at l = 16, 32, 48, 64: bit-identical to the CPU plugin"
        else fail "DGEMM limbs on $m (see $OUT_DIR/test_arch_$m.log)"
        fi
    done
else
    say "- per-architecture DGEMM tests skipped: no reduced test models (set TE_TEST_DATA)"
fi

# ---- the models ------------------------------------------------------------------
src=""
if [ -n "${TE_GPU_MODELS:-}" ] && [ -f "$TE_GPU_MODELS/alexnet.onnx" ] && [ -f "$TE_GPU_MODELS/resnet18.onnx" ]; then
    src="--models-dir $TE_GPU_MODELS"
elif /usr/bin/python3 -c 'import torch, onnx' >/dev/null 2>&1 &&
     /usr/bin/python3 tests/models/make_testdata.py "$BUILD/testdata/full" --full --only alexnet,resnet18 \
         > "$OUT_DIR/models.log" 2>&1; then
    src="--models-dir $BUILD/testdata/full"
else
    src="--shapes scripts/gpu-check.shapes"
fi
say ""
say "## Per-layer figures"
say "- layers from: $src"

# ---- 2. tile sizes --------------------------------------------------------------
# Each candidate times the ulong kernels alone (kernel=ulong) over both
# models at batch 1 and 16; the smallest total wins.
best=""
best_t=""
for cand in 32x32x16:8x8 64x64x8:8x8 32x64x8:8x8 64x32x32:8x8 64x64x16:16x16 64x128x16:16x16 128x128x16:16x16; do
    tile=${cand%%:*}
    wg=${cand##*:}
    j=$OUT_DIR/tune-$tile-$wg.json
    if "$BENCH" kernels --plugin opencl --plugin-config "$OCL_CFG;kernel=ulong;gemm_tile=$tile;gemm_wg=$wg" \
           --models alexnet,resnet18 $src --batches 1,16 --reps 2 --json "$j" > "$OUT_DIR/tune-$tile-$wg.txt" 2>&1; then
        t=$(sed -n 's/.*"total_secure_s": \([0-9.]*\).*/\1/p' "$j")
        say "- gemm_tile=$tile gemm_wg=$wg: all blinded layers $(awk -v t="$t" 'BEGIN {printf "%.2f", t * 1000}') ms"
        if [ -z "$best_t" ] || awk -v a="$t" -v b="$best_t" 'BEGIN {exit !(a < b)}'; then
            best=$cand
            best_t=$t
        fi
    else
        say "- gemm_tile=$tile gemm_wg=$wg: refused or failed (see $OUT_DIR/tune-$tile-$wg.txt)"
    fi
done
if [ -z "$best" ]; then
    fail "no tile size ran"
    exit 1
fi
say "- chosen: gemm_tile=${best%%:*} gemm_wg=${best##*:}"

# ---- 3. the figures with the tuned tiles -------------------------------------------
cfg="$OCL_CFG;gemm_tile=${best%%:*};gemm_wg=${best##*:}"
if "$BENCH" kernels --plugin opencl --compare-paths --plugin-config "$cfg" --models alexnet,resnet18 $src \
       --batches 1,16 --reps "$REPS" --json "$OUT_DIR/kernels-gpu.json" > "$OUT_DIR/kernels-gpu.txt" 2>&1; then
    say ""
    say "\`twinedge-bench kernels --plugin opencl --compare-paths --plugin-config \"$cfg\" --batches 1,16 --reps $REPS\`"
    say "(ms; secure: kernel=auto; ulong / dgemm: each path forced; plain: CLBlast SGEMM on the same GPU):"
    say ""
    say '```'
    cat "$OUT_DIR/kernels-gpu.txt" | tee -a "$SUMMARY" > /dev/null
    say '```'
else
    fail "per-layer figures (see $OUT_DIR/kernels-gpu.txt)"
fi
say ""
[ $status -eq 0 ] && say "All steps passed." || say "Some steps failed (above)."
exit $status
