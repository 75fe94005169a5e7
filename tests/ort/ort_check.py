"""twinedge against onnxruntime on one model (issue 12's "done when").

usage: ort_check.py --node NODE --run TWINEDGE_RUN --data DIR [--hw H,W] [--top1] [--negative] MODEL

Runs DATA/MODEL.onnx three ways on one input:
  ort     onnxruntime (CPU, tests/ort/ort_run.js through NODE)
  float   twinedge-run --float: twinedge's import of the file run in float32
  private twinedge-run: compiled with --input-shape, both hosts as real
          twinedge-host processes on loopback, one private inference
and checks float against ort (max |float - ort| / max |ort| <= FLOAT_BOUND)
and private against ort (cosine >= 0.999, and with --top1, for a
classifier, the same argmax).

Input: DATA/MODEL.input.npy, or with --hw a seeded random input of that
height and width (a size the exporter never saw: the open dimensions are
fixed by --input-shape at compile time).

--negative: the checks must FAIL against onnxruntime's output of altered
copies of the model (one weight changed by 5% of its tensor's largest
|value|; the classifier's two best-scoring rows swapped; the classifier's
rows permuted), while passing on the unaltered model.

Exit status 0: as expected; 1: a check failed (or a control passed); 2: a
tool failed.
"""
import argparse
import hashlib
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
# Rounding alone: measured up to 6e-5 (MobileNetV2, whose depthwise/BN stack
# amplifies it; there twinedge, onnxruntime and PyTorch in float32 are each
# 1.4e-5..2.8e-5 from a float64 evaluation), 1e-6 or less on the others;
# one weight changed by 5% moves the output by 1e-2 (docs/owner.md).
FLOAT_BOUND = 2e-4
COSINE_MIN = 0.999


def tool(cmd, what):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        print("ERROR: %s failed (exit %d): %s\n%s" % (what, p.returncode, " ".join(cmd), p.stdout))
        sys.exit(2)
    return p.stdout


def out_path(base, k):
    """Output k's file, as twinedge-run and ort_run.js name them."""
    return base if k == 0 else base[:-4] + ".%d.npy" % k


def load_outputs(base, n):
    return [np.load(out_path(base, k)).astype(np.float64) for k in range(n)]


def ort_run(a, model, x, out, n_out=1):
    tool([a.node, os.path.join(HERE, "ort_run.js"), model, x, out], "onnxruntime")
    return load_outputs(out, n_out)[0] if n_out == 1 else load_outputs(out, n_out)


def compare(ref, flt, prv, top1):
    """Figures of float and private against the reference, and what failed."""
    out = dict(ok=True, why=[])
    if flt.shape != ref.shape or prv.shape != ref.shape:
        out["ok"] = False
        out["why"].append("shapes: ort %s float %s private %s" % (ref.shape, flt.shape, prv.shape))
        return out
    scale = np.abs(ref).max()
    out["float_rel"] = np.abs(flt - ref).max() / scale
    out["private_rel"] = np.abs(prv - ref).max() / scale
    r, p = ref.ravel(), prv.ravel()
    out["cosine"] = float(r @ p / (np.linalg.norm(r) * np.linalg.norm(p)))
    if not out["float_rel"] <= FLOAT_BOUND:
        out["why"].append("float: max error %.3g of max |ort| (bound %g)" % (out["float_rel"], FLOAT_BOUND))
    if not out["cosine"] >= COSINE_MIN:
        out["why"].append("private: cosine %.6f (bound %g)" % (out["cosine"], COSINE_MIN))
    if top1:
        out["top1"] = (int(ref.argmax()), int(prv.argmax()))
        if out["top1"][0] != out["top1"][1]:
            out["why"].append("private: argmax %d, ort %d" % (out["top1"][1], out["top1"][0]))
    out["ok"] = not out["why"]
    return out


def line(name, shape, c):
    s = "%-22s %-14s float/ort %.2e  private/ort %.2e  1-cosine %.1e" % (
        name, "x".join(map(str, shape)), c["float_rel"], c["private_rel"], 1 - c["cosine"])
    if "top1" in c:
        s += "  top-1 %d/%d" % c["top1"]
    return s


def consumers(graph, op):
    """Initializer names used as the weight (input 1) of nodes of type op, in order."""
    inits = {t.name for t in graph.initializer}
    return [n.input[1] for n in graph.node if n.op_type == op and len(n.input) > 1 and n.input[1] in inits]


def altered(model, how, ref, path):
    """A copy of model with a weight changed (how: weight, swap, permute)."""
    m = onnx.load(model)
    g = m.graph
    by = {t.name: t for t in g.initializer}
    if how == "weight":
        name = consumers(g, "Conv")[0]
        w = numpy_helper.to_array(by[name]).copy()
        w.flat[0] += 0.05 * np.abs(w).max()
    else:
        gemm = [n for n in g.node if n.op_type == "Gemm"][-1]
        name = gemm.input[1]
        trans_b = any(a.name == "transB" and a.i for a in gemm.attribute)
        w = numpy_helper.to_array(by[name]).copy()
        if not trans_b:
            w = w.T
        order = np.arange(w.shape[0])
        if how == "swap":
            best = np.argsort(ref.ravel())[::-1]
            order[best[0]], order[best[1]] = best[1], best[0]
        else:
            order = np.random.default_rng(7).permutation(w.shape[0])
        w = w[order]
        if len(gemm.input) > 2 and gemm.input[2] in by:
            b = numpy_helper.to_array(by[gemm.input[2]])[order]
            by[gemm.input[2]].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(b), gemm.input[2]))
        if not trans_b:
            w = w.T
    by[name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w), name))
    onnx.save(m, path)
    return path


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--hw")
    ap.add_argument("--top1", action="store_true")
    ap.add_argument("--negative", action="store_true")
    ap.add_argument("model")
    a = ap.parse_args(argv)
    model = os.path.join(a.data, a.model + ".onnx")
    with tempfile.TemporaryDirectory(prefix="ort_check.") as work:
        x_path = os.path.join(a.data, a.model + ".input.npy")
        x = np.load(x_path)
        in_name = onnx.load(model).graph.input[0].name
        shape_args = []
        if a.hw:
            h, w = (int(v) for v in a.hw.split(","))
            seed = int(hashlib.sha256(a.model.encode()).hexdigest()[:8], 16)
            x = np.random.default_rng(seed).standard_normal(x.shape[:-2] + (h, w)).astype(np.float32)
            x_path = os.path.join(work, "input.npy")
            np.save(x_path, x)
            shape_args = ["--input-shape", "%s:%s" % (in_name, ",".join(map(str, x.shape)))]
        outs = onnx.load(model).graph.output
        n_out = len(outs)
        # integer outputs (TopK's indices): every element must be onnxruntime's
        exact = [o.type.tensor_type.elem_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32) for o in outs]
        refs = ort_run(a, model, x_path, os.path.join(work, "ort.npy"), n_out)
        refs = refs if n_out > 1 else [refs]
        tool([a.run, model, x_path, "-o", os.path.join(work, "private.npy"), "--float",
              os.path.join(work, "float.npy")] + shape_args, "twinedge-run")
        flts = load_outputs(os.path.join(work, "float.npy"), n_out)
        prvs = load_outputs(os.path.join(work, "private.npy"), n_out)
        failed = 0
        # every output on its own (a detector's boxes and scores differ in scale)
        for k, (ref, flt, prv) in enumerate(zip(refs, flts, prvs)):
            c = compare(ref, flt.reshape(ref.shape) if flt.size == ref.size else flt,
                        prv.reshape(ref.shape) if prv.size == ref.size else prv, a.top1)
            name = a.model if n_out == 1 else "%s[%d]" % (a.model, k)
            if exact[k] and "float_rel" in c:
                for what, got in (("float", flt), ("private", prv)):
                    if got.size != ref.size or np.any(got.reshape(ref.shape) != ref):
                        c["why"].append("%s: integer output differs from onnxruntime's" % what)
                c["ok"] = not c["why"]
            if "cosine" in c:
                print(line(name, x.shape, c))
            if not c["ok"]:
                print("FAIL: %s: %s" % (name, "; ".join(c["why"])))
                failed += 1
        if failed:
            return 1
        if not a.negative:
            return 0
        ref, flt, prv = refs[0], flts[0], prvs[0]
        # negative controls: each altered model must be caught by the check named
        bad = 0
        for how, must in (("weight", "float:"), ("swap", "argmax"), ("permute", "cosine")):
            alt = altered(model, how, ref, os.path.join(work, how + ".onnx"))
            r2 = ort_run(a, alt, x_path, os.path.join(work, how + ".npy"))
            c2 = compare(r2, flt.reshape(r2.shape), prv.reshape(r2.shape), True)
            caught = [w for w in c2["why"] if must in w]
            print("control %-8s %s: %s" % (how, "caught" if caught else "NOT CAUGHT",
                                           "; ".join(c2["why"]) or "all checks passed"))
            bad += not caught
        if bad:
            print("FAIL: %d negative control(s) passed the comparison" % bad)
            return 1
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
