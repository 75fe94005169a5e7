#!/usr/bin/python3
"""Reference vectors for the executor's non-linear ops (tests/unit/test_ops.c).

Usage: gen_ops_vectors.py OUTDIR

Writes OUTDIR/<case>_in<k>.npy, OUTDIR/<case>_out.npy (float32) and
OUTDIR/manifest.txt, one case per line:
    <case> <te_op number> <n_in> key=value ...
References are computed in float64 with PyTorch (or NumPy where PyTorch has
no equivalent) from the float32 inputs.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

# mirror of te_op in core/te_model.h
OP = dict(RELU=2, LEAKY_RELU=3, PRELU=4, CLIP=5, SIGMOID=6, TANH=7, HARD_SIGMOID=8, HARD_SWISH=9,
          MAXPOOL=10, AVGPOOL=11, GLOBAL_AVGPOOL=12, LRN=13, RESHAPE=14, CONCAT=15, ADD=16, SUB=17,
          MUL=18, DIV=19, SOFTMAX=20, PAD=21, LPNORM=22, REDUCE_L2=23, TRANSPOSE=24, SQRT=26, REDUCE_MIN=43,
          REDUCE_PROD=44)
PAD_MODE = dict(constant=0, reflect=1, edge=2)

rng = np.random.default_rng(1234)
out_dir = sys.argv[1]
os.makedirs(out_dir, exist_ok=True)
manifest = []


def rnd(*shape, lo=-3.0, hi=3.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


def t(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def case(name, op, inputs, out, **attrs):
    for k, a in enumerate(inputs):
        np.save(os.path.join(out_dir, f"{name}_in{k}.npy"), np.ascontiguousarray(a, dtype=np.float32))
    out = out.numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    np.save(os.path.join(out_dir, f"{name}_out.npy"), np.ascontiguousarray(out, dtype=np.float32))
    kv = []
    for k, v in attrs.items():
        if isinstance(v, (list, tuple)):
            v = ",".join(str(int(e)) for e in v) if len(v) else "-"
        kv.append(f"{k}={v}")
    manifest.append(" ".join([name, str(OP[op]), str(len(inputs))] + kv))


# ---- element-wise -------------------------------------------------------------
x = rnd(2, 3, 4, 5)
case("relu", "RELU", [x], F.relu(t(x)))
case("leaky_relu", "LEAKY_RELU", [x], F.leaky_relu(t(x), 0.1), alpha=0.1)
case("clip", "CLIP", [x], torch.clamp(t(x), -0.5, 0.7), fmin=-0.5, fmax=0.7)
xs = np.concatenate([x.ravel(), np.array([-100, -30, -10, 0, 10, 30, 100], np.float32)])
case("sigmoid", "SIGMOID", [xs], torch.sigmoid(t(xs)))
case("tanh", "TANH", [xs], torch.tanh(t(xs)))
case("hard_sigmoid", "HARD_SIGMOID", [xs], torch.clamp(0.2 * t(xs) + 0.5, 0, 1), alpha=0.2, beta=0.5)
case("hard_swish", "HARD_SWISH", [xs], F.hardswish(t(xs)))
xp = rnd(3, 7, lo=0.0, hi=50.0)
case("sqrt", "SQRT", [xp], torch.sqrt(t(xp)))
case("reshape", "RESHAPE", [x], t(x).reshape(6, 20))

# PRelu: slope broadcast onto the input
for nm, sshape in [("prelu_c11", (3, 1, 1)), ("prelu_1", (1,)), ("prelu_w", (5,)), ("prelu_full", (2, 3, 4, 5))]:
    s = rnd(*sshape, lo=0.0, hi=0.5)
    ref = torch.where(t(x) >= 0, t(x), t(x) * t(s))
    case(nm, "PRELU", [x, s], ref)
s = rnd(3, 1, 1, lo=0.0, hi=0.5)
case("prelu_torch", "PRELU", [x, s], F.prelu(t(x), t(s).reshape(3)))

# ---- broadcasting binary ops ----------------------------------------------------
bin_ops = [("add", "ADD", torch.add), ("sub", "SUB", torch.sub), ("mul", "MUL", torch.mul),
           ("div", "DIV", torch.div)]
shapes = [((2, 3, 4, 5), (3, 1, 1)), ((2, 3, 4, 5), (1,)), ((2, 3, 4, 5), (2, 3, 1, 1)), ((2, 3, 4, 5), (5,)),
          ((2, 1, 4, 1), (3, 1, 5)), ((1,), (2, 3, 4)), ((3, 1, 1), (2, 3, 4, 5)), ((2, 3), (2, 3))]
for nm, op, fn in bin_ops:
    for k, (sa, sb) in enumerate(shapes):
        a = rnd(*sa)
        b = rnd(*sb, lo=0.5, hi=2.0) * np.where(rng.random(sb) < 0.5, -1, 1).astype(np.float32)
        case(f"{nm}_{k}", op, [a, b], fn(t(a), t(b)))

# ---- pooling ---------------------------------------------------------------------


def pool_attrs(k, s, pads, ceil, dil=(1, 1), cip=0):
    return dict(kernel=k, stride=s, pads=pads, ceil=int(ceil), dilation=dil, cip=cip)


xi = rnd(2, 3, 9, 11)
xj = rnd(1, 2, 7, 7)
xk = rnd(1, 2, 8, 10)  # ceil mode with padding overhangs on both axes
# symmetric-pad max pools straight from torch
for nm, inp, k, s, p, ceil, dil in [
        ("maxpool_k3s2", xi, (3, 3), (2, 2), (0, 0), False, (1, 1)),
        ("maxpool_k3s2_ceil", xi, (3, 3), (2, 2), (0, 0), True, (1, 1)),
        ("maxpool_k3s2p1_ceil", xi, (3, 3), (2, 2), (1, 1), True, (1, 1)),
        ("maxpool_k2s2_ceil", xj, (2, 2), (2, 2), (0, 0), True, (1, 1)),
        ("maxpool_k3s2p1_ceil_overhang", xk, (3, 3), (2, 2), (1, 1), True, (1, 1)),
        ("maxpool_rect", xi, (2, 3), (1, 2), (1, 1), False, (1, 1)),
        ("maxpool_dil2", xi, (3, 2), (1, 2), (1, 1), False, (2, 3)),
        ("maxpool_dil2_ceil", xi, (3, 3), (2, 2), (1, 0), True, (2, 2))]:
    ref = F.max_pool2d(t(inp), k, s, p, dilation=dil, ceil_mode=ceil)
    case(nm, "MAXPOOL", [inp], ref, **pool_attrs(k, s, (p[0], p[1], p[0], p[1]), ceil, dil))
# asymmetric pads: pad with -inf explicitly (windows never lie wholly in padding here)
for nm, inp, k, s, pads, ceil in [("maxpool_asym", xj, (3, 3), (2, 2), (0, 1, 1, 0), True),
                                  ("maxpool_asym2", xi, (2, 2), (2, 2), (1, 0, 0, 1), False)]:
    padded = F.pad(t(inp), (pads[1], pads[3], pads[0], pads[2]), value=-np.inf)
    ref = F.max_pool2d(padded, k, s, 0, ceil_mode=ceil)
    case(nm, "MAXPOOL", [inp], ref, **pool_attrs(k, s, pads, ceil))

for nm, inp, k, s, p, ceil in [
        ("avgpool_k3s2", xi, (3, 3), (2, 2), (0, 0), False),
        ("avgpool_k3s2p1", xi, (3, 3), (2, 2), (1, 1), False),
        ("avgpool_k3s2p1_ceil", xi, (3, 3), (2, 2), (1, 1), True),
        ("avgpool_k2s2_ceil", xj, (2, 2), (2, 2), (0, 0), True),
        ("avgpool_k3s2p1_ceil_overhang", xk, (3, 3), (2, 2), (1, 1), True),
        ("avgpool_rect", xi, (2, 3), (1, 2), (1, 1), True)]:
    for cip in (0, 1):
        ref = F.avg_pool2d(t(inp), k, s, p, ceil_mode=ceil, count_include_pad=bool(cip))
        case(f"{nm}_cip{cip}", "AVGPOOL", [inp], ref,
             **pool_attrs(k, s, (p[0], p[1], p[0], p[1]), ceil, cip=cip))
# asymmetric pads: explicit zero padding; without count_include_pad, divide by the
# number of real elements in each window
for nm, inp, k, s, pads, ceil in [("avgpool_asym", xj, (3, 3), (2, 2), (0, 1, 1, 0), True),
                                  ("avgpool_asym2", xi, (3, 2), (2, 2), (1, 0, 2, 1), False)]:
    torch_pad = (pads[1], pads[3], pads[0], pads[2])
    s_sum = F.avg_pool2d(F.pad(t(inp), torch_pad), k, s, 0, ceil_mode=ceil)
    case(f"{nm}_cip1", "AVGPOOL", [inp], s_sum, **pool_attrs(k, s, pads, ceil, cip=1))
    ones = F.avg_pool2d(F.pad(torch.ones_like(t(inp)), torch_pad), k, s, 0, ceil_mode=ceil)
    case(f"{nm}_cip0", "AVGPOOL", [inp], s_sum / ones, **pool_attrs(k, s, pads, ceil, cip=0))

case("global_avgpool", "GLOBAL_AVGPOOL", [xi], F.adaptive_avg_pool2d(t(xi), 1))

# ---- LRN -----------------------------------------------------------------------
xl = rnd(2, 7, 4, 5)
case("lrn_alexnet", "LRN", [xl], F.local_response_norm(t(xl), 5, 1e-4, 0.75, 1.0),
     size=5, alpha=1e-4, beta=0.75, bias=1.0)
case("lrn_strong", "LRN", [xl], F.local_response_norm(t(xl), 3, 0.5, 0.75, 2.0),
     size=3, alpha=0.5, beta=0.75, bias=2.0)


def lrn_onnx(a, size, alpha, beta, bias):
    # direct transcription of the ONNX definition (also for even sizes)
    C = a.shape[1]
    out = np.empty_like(a)
    for c in range(C):
        lo = max(0, c - (size - 1) // 2)
        hi = min(C - 1, c + (size - 1 + 1) // 2)
        ss = np.sum(a[:, lo:hi + 1] ** 2, axis=1)
        out[:, c] = a[:, c] / (bias + alpha / size * ss) ** beta
    return out


case("lrn_even", "LRN", [xl], lrn_onnx(xl.astype(np.float64), 4, 0.3, 0.6, 1.5), size=4, alpha=0.3, beta=0.6,
     bias=1.5)

# ---- layout ops -----------------------------------------------------------------
c0, c1, c2 = rnd(2, 3, 4), rnd(2, 1, 4), rnd(2, 5, 4)
case("concat_axis1", "CONCAT", [c0, c1, c2], torch.cat([t(c0), t(c1), t(c2)], 1), axis=1)
d0, d1 = rnd(2, 3, 4), rnd(2, 3, 2)
case("concat_axis_neg1", "CONCAT", [d0, d1], torch.cat([t(d0), t(d1)], -1), axis=-1)
case("concat_axis0", "CONCAT", [d0, d0], torch.cat([t(d0), t(d0)], 0), axis=0)

xsm = rnd(2, 5, 3, 4, lo=-10, hi=10)
xsm[0, :, 0, 0] += 200.0  # large logits: must stay finite
case("softmax_axis1", "SOFTMAX", [xsm], torch.softmax(t(xsm), 1), axis=1)
case("softmax_axis_neg1", "SOFTMAX", [xsm], torch.softmax(t(xsm), -1), axis=-1)
xfc = rnd(3, 10, lo=-50, hi=50)
case("softmax_fc", "SOFTMAX", [xfc], torch.softmax(t(xfc), 1), axis=1)

xpad = rnd(1, 2, 4, 5)
for mode in ("constant", "reflect", "edge"):
    pads = [0, 0, 1, 2, 0, 1, 2, 3] if mode != "reflect" else [0, 0, 2, 1, 0, 0, 3, 4]
    r = len(xpad.shape)
    np_pads = [(pads[i], pads[r + i]) for i in range(r)]
    if mode == "constant":
        ref = np.pad(xpad.astype(np.float64), np_pads, mode="constant", constant_values=1.5)
    else:
        ref = np.pad(xpad.astype(np.float64), np_pads, mode=mode)
    case(f"pad_{mode}", "PAD", [xpad], ref, ints=pads, mode=PAD_MODE[mode], pad_value=1.5)
# reflect more than once around a short axis
xshort = rnd(2, 3)
case("pad_reflect_wrap", "PAD", [xshort], np.pad(xshort.astype(np.float64), [(1, 1), (5, 4)], mode="reflect"),
     ints=[1, 5, 1, 4], mode=PAD_MODE["reflect"], pad_value=0)

xn = rnd(2, 4, 3, 5)
case("lpnorm_axis1_p2", "LPNORM", [xn], F.normalize(t(xn), p=2.0, dim=1, eps=0), axis=1, p=2)
case("lpnorm_axis_neg1_p1", "LPNORM", [xn], F.normalize(t(xn), p=1.0, dim=-1, eps=0), axis=-1, p=1)

case("reduce_l2_hw_keep", "REDUCE_L2", [xn], torch.sqrt((t(xn) ** 2).sum(dim=(2, 3), keepdim=True)),
     ints=[2, 3], keepdims=1)
case("reduce_l2_c", "REDUCE_L2", [xn], torch.sqrt((t(xn) ** 2).sum(dim=1)), ints=[1], keepdims=0)
case("reduce_l2_all", "REDUCE_L2", [xn], torch.sqrt((t(xn) ** 2).sum()).reshape(1, 1, 1, 1), ints=[], keepdims=1)
case("reduce_min_hw_keep", "REDUCE_MIN", [xn], t(xn).amin(dim=(2, 3), keepdim=True), ints=[2, 3], keepdims=1)
case("reduce_min_all", "REDUCE_MIN", [xn], t(xn).amin().reshape(1, 1, 1, 1), ints=[], keepdims=1)
case("reduce_prod_w", "REDUCE_PROD", [xn], t(xn).prod(dim=3), ints=[3], keepdims=0)
case("reduce_prod_c_keep", "REDUCE_PROD", [xn], t(xn).prod(dim=1, keepdim=True), ints=[1], keepdims=1)

case("transpose_nhwc", "TRANSPOSE", [xn], t(xn).permute(0, 2, 3, 1), ints=[0, 2, 3, 1])
case("transpose_mix", "TRANSPOSE", [xn], t(xn).permute(3, 1, 0, 2), ints=[3, 1, 0, 2])
case("transpose_default", "TRANSPOSE", [xn], t(xn).permute(3, 2, 1, 0), ints=[])

with open(os.path.join(out_dir, "manifest.txt"), "w") as f:
    f.write("\n".join(manifest) + "\n")
