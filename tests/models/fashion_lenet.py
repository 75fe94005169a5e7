#!/usr/bin/python3
"""Train LeNet-5 on Fashion-MNIST (Debian's copy) deterministically on the
CPU and export it with reference data for the accuracy tests.

    fashion_lenet.py OUTDIR [--force] [--data DIR] [--epochs N]

Writes into OUTDIR:
    fashion_lenet.onnx          LeNet-5 (input 1x1x28x28, output 1x10 logits)
    fashion_test_images.npy     10000x1x28x28 float32, already normalised:
                                x = (pixel/255 - mean) / std
    fashion_test_labels.npy     10000 int32 class labels
    fashion_ref_logits.npy      10000x10 float32 PyTorch logits for the test set
    fashion_calib.npy           64x1x28x28 float32 training images (normalised)
    fashion_lenet.json          preprocessing (mean, std), test accuracy, ...
Skipped when every output exists and was made by this version of the script.
"""
import argparse
import gzip
import hashlib
import json
import os
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import common  # noqa: E402
import zoo  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"
SEED = 20240
OUTPUTS = ("fashion_lenet.onnx", "fashion_test_images.npy", "fashion_test_labels.npy",
           "fashion_ref_logits.npy", "fashion_calib.npy", "fashion_lenet.json")


def read_idx(path):
    """Read an (optionally gzipped) idx file into a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fp:
        raw = fp.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError("%s: not an unsigned-byte idx file" % path)
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError("%s: truncated" % path)
    return data.reshape(dims)


def _script_hash():
    h = hashlib.sha256()
    for f in ("fashion_lenet.py", "zoo.py", "common.py"):
        with open(os.path.join(HERE, f), "rb") as fp:
            h.update(fp.read())
    return h.hexdigest()


def main(argv=None):
    ap = argparse.ArgumentParser(description="Train LeNet-5 on Fashion-MNIST")
    ap.add_argument("outdir")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    os.makedirs(args.outdir, exist_ok=True)
    meta_path = os.path.join(args.outdir, "fashion_lenet.json")
    digest = _script_hash()
    if not args.force and all(os.path.exists(os.path.join(args.outdir, f)) for f in OUTPUTS):
        with open(meta_path) as fp:
            meta = json.load(fp)
        if meta.get("source_sha256") == digest and meta.get("epochs") == args.epochs:
            print("fashion data up to date (accuracy %.4f)" % meta["accuracy"])
            return 0

    t0 = time.time()
    common.set_determinism(SEED, 2)
    xtr = read_idx(os.path.join(args.data, "train-images-idx3-ubyte.gz"))
    ytr = read_idx(os.path.join(args.data, "train-labels-idx1-ubyte.gz")).astype(np.int64)
    xte = read_idx(os.path.join(args.data, "t10k-images-idx3-ubyte.gz"))
    yte = read_idx(os.path.join(args.data, "t10k-labels-idx1-ubyte.gz")).astype(np.int64)
    xtr = xtr.astype(np.float32) / 255.0
    mean, std = float(xtr.mean()), float(xtr.std())
    norm = lambda a: ((a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a)  # noqa: E731
                      - mean) / std
    xtr = torch.from_numpy(norm(xtr)).unsqueeze(1)
    xte_n = norm(xte)[:, None].astype(np.float32)
    ytr_t = torch.from_numpy(ytr)

    model = zoo.LeNet5(size=28)
    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    steps_per_epoch = (len(xtr) + 127) // 128
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, epochs=args.epochs,
                                                steps_per_epoch=steps_per_epoch)
    model.train()
    for epoch in range(args.epochs):
        perm = torch.randperm(len(xtr), generator=gen)
        total = 0.0
        for i in range(0, len(xtr), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            loss = F.cross_entropy(model(xtr[idx]), ytr_t[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(idx)
        print("epoch %d loss %.4f (%.1fs)" % (epoch + 1, total / len(xtr), time.time() - t0))
        sys.stdout.flush()
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(xte_n[i:i + 1000]))
                            for i in range(0, len(xte_n), 1000)]).numpy()
    acc = float((logits.argmax(1) == yte).mean())
    print("test accuracy %.4f" % acc)
    if acc < 0.85:
        print("error: accuracy below 0.85", file=sys.stderr)
        return 1

    proto = common.export_onnx(model, torch.from_numpy(xte_n[:1]), opset=13)
    common.check_ops(proto)
    calib_idx = torch.randperm(len(xtr), generator=gen)[:64]
    out = lambda f: os.path.join(args.outdir, f)  # noqa: E731
    with open(out("fashion_lenet.onnx"), "wb") as fp:
        fp.write(proto.SerializeToString())
    np.save(out("fashion_test_images.npy"), np.ascontiguousarray(xte_n, dtype=np.float32))
    np.save(out("fashion_test_labels.npy"), yte.astype(np.int32))
    np.save(out("fashion_ref_logits.npy"), logits.astype(np.float32))
    np.save(out("fashion_calib.npy"), xtr[calib_idx].numpy().astype(np.float32))
    meta = dict(model="lenet5", input_shape=[1, 1, 28, 28], classes=10,
                preprocess=dict(formula="x = (pixel/255 - mean) / std", mean=[mean], std=[std]),
                accuracy=acc, epochs=args.epochs, seed=SEED,
                train_seconds=round(time.time() - t0, 1), torch=torch.__version__,
                source_sha256=digest)
    with open(meta_path + ".tmp", "w") as fp:
        json.dump(meta, fp, indent=1)
    os.replace(meta_path + ".tmp", meta_path)  # written last: marks completion
    print("done in %.1fs -> %s" % (time.time() - t0, args.outdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
