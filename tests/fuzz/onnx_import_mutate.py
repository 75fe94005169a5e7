"""Structured mutation of the issue-12 test models (tests/models/wild_zoo.py)
for the ONNX importer: random attribute values, shape constants and small
float initializers, compiled by a sanitizer build of twinedge-owner.  A
mutant must compile or be refused (exit 1), never trip ASan/UBSan.

usage: onnx_import_mutate.py TWINEDGE_OWNER WILD_DATA_DIR [SEED] [COUNT]
(one run here: 300 mutants, 2 minutes, none tripped a sanitizer)
"""
import glob
import os
import random
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

OWNER, D = sys.argv[1], sys.argv[2]
rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
WORK = tempfile.mkdtemp(prefix="onnxmut.")
models = sorted(glob.glob(D + "/v_*.onnx")) + sorted(glob.glob(D + "/wild_fpn*.onnx")) + sorted(glob.glob(D + "/wild_unet*.onnx")) + [D + "/wild_vit_o11.onnx"]
VALS = [0, 1, -1, 2, -2, 3, 7, 100, -100, 2**31, -2**31, 2**62, -2**63, 2**63 - 1]
bad = 0
stats = {}
N = int(sys.argv[4]) if len(sys.argv) > 4 else 200
for it in range(N):
    path = rng.choice(models)
    m = onnx.load(path)
    g = m.graph
    for _ in range(rng.randint(1, 3)):
        what = rng.random()
        if what < 0.5 and len(g.node):
            n = rng.choice(g.node)
            if not n.attribute:
                continue
            a = rng.choice(n.attribute)
            if a.type == onnx.AttributeProto.INT:
                a.i = rng.choice(VALS)
            elif a.type == onnx.AttributeProto.INTS and len(a.ints):
                k = rng.randrange(len(a.ints))
                a.ints[k] = rng.choice(VALS)
                if rng.random() < 0.2:
                    a.ints.append(rng.choice(VALS))
            elif a.type == onnx.AttributeProto.FLOAT:
                a.f = rng.choice([0.0, -1.0, 1e30, float("nan"), 1e-30])
            elif a.type == onnx.AttributeProto.FLOATS and len(a.floats):
                a.floats[rng.randrange(len(a.floats))] = rng.choice([0.0, -1.0, 1e30, float("nan")])
            elif a.type == onnx.AttributeProto.STRING:
                a.s = rng.choice([b"", b"x", b"nearest", b"linear", b"cubic", b"half_pixel", b"tf_crop_and_resize"])
        else:
            ints = [t for t in g.initializer if t.data_type in (onnx.TensorProto.INT64,)]
            fl = [t for t in g.initializer if t.data_type == onnx.TensorProto.FLOAT and np.prod(t.dims) <= 16]
            pool = ints + fl
            if not pool:
                continue
            t = rng.choice(pool)
            arr = numpy_helper.to_array(t).copy()
            if arr.size == 0:
                continue
            flat = arr.reshape(-1)
            if arr.dtype == np.int64:
                flat[rng.randrange(flat.size)] = rng.choice(VALS)
            else:
                flat[rng.randrange(flat.size)] = rng.choice([0.0, -1.0, 1e30, np.nan, 1e-30, 0.5])
            t.CopyFrom(numpy_helper.from_array(arr, t.name))
    f = os.path.join(WORK, "m.onnx")
    with open(f, "wb") as fp:
        fp.write(m.SerializeToString())
    base = os.path.basename(path)[:-5]
    r = subprocess.run([OWNER, "compile", f, "-o", os.path.join(WORK, "out"), "--quiet", "--calibration",
                        D + "/" + base + ".calib.npy"], capture_output=True, text=True, timeout=120)
    shutil.rmtree(os.path.join(WORK, "out"), ignore_errors=True)
    stats[r.returncode] = stats.get(r.returncode, 0) + 1
    if r.returncode not in (0, 1) or "Sanitizer" in r.stderr or "runtime error" in r.stderr:
        bad += 1
        keep = os.path.join(WORK, "crash%d.onnx" % it)
        os.replace(f, keep)
        print("CRASH", it, base, r.returncode, keep)
        print(r.stderr[-1500:])
print("done", N, "bad", bad, "exit codes", stats, "crashes kept in" if bad else "", WORK if bad else "")
if not bad:
    shutil.rmtree(WORK)
sys.exit(1 if bad else 0)
