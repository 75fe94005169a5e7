#!/usr/bin/python3
"""Sanity checks of the generated test data (run by ctest).

    check_testdata.py DIR [--fashion] [--selftest] [--skip-models]

For every model in DIR/models.txt: onnx.checker passes, only supported ops
(the "error" model must contain the unsupported node "my_unsupported_node"),
the .npy shapes agree with the manifest and the ONNX graph, and the float64
NumPy interpreter (onnx_ref.py) run on the ONNX file reproduces NAME.ref.npy
(so the exported graph means what PyTorch computed).  Prints the op
histogram per model.
--fashion: also checks the Fashion-MNIST files in DIR.
--selftest: first cross-checks onnx_ref against torch.nn.functional on
randomised layer configurations (conv pads/groups/dilation, pooling with
ceil_mode and count_include_pad, LRN, pads, softmax).
"""
import argparse
import json
import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import common  # noqa: E402
import onnx_ref  # noqa: E402

FAILS = []


def fail(msg):
    FAILS.append(msg)
    print("FAIL: " + msg)


def _dims(vi):
    return [d.dim_value for d in vi.type.tensor_type.shape.dim]


def _close(got, want, tol):
    err = float(np.abs(got - want).max()) if want.size else 0.0
    return err <= tol * max(1.0, float(np.abs(want).max())), err


def check_model(d, row):
    name, shape, size, kind, opset = row.split()
    shape = [int(v) for v in shape.split("x")]
    p = lambda ext: os.path.join(d, name + ext)  # noqa: E731
    try:
        m = onnx.load(p(".onnx"))
        onnx.checker.check_model(m)
    except Exception as e:  # noqa: BLE001
        return fail("%s: onnx load/check: %s" % (name, e))
    hist = common.op_histogram(m)
    print("%-22s %-5s %-7s opset %-2s in %-14s %s" % (
        name, kind, size, opset, "x".join(map(str, shape)),
        " ".join("%s:%d" % kv for kv in sorted(hist.items()))))
    if m.opset_import[0].version != int(opset):
        fail("%s: opset %d, manifest says %s" % (name, m.opset_import[0].version, opset))
    if kind == "error":
        if not any(n.name == "my_unsupported_node" and n.op_type not in common.ALLOWED_OPS
                   for n in m.graph.node):
            fail("%s: no unsupported node named my_unsupported_node" % name)
    else:
        try:
            common.check_ops(m)
        except ValueError as e:
            fail("%s: %s" % (name, e))
    x = np.load(p(".input.npy"))
    calib = np.load(p(".calib.npy"))
    gin = [i for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}]
    if list(x.shape) != shape or _dims(gin[0]) != shape:
        fail("%s: input shape %s / graph %s / manifest %s" % (name, x.shape, _dims(gin[0]), shape))
    if x.dtype != np.float32 or calib.dtype != np.float32:
        fail("%s: inputs must be float32" % name)
    if calib.ndim != x.ndim or calib.shape[1:] != x.shape[1:] or calib.shape[0] < 2:
        fail("%s: calib shape %s" % (name, calib.shape))
    if np.abs(calib - x).max() == 0:
        fail("%s: calib equals input" % name)
    if kind == "error":
        if os.path.exists(p(".ref.npy")):
            fail("%s: the error model must not have a reference" % name)
        return
    ref = np.load(p(".ref.npy"))
    if ref.dtype != np.float32 or not np.all(np.isfinite(ref)):
        fail("%s: ref must be finite float32" % name)
    if list(ref.shape) != _dims(m.graph.output[0]):
        fail("%s: ref shape %s, graph output %s" % (name, ref.shape, _dims(m.graph.output[0])))
    if float(np.std(ref)) == 0.0 and ref.size > 1:
        fail("%s: constant reference output" % name)
    got = onnx_ref.run(m, x)
    ok, err = _close(got, ref, 2e-3)
    if not ok:
        fail("%s: onnx_ref differs from ref.npy by %.3g" % (name, err))


def check_fashion(d):
    p = lambda f: os.path.join(d, f)  # noqa: E731
    with open(p("fashion_lenet.json")) as fp:
        meta = json.load(fp)
    xs = np.load(p("fashion_test_images.npy"))
    ys = np.load(p("fashion_test_labels.npy"))
    lg = np.load(p("fashion_ref_logits.npy"))
    cal = np.load(p("fashion_calib.npy"))
    m = onnx.load(p("fashion_lenet.onnx"))
    onnx.checker.check_model(m)
    common.check_ops(m)
    if xs.shape != (10000, 1, 28, 28) or xs.dtype != np.float32:
        fail("fashion images shape/dtype %s %s" % (xs.shape, xs.dtype))
    if ys.shape != (10000,) or ys.min() < 0 or ys.max() > 9:
        fail("fashion labels")
    if lg.shape != (10000, 10) or cal.shape[1:] != (1, 28, 28) or cal.shape[0] < 16:
        fail("fashion logits/calib shapes %s %s" % (lg.shape, cal.shape))
    acc = float((lg.argmax(1) == ys).mean())
    if acc < 0.85 or abs(acc - meta["accuracy"]) > 1e-9:
        fail("fashion accuracy %.4f (json %.4f)" % (acc, meta["accuracy"]))
    mean, std = meta["preprocess"]["mean"][0], meta["preprocess"]["std"][0]
    pix = xs * std + mean
    if pix.min() < -1e-4 or pix.max() > 1 + 1e-4:
        fail("fashion images do not invert to [0,1] with the recorded mean/std")
    for i in range(0, 200, 7):
        ok, err = _close(onnx_ref.run(m, xs[i:i + 1]), lg[i:i + 1], 1e-4)
        if not ok:
            fail("fashion image %d: onnx_ref differs by %.3g" % (i, err))
            break
    print("fashion: accuracy %.4f, mean %.4f std %.4f, ops %s" % (
        acc, mean, std, dict(common.op_histogram(m))))


# ---------------------------------------------------------------- self-test

def _single(op, x, inits, **attrs):
    names = ["input"] + [k for k, _ in inits]
    node = helper.make_node(op, names, ["output"], **attrs)
    g = helper.make_graph([node], "t", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def selftest():
    rng = np.random.default_rng(5)
    n_cases = 0
    for _ in range(40):
        g = int(rng.choice([1, 2, 4]))
        cin, cout = g * int(rng.integers(1, 4)), g * int(rng.integers(1, 4))
        kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        dh, dw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        pads = [int(v) for v in rng.integers(0, 3, 4)]  # t, l, b, r
        h, w = int(rng.integers(6, 12)), int(rng.integers(6, 12))
        x = rng.standard_normal((1, cin, h, w)).astype(np.float32)
        wt = rng.standard_normal((cout, cin // g, kh, kw)).astype(np.float32)
        b = rng.standard_normal(cout).astype(np.float32)
        m = _single("Conv", x, [("w", wt), ("b", b)], kernel_shape=[kh, kw], strides=[sh, sw],
                    dilations=[dh, dw], pads=pads, group=g)
        xt = F.pad(torch.from_numpy(x).double(), (pads[1], pads[3], pads[0], pads[2]))
        want = F.conv2d(xt, torch.from_numpy(wt).double(), torch.from_numpy(b).double(),
                        (sh, sw), 0, (dh, dw), g).numpy()
        got = onnx_ref.run(m, x)
        if got.shape != want.shape or not np.allclose(got, want, atol=1e-9):
            fail("selftest conv %s" % dict(g=g, k=(kh, kw), s=(sh, sw), d=(dh, dw), p=pads))
        n_cases += 1
    for _ in range(60):
        k = [int(rng.integers(1, 4)), int(rng.integers(1, 4))]
        s = [int(rng.integers(1, 3)), int(rng.integers(1, 3))]
        p = [int(rng.integers(0, k[0] // 2 + 1)), int(rng.integers(0, k[1] // 2 + 1))]
        ceil, incl = int(rng.integers(0, 2)), int(rng.integers(0, 2))
        h, w = int(rng.integers(4, 10)), int(rng.integers(4, 10))
        x = rng.standard_normal((1, 3, h, w)).astype(np.float32)
        xt = torch.from_numpy(x).double()
        pads = [p[0], p[1], p[0], p[1]]
        mx = onnx_ref.run(_single("MaxPool", x, [], kernel_shape=k, strides=s, pads=pads,
                                  ceil_mode=ceil), x)
        av = onnx_ref.run(_single("AveragePool", x, [], kernel_shape=k, strides=s, pads=pads,
                                  ceil_mode=ceil, count_include_pad=incl), x)
        wmx = F.max_pool2d(xt, k, s, p, ceil_mode=bool(ceil)).numpy()
        wav = F.avg_pool2d(xt, k, s, p, ceil_mode=bool(ceil), count_include_pad=bool(incl)).numpy()
        if mx.shape != wmx.shape or not np.allclose(mx, wmx):
            fail("selftest maxpool k%s s%s p%s ceil%d in %dx%d" % (k, s, p, ceil, h, w))
        if av.shape != wav.shape or not np.allclose(av, wav):
            fail("selftest avgpool k%s s%s p%s ceil%d incl%d in %dx%d" % (k, s, p, ceil, incl, h, w))
        n_cases += 2
    x = rng.standard_normal((1, 7, 4, 5)).astype(np.float32)
    for size in (1, 3, 5):
        got = onnx_ref.run(_single("LRN", x, [], size=size, alpha=0.7, beta=0.6, bias=1.5), x)
        want = F.local_response_norm(torch.from_numpy(x).double(), size, 0.7, 0.6, 1.5).numpy()
        if not np.allclose(got, want):
            fail("selftest LRN size %d" % size)
        n_cases += 1
    for mode, tmode in (("constant", "constant"), ("reflect", "reflect"), ("edge", "replicate")):
        pads = np.array([0, 0, 1, 2, 0, 0, 2, 1], dtype=np.int64)
        got = onnx_ref.run(_single("Pad", x, [("pads", pads)], mode=mode), x)
        want = F.pad(torch.from_numpy(x), (2, 1, 1, 2), mode=tmode).numpy()
        if not np.allclose(got, want):
            fail("selftest Pad %s" % mode)
        n_cases += 1
    got = onnx_ref.run(_single("Softmax", x, [], axis=1), x)
    if not np.allclose(got, F.softmax(torch.from_numpy(x).double(), 1).numpy()):
        fail("selftest Softmax axis=1")
    print("onnx_ref self-test: %d cases" % (n_cases + 1))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--fashion", action="store_true")
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("--skip-models", action="store_true", help="do not check models.txt")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    if args.selftest:
        selftest()
    mf = os.path.join(args.dir, "models.txt")
    rows = []
    if os.path.exists(mf) and not args.skip_models:
        with open(mf) as fp:
            rows = [ln.strip() for ln in fp if ln.strip() and not ln.startswith("#")]
    if not rows and not args.skip_models:
        fail("no models listed in %s" % mf)
    for row in rows:
        check_model(args.dir, row)
    if args.fashion:
        check_fashion(args.dir)
    print("%d problem(s)" % len(FAILS))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
