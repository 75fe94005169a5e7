#!/usr/bin/python3
"""Generate the twinedge test models and their reference data.

    make_testdata.py OUTDIR [--full] [--only NAME,...] [--force] [--list]

For each model NAME it writes into OUTDIR:
    NAME.onnx        the model (single input "input", single output "output")
    NAME.input.npy   one input, float32, batch 1
    NAME.calib.npy   4 other inputs stacked on axis 0 (calibration data)
    NAME.ref.npy     float32 reference output for NAME.input.npy: the PyTorch
                     eval-mode output, or for hand-built ONNX models the
                     float64 NumPy interpreter (onnx_ref.py) rounded to float32
                     (not written for the deliberately unsupported model)
and a manifest OUTDIR/models.txt, one model per line:
    NAME  SHAPE  SIZE  KIND  OPSET
SHAPE is the input shape joined by 'x' (e.g. 1x3x67x67), SIZE is "reduced"
or "full", KIND is "arch" (one of the 8 architectures), "op" (op coverage)
or "error" (contains an unsupported op; the importer must reject it).

Default: reduced input sizes for the 8 architectures plus every ops_zoo
model.  --full: the 8 architectures at full size only (slow suite).
Deterministic (fixed per-model seeds, 2 threads) and idempotent: a model is
regenerated only when its files are missing or the generator sources changed.
"""
import argparse
import hashlib
import json
import os
import sys
import time
import warnings
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402

import common  # noqa: E402
import onnx_ref  # noqa: E402
import ops_zoo  # noqa: E402
import zoo  # noqa: E402

N_CALIB = 4
N_INIT = 8  # batch used to initialise weights / BN statistics
SOURCES = ("common.py", "zoo.py", "ops_zoo.py", "onnx_ref.py", "make_testdata.py")


def _sources_hash():
    h = hashlib.sha256()
    for f in SOURCES:
        with open(os.path.join(HERE, f), "rb") as fp:
            h.update(fp.read())
    h.update(torch.__version__.encode() + onnx.__version__.encode())
    return h.hexdigest()


def _entries(full):
    """(name, kind, maker) in manifest order."""
    out = [(n, "arch", None) for n in zoo.ARCHS]
    if not full:
        for n, fn in ops_zoo.OPS.items():
            out.append((n, "op", fn))
    return out


def _files(outdir, name, with_ref=True):
    fs = [name + ".onnx", name + ".input.npy", name + ".calib.npy"]
    if with_ref:
        fs.append(name + ".ref.npy")
    return [os.path.join(outdir, f) for f in fs]


def _save_npy(path, arr):
    tmp = path + ".tmp.npy"
    np.save(tmp, np.ascontiguousarray(arr, dtype=np.float32))
    os.replace(tmp, path)


def _save_onnx(path, model):
    tmp = path + ".tmp"
    with open(tmp, "wb") as fp:
        fp.write(model.SerializeToString())
    os.replace(tmp, path)


def generate(name, kind, maker, full):
    """Build one model; returns dict(onnx, input, calib, ref, kind, opset)."""
    seed = zlib.crc32(name.encode()) & 0x7FFFFFFF
    common.set_determinism(seed, 2)
    gen = torch.Generator().manual_seed(seed)
    if kind == "arch":
        model, shape = zoo.build(name, full=full)
        spec = dict(kind="torch", model=model, shape=shape, opset=13)
    else:
        spec = maker()
    shape = tuple(spec["shape"])
    init_batch = common.random_inputs(shape, N_INIT, gen)
    x = common.random_inputs(shape, 1, gen)
    calib = common.random_inputs(shape, N_CALIB, gen)
    error = bool(spec.get("error", False))
    if spec["kind"] == "torch":
        model = spec["model"]
        common.init_model(model, init_batch, gen)
        with torch.no_grad():
            ref = model(x).numpy()
        proto = common.export_onnx(model, x, opset=spec["opset"])
        opset = spec["opset"]
    else:
        proto = spec["model"]
        onnx.checker.check_model(proto, full_check=True)
        opset = proto.opset_import[0].version
        ref = None if error else onnx_ref.run(proto, x.numpy()).astype(np.float32)
    common.check_ops(proto, allow_unsupported=error)
    if ref is not None and not np.all(np.isfinite(ref)):
        raise RuntimeError("%s: non-finite reference output" % name)
    return dict(onnx=proto, input=x.numpy(), calib=calib.numpy(), ref=ref,
                kind="error" if error else kind, opset=opset)


def _read_manifest(path):
    rows = {}
    if os.path.exists(path):
        with open(path) as fp:
            for line in fp:
                if line.strip() and not line.startswith("#"):
                    rows[line.split()[0]] = line.rstrip("\n")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--full", action="store_true", help="full-size architectures only")
    ap.add_argument("--only", default="", help="comma-separated model names")
    ap.add_argument("--force", action="store_true", help="regenerate even if up to date")
    ap.add_argument("--list", action="store_true", help="list the model names and exit")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")

    entries = _entries(args.full)
    if args.list:
        print("\n".join(e[0] for e in entries))
        return 0
    if args.only:
        want = [w.strip() for w in args.only.split(",") if w.strip()]
        known = {e[0] for e in entries}
        bad = [w for w in want if w not in known]
        if bad:
            ap.error("unknown model(s): %s (use --list)" % ", ".join(bad))
        entries = [e for e in entries if e[0] in want]

    os.makedirs(args.outdir, exist_ok=True)
    stamp_dir = os.path.join(args.outdir, ".stamps")
    os.makedirs(stamp_dir, exist_ok=True)
    size = "full" if args.full else "reduced"
    src_hash = _sources_hash()
    manifest_path = os.path.join(args.outdir, "models.txt")
    rows = _read_manifest(manifest_path)
    t_all = time.time()
    for name, kind, maker in entries:
        stamp_path = os.path.join(stamp_dir, name + ".json")
        stamp = dict(sources=src_hash, size=size)
        old = None
        if os.path.exists(stamp_path):
            with open(stamp_path) as fp:
                old = json.load(fp)
        if (not args.force and old and old.get("sources") == src_hash and
                old.get("size") == size and old.get("row") in rows.values() and
                all(os.path.exists(f) for f in _files(args.outdir, name, old.get("kind") != "error"))):
            print("%-22s up to date" % name)
            continue
        t0 = time.time()
        d = generate(name, kind, maker, args.full)
        fonnx, finp, fcal, fref = _files(args.outdir, name)
        _save_onnx(fonnx, d["onnx"])
        _save_npy(finp, d["input"])
        _save_npy(fcal, d["calib"])
        if d["ref"] is not None:
            _save_npy(fref, d["ref"])
        elif os.path.exists(fref):
            os.remove(fref)
        row = "%s %s %s %s %d" % (name, "x".join(str(v) for v in d["input"].shape),
                                  size, d["kind"], d["opset"])
        rows[name] = row
        stamp.update(kind=d["kind"], row=row)
        with open(stamp_path, "w") as fp:
            json.dump(stamp, fp)
        hist = common.op_histogram(d["onnx"])
        print("%-22s %-6s in %-14s out %-12s %5.2fs  %s" % (
            name, d["kind"], "x".join(map(str, d["input"].shape)),
            "-" if d["ref"] is None else "x".join(map(str, d["ref"].shape)),
            time.time() - t0, " ".join("%s:%d" % kv for kv in sorted(hist.items()))))
        sys.stdout.flush()

    # manifest: every known model of this size class whose files exist
    order = [e[0] for e in _entries(args.full)]
    tmp = manifest_path + ".tmp"
    with open(tmp, "w") as fp:
        fp.write("# name input_shape size kind opset  (kind: arch | op | error)\n")
        for n in order:
            if n in rows:
                fp.write(rows[n] + "\n")
    os.replace(tmp, manifest_path)
    print("done in %.1fs -> %s" % (time.time() - t_all, args.outdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
