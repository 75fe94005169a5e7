"""Models as other exporters write them (issue 12): opsets 7 to 21, open
(dynamic) input dimensions, shape sub-graphs, Resize/Upsample,
ConvTranspose, attention products, and one hand-built model per
version-dependent form of an op.

usage: wild_zoo.py OUTDIR [--list] [--only a,b]

Writes per model NAME: NAME.onnx, NAME.input.npy (batch 1), NAME.calib.npy
(4 samples stacked on axis 0, which fix the open dimensions at compile
time), NAME.ref.npy, and OUTDIR/models.txt (NAME OPSET INPUT_SHAPE).

References: PyTorch's float32 output for the exported models (kept as the
exporter wrote them: no constant folding, dynamic axes); for the hand-built
ones a NumPy/PyTorch evaluation of exactly the graph written, following the
ONNX operator specification (the Resize formulas are checked against
torch.nn.functional.interpolate where PyTorch has the same mode).
"""
import hashlib
import io
import json
import math
import os
import sys
import warnings

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402
import zoo  # noqa: E402

N_CALIB = 4

# ---------------------------------------------------------------- PyTorch exports


class FPN(nn.Module):
    """A small feature pyramid: strided convs, lateral 1x1 convs, top-down
    upsampling (nearest x2, bilinear to another level's size) and adds."""

    def __init__(self, linear=True):
        super().__init__()
        self.linear = linear
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.c3 = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.l1 = nn.Conv2d(8, 8, 1)
        self.l2 = nn.Conv2d(16, 8, 1)
        self.l3 = nn.Conv2d(16, 8, 1)
        self.head = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        f1 = F.relu(self.c1(x))
        f2 = F.relu(self.c2(f1))
        f3 = F.relu(self.c3(f2))
        p3 = self.l3(f3)
        p2 = self.l2(f2) + F.interpolate(p3, scale_factor=2.0, mode="nearest")
        if self.linear:
            up = F.interpolate(p2, size=f1.shape[-2:], mode="bilinear", align_corners=False)
        else:
            up = F.interpolate(p2, scale_factor=2.0, mode="nearest")
        p1 = self.l1(f1) + up
        return self.head(F.relu(p1))


class UNet(nn.Module):
    """A U-Net decoder: ConvTranspose with stride 2 (k2; k3 with padding and
    output_padding; grouped; dilated) and skip concatenations."""

    def __init__(self):
        super().__init__()
        self.e1 = nn.Conv2d(3, 8, 3, padding=1)
        self.e2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.e3 = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.u3 = nn.ConvTranspose2d(16, 16, 3, stride=2, padding=1, output_padding=1, groups=2)
        self.d2 = nn.Conv2d(32, 16, 3, padding=1)
        self.u2 = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.d1 = nn.Conv2d(16, 8, 3, padding=1)
        self.u1 = nn.ConvTranspose2d(8, 4, 3, stride=1, padding=2, dilation=2)

    def forward(self, x):
        a = F.relu(self.e1(x))
        b = F.relu(self.e2(a))
        c = F.relu(self.e3(b))
        d = F.relu(self.d2(torch.cat([self.u3(c), b], 1)))
        e = F.relu(self.d1(torch.cat([self.u2(d), a], 1)))
        return self.u1(e)


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.n1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.n2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.n1(x)).reshape(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, c)
        x = x + self.proj(y)
        return x + self.fc2(F.gelu(self.fc1(self.n2(x))))


class TinyViT(nn.Module):
    """Patch embedding, position embedding, two attention blocks (products of
    two activations), GELU (Erf), token mean, linear head."""

    def __init__(self, dim=16, heads=2, tokens=16):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, 4, stride=4)
        self.pos = nn.Parameter(torch.randn(1, tokens, dim) * 0.1)
        self.blocks = nn.Sequential(Block(dim, heads), Block(dim, heads))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2) + self.pos
        x = self.norm(self.blocks(x))
        return self.head(x.mean(1))


def _init_layernorms(model, gen):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(0.6 + 0.8 * torch.rand(m.weight.shape, generator=gen))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=gen))


def _export(model, x, opset, dynamic_hw=True):
    axes = {0: "N"}
    if dynamic_hw and x.dim() == 4:
        axes.update({2: "H", 3: "W"})
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, x, buf, opset_version=opset, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": axes, "output": {0: "N"}},
                          training=torch.onnx.TrainingMode.PRESERVE)
    m = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(m)
    return m


def torch_spec(make, shape, opset, dynamic_hw=True):
    return dict(kind="torch", make=make, shape=shape, opset=opset, dynamic_hw=dynamic_hw)


def arch(name):
    def make():
        model, _ = zoo.build(name)
        return model
    return make


# ---------------------------------------------------------------- hand-built

def _w(rng, *shape):
    fan = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan)).astype(np.float32)


class G:
    """A graph under construction: nodes, initializers, and a torch function
    computing the same thing (float64) for the reference."""

    def __init__(self, rng):
        self.rng = rng
        self.nodes, self.inits, self.k = [], [], 0

    def name(self, base):
        self.k += 1
        return "%s%d" % (base, self.k)

    def init(self, arr, base="c"):
        n = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), n))
        return n

    def node(self, op, ins, n_out=1, **attrs):
        outs = [self.name(op.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, ins, outs, name=self.name(op + "_"), **attrs))
        return outs[0] if n_out == 1 else outs

    def conv(self, x, cin, cout, k=3, pad=1):
        w = _w(self.rng, cout, cin, k, k)
        b = (self.rng.standard_normal(cout) * 0.1).astype(np.float32)
        y = self.node("Conv", [x, self.init(w), self.init(b)], pads=[pad] * 4)
        fn = lambda t: F.conv2d(t, torch.from_numpy(w).double(), torch.from_numpy(b).double(), padding=pad)
        return y, fn


def onnx_model(g, x_name, y_name, in_shape, opset, dyn=True):
    dims = ["N"] + list(in_shape[1:]) if dyn else list(in_shape)
    graph = helper.make_graph(g.nodes, "wild", [helper.make_tensor_value_info(x_name, TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info(y_name, TensorProto.FLOAT, None)], g.inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="wild_zoo")
    m.ir_version = 7 if opset <= 15 else 8
    return m  # checked in generate(), once the output's shape is known


# ---- ONNX Resize, written from the operator specification

def _coord(mode, o, scale, n_in, n_out):
    if mode == "asymmetric":
        return o / scale
    if mode == "align_corners":
        return o * (n_in - 1) / (n_out - 1) if n_out > 1 else 0 * o
    if mode == "pytorch_half_pixel":
        return (o + 0.5) / scale - 0.5 if n_out > 1 else 0 * o
    if mode == "tf_half_pixel_for_nn":
        return (o + 0.5) / scale
    if mode == "half_pixel_symmetric":
        adj = n_out / (scale * n_in)
        return n_in / 2 * (1 - adj) + (o + 0.5) / scale - 0.5
    return (o + 0.5) / scale - 0.5  # half_pixel


def _nearest(mode, c):
    f = np.floor(c)
    if mode == "floor":
        return f
    if mode == "ceil":
        return np.ceil(c)
    if mode == "round_prefer_ceil":
        return np.where(c - f == 0.5, f + 1, np.floor(c + 0.5))
    return np.where(c - f == 0.5, f, np.floor(c + 0.5))


def _cubic_w(x, a):
    x = np.abs(x)
    return np.where(x <= 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                    np.where(x < 2, ((a * x - 5 * a) * x + 8 * a) * x - 4 * a, 0.0))


def ref_resize(x, out_shape, scales, mode, coord, nearest, roi=None, extrapolation=0.0, cubic_a=-0.75,
               exclude_outside=0):
    """x float64 array; per axis: the interpolation weights as a matrix, so
    the N-d result is the product of the per-axis maps (separable).  With
    tf_crop_and_resize, an output whose coordinate on an axis falls outside
    the input gets the extrapolation value (rows of zeros plus that value)."""
    y = x
    r = x.ndim
    for ax, (n_in, n_out, s) in enumerate(zip(x.shape, out_shape, scales)):
        if n_in == n_out and s == 1 and (roi is None or (roi[ax] == 0 and roi[r + ax] == 1)):
            continue
        o = np.arange(n_out, dtype=np.float64)
        outside = np.zeros(n_out, bool)
        if coord == "tf_crop_and_resize":
            a, e = roi[ax], roi[r + ax]
            c = a * (n_in - 1) + o * (e - a) * (n_in - 1) / (n_out - 1) if n_out > 1 else \
                0.5 * (a + e) * (n_in - 1) + 0 * o
            outside = (c < 0) | (c > n_in - 1)
            c = np.where(outside, 0, c)
        else:
            c = _coord(coord, o, s, n_in, n_out)
        M = np.zeros((n_out, n_in))
        if mode == "nearest":
            i = np.clip(_nearest(nearest, c), 0, n_in - 1).astype(int)
            M[np.arange(n_out), i] = 1
        elif mode == "cubic":  # 4 taps, edge values, or outside taps dropped and renormalised
            f = np.floor(c)
            for o_ in range(n_out):
                idx = f[o_] - 1 + np.arange(4)
                w = _cubic_w(c[o_] - idx, cubic_a)
                if exclude_outside:
                    w = np.where((idx < 0) | (idx > n_in - 1), 0.0, w)
                    w = w / w.sum()
                np.add.at(M[o_], np.clip(idx, 0, n_in - 1).astype(int), w)
        else:
            f = np.floor(c)
            w = c - f
            i0 = np.clip(f, 0, n_in - 1).astype(int)
            i1 = np.clip(f + 1, 0, n_in - 1).astype(int)
            np.add.at(M, (np.arange(n_out), i0), 1 - w)
            np.add.at(M, (np.arange(n_out), i1), w)
        M[outside] = 0
        z = np.tensordot(M, np.moveaxis(y, ax, 0), axes=(1, 0))
        z[outside] = extrapolation
        y = np.moveaxis(z, 0, ax)
    return y


def _check_resize_against_torch():
    """Where PyTorch has the same mode, the spec formulas agree with it."""
    x = np.random.default_rng(1).standard_normal((1, 2, 5, 7))
    t = torch.from_numpy(x)
    cases = [((1, 2, 10, 14), "nearest", "asymmetric", "floor", dict(mode="nearest")),
             ((1, 2, 9, 11), "nearest", "asymmetric", "floor", dict(mode="nearest")),
             ((1, 2, 9, 11), "linear", "pytorch_half_pixel", "", dict(mode="bilinear", align_corners=False)),
             ((1, 2, 9, 11), "linear", "align_corners", "", dict(mode="bilinear", align_corners=True)),
             ((1, 2, 9, 11), "nearest", "tf_half_pixel_for_nn", "floor", dict(mode="nearest-exact")),
             ((1, 2, 10, 14), "cubic", "pytorch_half_pixel", "", dict(mode="bicubic", align_corners=False)),
             ((1, 2, 9, 11), "cubic", "align_corners", "", dict(mode="bicubic", align_corners=True))]
    for shape, mode, coord, near, targs in cases:
        scales = [o / i for o, i in zip(shape, x.shape)]
        want = F.interpolate(t, size=shape[2:], **targs).numpy()
        got = ref_resize(x, shape, scales, mode, coord, near)
        if not np.allclose(got, want, atol=1e-12):
            raise RuntimeError("Resize reference disagrees with torch for %s %s" % (mode, coord))


# ---- the hand-built models: each returns (ModelProto, reference function)

def h_upsample(opset, mode):
    def make(rng, shape):
        g = G(rng)
        y, f0 = g.conv("input", 3, 4)
        if opset < 9:
            u = g.node("Upsample", [y], mode=mode, scales=[1.0, 1.0, 2.0, 3.0])
        else:
            u = g.node("Upsample", [y, g.init(np.array([1, 1, 2, 1.5], np.float32))], mode=mode)
        sc = [1, 1, 2.0, 3.0] if opset < 9 else [1, 1, 2.0, 1.5]
        out = [1, 4, int(shape[2] * sc[2]), int(shape[3] * sc[3])]

        def ref(t):
            a = f0(t).numpy()
            return ref_resize(a, out, sc, "nearest" if mode == "nearest" else "linear", "asymmetric", "floor")
        return onnx_model(g, "input", u, shape, opset), ref
    return make


def h_resize(opset):
    """Every coordinate transformation mode and nearest mode, by sizes and by
    scales (opset 10: scales only, asymmetric)."""
    def make(rng, shape):
        g = G(rng)
        y, f0 = g.conv("input", 3, 2)
        H, W = shape[2], shape[3]
        outs, refs = [], []
        if opset == 10:
            cases = [("linear", None, None, [1, 1, 2.0, 1.5]), ("nearest", None, None, [1, 1, 1.5, 2.0])]
        else:
            cases = [("linear", "half_pixel", None, [1, 1, 1.5, 2.0]),
                     ("linear", "align_corners", None, [1, 1, 1.5, 2.0]),
                     ("linear", "pytorch_half_pixel", None, [1, 1, 1.5, 2.0]),
                     ("linear", "asymmetric", None, [1, 1, 1.5, 2.0]),
                     ("nearest", "half_pixel", "round_prefer_floor", [1, 1, 1.5, 2.0]),
                     ("nearest", "asymmetric", "round_prefer_ceil", [1, 1, 1.5, 2.0]),
                     ("nearest", "align_corners", "floor", [1, 1, 1.5, 2.0]),
                     ("nearest", "tf_half_pixel_for_nn", "ceil", [1, 1, 1.5, 2.0])]
            cases.append(("cubic", "half_pixel", None, [1, 1, 1.5, 2.0]))
            cases.append(("cubic", "align_corners", None, [1, 1, 1.5, 2.0]))  # by sizes, A -0.5, exclude_outside
            if opset >= 13:  # roi [0.125, -0.25] .. [0.875, 1.0]: the first columns extrapolate
                cases.append(("linear", "tf_crop_and_resize", None, [1, 1, 2.0, 2.0]))
                cases.append(("nearest", "tf_crop_and_resize", "round_prefer_ceil", [1, 1, 2.0, 2.0]))
            if opset >= 19:
                cases.append(("linear", "half_pixel_symmetric", None, [1, 1, 1.5, 2.0]))
        # exact in float32.  With scales the output size is floor(in * scale),
        # the roi span left out, as onnxruntime and ONNX's shape inference do
        # (the operator text multiplies by the span: onnx/onnx#5783)
        roi = [0, 0, 0.125, -0.25, 1, 1, 0.875, 1.0]
        for k, (mode, coord, near, sc) in enumerate(cases):
            crop = coord == "tf_crop_and_resize"
            out = [1, 2, int(math.floor(H * sc[2] + 1e-9)), int(math.floor(W * sc[3] + 1e-9))]
            attrs = dict(mode=mode)
            extra = dict(cubic_coeff_a=-0.5, exclude_outside=1) if mode == "cubic" and k % 2 else {}
            attrs.update(extra)
            if crop:
                attrs["extrapolation_value"] = -3.0
                r = g.node("Resize", [y, g.init(np.array(roi, np.float32)), g.init(np.array(sc, np.float32))],
                           **attrs, coordinate_transformation_mode=coord, **({"nearest_mode": near} if near else {}))
                outs.append(g.node("Slice", [r, g.init(np.array([0, 0], np.int64)),
                                             g.init(np.array([H, W], np.int64)), g.init(np.array([2, 3], np.int64))]))
                refs.append((out, sc, mode, coord, near or "round_prefer_floor", roi, extra))
                continue
            if coord:
                attrs["coordinate_transformation_mode"] = coord
            if near:
                attrs["nearest_mode"] = near
            if opset == 10:
                r = g.node("Resize", [y, g.init(np.array(sc, np.float32))], **attrs)
            elif k % 2 == 0:  # by scales
                r = g.node("Resize", [y, "" if opset >= 13 else g.init(np.zeros(0, np.float32)),
                                      g.init(np.array(sc, np.float32))], **attrs)
            else:  # by sizes (scale = out / in)
                if opset >= 18 and k == 1:
                    attrs["axes"] = [2, 3]
                    sz = np.array(out[2:], np.int64)
                else:
                    sz = np.array(out, np.int64)
                r = g.node("Resize", [y, "" if opset >= 13 else g.init(np.zeros(0, np.float32)),
                                      "" if opset >= 13 else g.init(np.zeros(0, np.float32)), g.init(sz)], **attrs)
                sc = [o / i for o, i in zip(out, [1, 2, H, W])]
            # crop every result to a common size so they concatenate
            outs.append(g.node("Slice", [r, g.init(np.array([0, 0], np.int64)), g.init(np.array([H, W], np.int64)),
                                         g.init(np.array([2, 3], np.int64))]))
            refs.append((out, sc, mode, coord or "asymmetric", near or "floor", None, extra))
        if opset >= 18:  # sizes on two axes, one scale for both (the largest that fits)
            r = g.node("Resize", [y, "", "", g.init(np.array([20, 20], np.int64))], axes=[2, 3], mode="linear",
                       keep_aspect_ratio_policy="not_larger")
            outs.append(g.node("Slice", [r, g.init(np.array([0, 0], np.int64)), g.init(np.array([H, W], np.int64)),
                                         g.init(np.array([2, 3], np.int64))]))
            q = min(20 / H, 20 / W)
            refs.append(([1, 2, int(round(q * H)), int(round(q * W))], [1, 1, q, q], "linear", "half_pixel", "", None,
                         {}))
        cat = g.node("Concat", outs, axis=1)

        def ref(t):
            a = f0(t).numpy()
            return np.concatenate([ref_resize(a, o, s, m, c, nn_, ro, -3.0, ex.get("cubic_coeff_a", -0.75),
                                              ex.get("exclude_outside", 0))[:, :, :H, :W]
                                   for o, s, m, c, nn_, ro, ex in refs], 1)
        return onnx_model(g, "input", cat, shape, opset), ref
    return make


def h_convtranspose(opset):
    """Strides, asymmetric pads, output_padding, groups, dilations,
    output_shape and auto_pad SAME_UPPER."""
    cases = [dict(cin=4, cout=6, k=(3, 2), strides=[2, 3], pads=[1, 0, 2, 1], output_padding=[1, 0], group=1, dil=[1, 1]),
             dict(cin=4, cout=4, k=(3, 3), strides=[2, 2], pads=[0, 0, 0, 0], output_padding=[0, 0], group=2, dil=[2, 1]),
             dict(cin=4, cout=2, k=(2, 2), strides=[2, 2], pads=None, output_padding=[0, 0], group=1, dil=[1, 1],
                  auto_pad="SAME_UPPER"),
             dict(cin=4, cout=3, k=(3, 3), strides=[2, 2], pads=None, output_padding=[0, 0], group=1, dil=[1, 1],
                  output_shape=True)]

    def make(rng, shape):
        g = G(rng)
        y, f0 = g.conv("input", 3, 4)
        H, W = shape[2], shape[3]
        outs, fns = [], []
        for c in cases:
            w = _w(rng, c["cin"], c["cout"] // c["group"], *c["k"])
            b = (rng.standard_normal(c["cout"]) * 0.1).astype(np.float32)
            s, d, op = c["strides"], c["dil"], c["output_padding"]
            full = [s[j] * ([H, W][j] - 1) + op[j] + d[j] * (c["k"][j] - 1) + 1 for j in range(2)]
            attrs = dict(strides=s, dilations=d, group=c["group"], kernel_shape=list(c["k"]))
            if any(op):
                attrs["output_padding"] = op
            if c.get("auto_pad"):
                attrs["auto_pad"] = c["auto_pad"]
                want = [H * s[0], W * s[1]]
                tot = [full[j] - want[j] for j in range(2)]
                pads = [tot[0] // 2, tot[1] // 2, tot[0] - tot[0] // 2, tot[1] - tot[1] // 2]
            elif c.get("output_shape"):
                want = [full[0] - 1, full[1] - 2]
                attrs["output_shape"] = want
                tot = [full[j] - want[j] for j in range(2)]
                pads = [tot[0] - tot[0] // 2, tot[1] - tot[1] // 2, tot[0] // 2, tot[1] // 2]
            else:
                pads = c["pads"]
                attrs["pads"] = pads
            r = g.node("ConvTranspose", [y, g.init(w), g.init(b)], **attrs)
            outs.append(g.node("Flatten", [r], axis=1))

            def fn(t, w=w, b=b, s=s, d=d, op=op, grp=c["group"], pads=pads, full=full):
                z = F.conv_transpose2d(t, torch.from_numpy(w).double(), None, stride=s, dilation=d, groups=grp)
                z = F.pad(z, (0, full[1] - z.shape[3], 0, full[0] - z.shape[2]))
                z = z + torch.from_numpy(b).double().view(1, -1, 1, 1)
                z = z[:, :, pads[0]:full[0] - pads[2], pads[1]:full[1] - pads[3]]
                return z.flatten(1)
            fns.append(fn)
        cat = g.node("Concat", outs, axis=1)

        def ref(t):
            a = f0(t)
            return torch.cat([f(a) for f in fns], 1).numpy()
        return onnx_model(g, "input", cat, shape, opset), ref
    return make


def h_clip(opset):
    def make(rng, shape):
        g = G(rng)
        y, f0 = g.conv("input", 3, 4)
        if opset < 11:
            a = g.node("Clip", [y], min=-0.5, max=0.75)
            b = g.node("Clip", [y], max=0.25)
        else:
            a = g.node("Clip", [y, g.init(np.array(-0.5, np.float32)), g.init(np.array(0.75, np.float32))])
            b = g.node("Clip", [y, "", g.init(np.array(0.25, np.float32))])
            # opset 12 Dropout: ratio and training_mode (false) as inputs: an identity
            b = g.node("Dropout", [b, g.init(np.array(0.3, np.float32)), g.init(np.array(False))])
        z = g.node("Concat", [a, b], axis=1)
        y2, f1 = g.conv(z, 8, 4)
        return onnx_model(g, "input", y2, shape, opset), \
            lambda t: f1(torch.cat([f0(t).clamp(-0.5, 0.75), f0(t).clamp(max=0.25)], 1)).numpy()
    return make


def h_bn(opset):
    """BatchNormalization with the opset 7/8 'spatial' attribute and the
    opset 9+ form, folded (after a Conv) and on the device (after a Relu)."""
    def make(rng, shape):
        g = G(rng)
        y, f0 = g.conv("input", 3, 4)
        P = [(0.6 + 0.8 * rng.random(4)).astype(np.float32), (0.2 * rng.standard_normal(4)).astype(np.float32),
             (0.3 * rng.standard_normal(4)).astype(np.float32), (0.5 + rng.random(4)).astype(np.float32)]
        extra = dict(spatial=1) if opset < 9 else {}
        b1 = g.node("BatchNormalization", [y] + [g.init(p) for p in P], epsilon=1e-3, **extra)
        r = g.node("Relu", [b1])
        b2 = g.node("BatchNormalization", [r] + [g.init(p) for p in P], epsilon=1e-3, momentum=0.9, **extra)
        y2, f1 = g.conv(b2, 4, 3)

        def bn(t):
            p = [torch.from_numpy(q).double().view(1, -1, 1, 1) for q in P]
            return (t - p[2]) / torch.sqrt(p[3] + 1e-3) * p[0] + p[1]
        return onnx_model(g, "input", y2, shape, opset), lambda t: f1(bn(F.relu(bn(f0(t))))).numpy()
    return make


def h_slice(opset):
    def make(rng, shape):
        g = G(rng)
        y, f0 = g.conv("input", 3, 6)
        if opset < 10:
            a = g.node("Slice", [y], starts=[1, 2], ends=[5, -1], axes=[1, 3])
            b = g.node("Slice", [y], starts=[0, 0, 1, 0], ends=[1, 6, 1000, 1000])
            refs = lambda t: (t[:, 1:5, :, 2:-1], t[:, :, 1:, :])
        else:
            i = lambda v: g.init(np.array(v, np.int64))
            a = g.node("Slice", [y, i([5, -1]), i([0, -1000]), i([1, 3]), i([-2, -2])])
            b = g.node("Slice", [y, i([1]), i([2 ** 62]), i([-2])])
            # going down from a start before the beginning: clamped to 0 (the spec), one row;
            # a step far beyond the dimension: one column
            c = g.node("Slice", [y, i([-100, 2]), i([-1000, 2 ** 63 - 1]), i([2, 3]), i([-1, 2 ** 62])])
            refs = lambda t: (t.flip(1)[:, 0::2].flip(3)[:, :, :, 0::2], t[:, :, 1:, :], t[:, :, 0:1, 2:3])
        fa, fb = g.node("Flatten", [a]), g.node("Flatten", [b])
        parts = [fa, fb] + ([g.node("Flatten", [c])] if opset >= 10 else [])
        z = g.node("Concat", parts, axis=1)

        def ref(t):
            return torch.cat([v.flatten(1) for v in refs(f0(t))], 1).numpy()
        return onnx_model(g, "input", z, shape, opset), ref
    return make


def h_reduce(opset):
    """Reduce* with axes as an attribute (ReduceSum before 13, the others
    before 18) or as an input."""
    def make(rng, shape):
        g = G(rng)
        y, f0 = g.conv("input", 3, 4)
        ax_in = lambda name: (opset >= 13) if name == "ReduceSum" else (opset >= 18)
        outs = []
        for name, axes, keep in (("ReduceMean", [2, 3], 1), ("ReduceSum", [1], 0), ("ReduceMax", [-1], 1),
                                 ("ReduceL2", [1, 2], 1), ("ReduceMin", [1], 1)):
            if ax_in(name):
                r = g.node(name, [y, g.init(np.array(axes, np.int64))], keepdims=keep)
            else:
                r = g.node(name, [y], axes=axes, keepdims=keep)
            outs.append(g.node("Flatten", [r]))
        z = g.node("Concat", outs, axis=1)

        def ref(t):
            a = f0(t)
            return torch.cat([a.mean((2, 3), keepdim=True).flatten(1), a.sum(1).flatten(1),
                              a.amax(-1, keepdim=True).flatten(1), a.pow(2).sum((1, 2), keepdim=True).sqrt().flatten(1),
                              a.amin(1, keepdim=True).flatten(1)], 1).numpy()
        return onnx_model(g, "input", z, shape, opset), ref
    return make


def h_split(opset):
    def make(rng, shape):
        g = G(rng)
        y, f0 = g.conv("input", 3, 6)
        if opset < 13:
            a, b, c = g.node("Split", [y], n_out=3, axis=1, split=[1, 2, 3])
        elif opset < 18:
            a, b, c = g.node("Split", [y, g.init(np.array([1, 2, 3], np.int64))], n_out=3, axis=1)
        else:
            a, b, c = g.node("Split", [y], n_out=3, axis=1, num_outputs=3)
        sizes = [1, 2, 3] if opset < 18 else [2, 2, 2]
        s = g.node("Mul", [a, b]) if sizes[0] == sizes[1] else g.node("Add", [a, g.node("ReduceMean", [b], axes=[1])])
        eq = dict(num_outputs=2) if opset >= 18 else {}
        e, h = g.node("Split", [c], n_out=2, axis=3, **eq)  # equal halves (W is even)
        z = g.node("Concat", [g.node("Flatten", [s]), g.node("Flatten", [e]), g.node("Flatten", [h])], axis=1)

        def ref(t):
            p, q, r = torch.split(f0(t), sizes, 1)
            s_ = p * q if sizes[0] == sizes[1] else p + q.mean(1, keepdim=True)
            e_, h_ = torch.split(r, r.shape[3] // 2, 3)
            return torch.cat([s_.flatten(1), e_.flatten(1), h_.flatten(1)], 1).numpy()
        return onnx_model(g, "input", z, shape, opset), ref
    return make


def h_elementwise(opset):
    """Gather on activations, Pow, Erf, Exp, Neg, Reciprocal, MatMul of two
    activations, LayerNormalization (opset 17+) or its decomposition."""
    def make(rng, shape):
        g = G(rng)
        y, f0 = g.conv("input", 3, 4)
        i64 = lambda v: g.init(np.array(v, np.int64))
        ga = g.node("Gather", [y, i64([3, 0, 2])], axis=1)
        gs = g.node("Gather", [y, i64(-1)], axis=2)  # scalar index: rank drops
        p = g.node("Pow", [ga, g.init(np.array(2.0, np.float32))])
        e = g.node("Erf", [ga])
        x2 = g.node("Exp", [g.node("Neg", [g.node("Relu", [ga])])])
        rc = g.node("Reciprocal", [g.node("Add", [x2, g.init(np.array(1.0, np.float32))])])
        m = g.node("MatMul", [gs, g.node("Transpose", [gs], perm=[0, 2, 1])])  # [1,4,W] x [1,W,4]
        C, W = 4, shape[3]
        sc = (0.5 + rng.random(W)).astype(np.float32)
        bi = (0.1 * rng.standard_normal(W)).astype(np.float32)
        if opset >= 17:
            ln = g.node("LayerNormalization", [gs, g.init(sc), g.init(bi)], axis=-1, epsilon=1e-5)
        else:
            mu = g.node("ReduceMean", [gs], axes=[-1])
            dd = g.node("Sub", [gs, mu])
            var = g.node("ReduceMean", [g.node("Pow", [dd, g.init(np.array(2.0, np.float32))])], axes=[-1])
            den = g.node("Sqrt", [g.node("Add", [var, g.init(np.array(1e-5, np.float32))])])
            ln = g.node("Add", [g.node("Mul", [g.node("Div", [dd, den]), g.init(sc)]), g.init(bi)])
        parts = [g.node("Flatten", [v]) for v in (p, e, rc, m, ln)]
        z = g.node("Concat", parts, axis=1)

        def ref(t):
            a = f0(t)
            ga_ = a[:, [3, 0, 2]]
            gs_ = a[:, :, -1, :]
            ln_ = F.layer_norm(gs_, (W,), torch.from_numpy(sc).double(), torch.from_numpy(bi).double(), 1e-5)
            vals = [ga_ ** 2, torch.erf(ga_), 1 / (torch.exp(-F.relu(ga_)) + 1), gs_ @ gs_.transpose(1, 2), ln_]
            return torch.cat([v.flatten(1) for v in vals], 1).numpy()
        return onnx_model(g, "input", z, shape, opset), ref
    return make


def h_shape_graph(opset):
    """A shape sub-graph evaluated at compile time: Shape, Gather, Unsqueeze,
    Concat, Reshape, Slice, Cast, Range, ConstantOfShape, Expand, Equal,
    Where, Size, Div, Mul on the fixed input shape."""
    def make(rng, shape):
        g = G(rng)
        y, f0 = g.conv("input", 3, 4)
        i64 = lambda v: g.init(np.array(v, np.int64))
        sh = g.node("Shape", [y])
        n = g.node("Gather", [sh, i64(0)], axis=0)
        c = g.node("Gather", [sh, i64(1)], axis=0)
        hw = g.node("Slice", [sh, i64([2]), i64([4]), i64([0])]) if opset >= 10 else \
            g.node("Slice", [sh], starts=[2], ends=[4], axes=[0])
        area = g.node("Mul", [g.node("Gather", [hw, i64(0)], axis=0), g.node("Gather", [hw, i64(1)], axis=0)])
        unsq = (lambda v: g.node("Unsqueeze", [v], axes=[0])) if opset < 13 else \
            (lambda v: g.node("Unsqueeze", [v, i64([0])]))
        new = g.node("Concat", [unsq(n), unsq(c), unsq(area)], axis=0)
        flat = g.node("Reshape", [y, new])                                 # [N, C, H*W]
        cnt = g.node("Cast", [g.node("Size", [hw])], to=TensorProto.FLOAT)  # 2.0
        half = g.node("Div", [flat, cnt])
        outs = [half]
        if opset >= 11:
            rng_ = g.node("Range", [i64(0), g.node("Cast", [c], to=TensorProto.INT64), i64(1)])  # 0..C-1
            mask = g.node("Equal", [g.node("Mod", [rng_, i64(2)]), i64(0)])                  # even channels
            ones = g.node("ConstantOfShape", [unsq(c)],
                          value=numpy_helper.from_array(np.array([1.0], np.float32)))
            wsel = g.node("Where", [mask, ones, g.node("Mul", [ones, g.init(np.array(-0.5, np.float32))])])
            wexp = g.node("Expand", [g.node("Unsqueeze", [wsel], axes=[1]) if opset < 13 else
                                     g.node("Unsqueeze", [wsel, i64([1])]), g.node("Concat", [unsq(c), i64([1])], axis=0)])
            outs.append(g.node("Mul", [flat, wexp]))
            # ReduceProd and Tile on constants, Tile on an activation
            area2 = g.node("ReduceProd", [hw], keepdims=1)
            flat2 = g.node("Reshape", [y, g.node("Concat", [unsq(n), unsq(c), area2], axis=0)])
            tc = g.node("Tile", [g.init(np.array([1.0, 2.0], np.float32)),
                                 g.node("Div", [area2, i64([2])])])                       # [1,2,1,2,...]
            outs.append(g.node("Mul", [flat2, tc]))
            outs.append(g.node("Tile", [flat2, i64([1, 1, 2])]))
        z = g.node("Concat", outs, axis=2)

        def ref(t):
            a = f0(t)
            fl = a.flatten(2)
            r = [fl / 2.0]
            if opset >= 11:
                w = torch.tensor([1.0 if k % 2 == 0 else -0.5 for k in range(a.shape[1])], dtype=torch.float64)
                r.append(fl * w.view(1, -1, 1))
                r.append(fl * torch.tensor([1.0, 2.0], dtype=torch.float64).repeat(fl.shape[2] // 2))
                r.append(fl.repeat(1, 1, 2))
            return torch.cat(r, 2).numpy()
        return onnx_model(g, "input", z, shape, opset), ref
    return make



def h_misc(opset):
    """Sum and Mean (variadic), Softplus, DepthToSpace (DCR and CRD),
    SpaceToDepth; Mish (18+) and Gelu (20+) as the exporters of those
    opsets write them; ImageScaler (experimental, before 10)."""
    def make(rng, shape):
        g = G(rng)
        src = "input"
        f_pre = lambda t: t
        sc_scale, sc_bias = 0.5, (0.1 * rng.standard_normal(3)).astype(np.float32)
        if opset < 10:
            src = g.node("ImageScaler", ["input"], scale=sc_scale, bias=[float(v) for v in sc_bias])
            f_pre = lambda t: t * sc_scale + torch.from_numpy(sc_bias).double().view(1, -1, 1, 1)
        y, f0 = g.conv(src, 3, 8)
        a = g.node("Sum", [y, g.node("Relu", [y]), g.node("Sigmoid", [y])])
        m = g.node("Mean", [y, g.node("Tanh", [y])])
        sp = g.node("Softplus", [m])
        d1 = g.node("DepthToSpace", [a], blocksize=2) if opset < 11 else \
            g.node("DepthToSpace", [a], blocksize=2, mode="DCR")
        s2d = g.node("SpaceToDepth", [d1], blocksize=2)
        outs = [d1, s2d, sp]
        if opset >= 11:
            outs.append(g.node("DepthToSpace", [sp], blocksize=2, mode="CRD"))
        if opset >= 18:
            outs.append(g.node("Mish", [y]))
        if opset >= 20:
            outs.append(g.node("Gelu", [y]))
        z = g.node("Concat", [g.node("Flatten", [o]) for o in outs], axis=1)

        def d2s(t, bs, crd):
            n, c, h, w = t.shape
            if crd:
                return t.reshape(n, c // bs ** 2, bs, bs, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, -1, h * bs, w * bs)
            return t.reshape(n, bs, bs, c // bs ** 2, h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, -1, h * bs, w * bs)

        def ref(t):
            yy = f0(f_pre(t))
            aa = yy + F.relu(yy) + torch.sigmoid(yy)
            mm = (yy + torch.tanh(yy)) / 2
            spp = F.softplus(mm)
            dd = d2s(aa, 2, False)
            n, c, h, w = dd.shape
            s2 = dd.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4).reshape(n, c * 4, h // 2, w // 2)
            r = [dd, s2, spp]
            if opset >= 11:
                crd = d2s(spp, 2, True)
                assert torch.equal(crd, F.pixel_shuffle(spp, 2))  # CRD is PyTorch's pixel shuffle
                r.append(crd)
            if opset >= 18:
                r.append(F.mish(yy))
            if opset >= 20:
                r.append(F.gelu(yy))
            return torch.cat([v.flatten(1) for v in r], 1).numpy()
        return onnx_model(g, "input", z, shape, opset), ref
    return make

def hand(make, shape, check=True):
    return dict(kind="onnx", make=make, shape=shape, check=check)


# name -> spec; shapes are per-sample (C, H, W); open N/H/W in every file
MODELS = {
    "wild_fpn_o9": torch_spec(lambda: FPN(linear=False), (3, 16, 20), 9),
    "wild_fpn_o11": torch_spec(FPN, (3, 16, 20), 11),
    "wild_unet_o11": torch_spec(UNet, (3, 16, 12), 11),
    "wild_unet_o9": torch_spec(UNet, (3, 16, 12), 9),
    "wild_vit_o11": torch_spec(TinyViT, (3, 16, 16), 11, dynamic_hw=False),
    "wild_vit_o17": torch_spec(TinyViT, (3, 16, 16), 17, dynamic_hw=False),
    "wild_lenet5_o9": torch_spec(arch("lenet5"), (1, 28, 28), 9, dynamic_hw=False),
    "wild_resnet18_o9": torch_spec(arch("resnet18"), (3, 32, 32), 9),
    "wild_resnet18_o11": torch_spec(arch("resnet18"), (3, 32, 32), 11),
    "wild_mobilenetv2_o11": torch_spec(arch("mobilenetv2"), (3, 32, 32), 11),
    "wild_squeezenet11_o9": torch_spec(arch("squeezenet11"), (3, 32, 32), 9, dynamic_hw=False),
    "wild_alexnet_o9": torch_spec(arch("alexnet"), (3, 67, 67), 9, dynamic_hw=False),
    "wild_vgg16_o11": torch_spec(arch("vgg16"), (3, 32, 32), 11),
    "wild_resnet50_o11": torch_spec(arch("resnet50"), (3, 32, 32), 11),
    "wild_facenet_o9": torch_spec(arch("facenet"), (3, 75, 75), 9, dynamic_hw=False),
    "v_upsample_o7": hand(h_upsample(7, "nearest"), (3, 5, 6)),
    "v_upsample_o9": hand(h_upsample(9, "linear"), (3, 5, 6)),
    "v_resize_o10": hand(h_resize(10), (3, 6, 5)),
    "v_resize_o11": hand(h_resize(11), (3, 6, 5)),
    "v_resize_o13": hand(h_resize(13), (3, 6, 5)),
    "v_resize_o19": hand(h_resize(19), (3, 6, 5)),
    "v_convtranspose_o11": hand(h_convtranspose(11), (3, 5, 6)),
    "v_clip_o7": hand(h_clip(7), (3, 5, 6)),
    "v_clip_o12": hand(h_clip(12), (3, 5, 6)),
    "v_bn_o7": hand(h_bn(7), (3, 5, 6)),
    "v_bn_o15": hand(h_bn(15), (3, 5, 6)),
    "v_slice_o9": hand(h_slice(9), (3, 7, 8)),
    "v_slice_o13": hand(h_slice(13), (3, 7, 8)),
    "v_reduce_o11": hand(h_reduce(11), (3, 5, 6)),
    "v_reduce_o13": hand(h_reduce(13), (3, 5, 6)),
    "v_reduce_o18": hand(h_reduce(18), (3, 5, 6)),
    "v_split_o11": hand(h_split(11), (3, 5, 6)),
    "v_split_o13": hand(h_split(13), (3, 5, 6)),
    "v_split_o18": hand(h_split(18), (3, 5, 6)),
    "v_elementwise_o13": hand(h_elementwise(13), (3, 5, 6)),
    "v_elementwise_o17": hand(h_elementwise(17), (3, 5, 6)),
    "v_shapes_o9": hand(h_shape_graph(9), (3, 5, 6)),
    "v_shapes_o13": hand(h_shape_graph(13), (3, 5, 6)),
    "v_misc_o9": hand(h_misc(9), (3, 4, 6), check=False),  # ImageScaler is not in onnx 1.12's schemas
    "v_misc_o13": hand(h_misc(13), (3, 4, 6)),
    "v_misc_o20": hand(h_misc(20), (3, 4, 6)),
}


def e_dropout_training(rng, shape):
    g = G(rng)
    y, _ = g.conv("input", 3, 4)
    z = g.node("Dropout", [y, g.init(np.array(0.3, np.float32)), g.init(np.array(True))])
    return onnx_model(g, "input", z, shape, 13)


def e_where_activation(rng, shape):
    """Greater and Where on an activation: neither foldable nor device ops."""
    g = G(rng)
    y, _ = g.conv("input", 3, 4)
    m = g.node("Greater", [y, g.init(np.array(0.0, np.float32))])
    z = g.node("Where", [m, y, g.init(np.array(0.0, np.float32))])
    return onnx_model(g, "input", z, shape, 13)


def e_opset6(rng, shape):
    g = G(rng)
    y, _ = g.conv("input", 3, 4)
    return onnx_model(g, "input", y, shape, 6)


def e_where_float_cond(rng, shape):
    """Where's condition must be bool: a float constant is refused, not read as integers."""
    g = G(rng)
    y, _ = g.conv("input", 3, 4)
    c = [g.init(np.array(1.0, np.float32)), g.init(np.array(2, np.int64)), g.init(np.array(3, np.int64))]
    z = g.node("Mul", [y, g.node("Cast", [g.node("Where", c)], to=TensorProto.FLOAT)])
    return onnx_model(g, "input", z, shape, 13)


def e_long_strides(rng, shape):
    """Nine strides: refused, not taken for a missing attribute (stride 1)."""
    g = G(rng)
    z = g.node("Conv", ["input", g.init(_w(rng, 4, 3, 3, 3))], pads=[1] * 4, strides=[2] * 9)
    return onnx_model(g, "input", z, shape, 13)


def e_long_perm(rng, shape):
    """A perm of nine entries: refused, not taken for a missing one (reversed axes)."""
    g = G(rng)
    y, _ = g.conv("input", 3, 4)
    z = g.node("Transpose", [y], perm=list(range(9)))
    return onnx_model(g, "input", z, shape, 13)


# must be refused (test_wild_import checks the messages); no reference
ERRORS = {"e_dropout_training": e_dropout_training, "e_where_activation": e_where_activation, "e_opset6": e_opset6,
          "e_where_float_cond": e_where_float_cond, "e_long_strides": e_long_strides, "e_long_perm": e_long_perm}


def generate(name, spec):
    seed = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    common.set_determinism(seed, 2)
    gen = torch.Generator().manual_seed(seed)
    shape = spec["shape"]
    x = common.random_inputs(shape, 1, gen)
    calib = common.random_inputs(shape, N_CALIB, gen)
    if spec["kind"] == "torch":
        model = spec["make"]()
        common.init_model(model, common.random_inputs(shape, 8, gen), gen)
        _init_layernorms(model, gen)
        model.eval()
        with torch.no_grad():
            ref = model(x).numpy()
        proto = _export(model, x, spec["opset"], spec["dynamic_hw"])
    else:
        rng = np.random.default_rng(seed)
        proto, fn = spec["make"](rng, (1,) + tuple(shape))
        with torch.no_grad():
            ref = np.asarray(fn(x.double()), dtype=np.float32)
        dims = proto.graph.output[0].type.tensor_type.shape.dim
        for k, d in enumerate(ref.shape):
            if k == 0:
                dims.add().dim_param = "N"
            else:
                dims.add().dim_value = d
        if spec["check"] and proto.opset_import[0].version <= onnx.defs.onnx_opset_version():  # 1.12: up to 17
            onnx.checker.check_model(proto)
    if not np.all(np.isfinite(ref)):
        raise RuntimeError("%s: non-finite reference" % name)
    return proto, x.numpy(), calib.numpy(), ref


def main(argv):
    warnings.filterwarnings("ignore")
    args = [a for a in argv if not a.startswith("--")]
    if "--list" in argv:
        print("\n".join(MODELS))
        return 0
    out = args[0]
    only = None
    for a in argv:
        if a.startswith("--only="):
            only = set(a[7:].split(","))
    os.makedirs(out, exist_ok=True)
    _check_resize_against_torch()
    with open(__file__, "rb") as fp:
        src = hashlib.sha256(fp.read() + torch.__version__.encode() + onnx.__version__.encode()).hexdigest()
    stamp_path = os.path.join(out, "stamp.json")
    stamps = {}
    if os.path.exists(stamp_path):
        with open(stamp_path) as fp:
            stamps = json.load(fp)
    rows = []
    for name, spec in MODELS.items():
        files = [os.path.join(out, name + s) for s in (".onnx", ".input.npy", ".calib.npy", ".ref.npy")]
        opset = spec.get("opset")
        if (only is None or name in only) and not (stamps.get(name) == src and all(map(os.path.exists, files))):
            proto, x, calib, ref = generate(name, spec)
            with open(files[0] + ".tmp", "wb") as fp:
                fp.write(proto.SerializeToString())
            os.replace(files[0] + ".tmp", files[0])
            for f, a in zip(files[1:], (x, calib, ref)):
                np.save(f + ".tmp.npy", np.ascontiguousarray(a, dtype=np.float32))
                os.replace(f + ".tmp.npy", f)
            stamps[name] = src
            print("%-24s written" % name)
            with open(stamp_path + ".tmp", "w") as fp:
                json.dump(stamps, fp)
            os.replace(stamp_path + ".tmp", stamp_path)
        if os.path.exists(files[0]):
            opset = onnx.load(files[0]).opset_import[0].version
            rows.append("%s %d %s" % (name, opset, "x".join(str(d) for d in (1,) + tuple(spec["shape"]))))
    for name, make in ERRORS.items():
        m = make(np.random.default_rng(1), (1, 3, 5, 6))
        for k, d in enumerate([1, 4, 5, 6]):
            m.graph.output[0].type.tensor_type.shape.dim.add().dim_value = d
        with open(os.path.join(out, name + ".onnx"), "wb") as fp:
            fp.write(m.SerializeToString())
    with open(stamp_path + ".tmp", "w") as fp:
        json.dump(stamps, fp)
    os.replace(stamp_path + ".tmp", stamp_path)
    with open(os.path.join(out, "models.txt"), "w") as fp:
        fp.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
