"""Hand-built detection models (issue 12's detection families): graphs with
several outputs (a detector's boxes and scores) and, as twinedge learns
them, the ops of the detection heads' post-processing.

usage: detect_zoo.py OUTDIR [--list]

Writes per model NAME: NAME.onnx, NAME.input.npy (batch 1), NAME.calib.npy
(4 samples stacked on axis 0), the reference of each output k (NAME.ref.npy
for output 0, NAME.ref.K.npy for output K > 0, as twinedge-run names its
files) and OUTDIR/models.txt (NAME N_OUTPUTS).  References: a float64
PyTorch/NumPy evaluation of exactly the graph written, following the ONNX
operator specification.  Kept apart from wild_zoo.py (whose stamp covers
its whole source) so that a new model here regenerates only this directory.
"""
import hashlib
import json
import math
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402
from wild_zoo import G, N_CALIB  # noqa: E402


def graph_model(g, in_shape, outs, opset):
    """outs: [(name, shape)]; an open batch dimension N on input and outputs."""
    graph = helper.make_graph(
        g.nodes, "detect", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N"] + list(in_shape[1:]))],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N"] + list(s[1:])) for n, s in outs], g.inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="detect_zoo")
    m.ir_version = 7
    return m


def ssd_heads(g, rng, n_cls):
    """Backbone (two convs, a stride-2 one) and two heads: boxes [N, A, 4]
    and class scores [N, A, n_cls] (softmax over classes), A = anchors per
    cell (2) times cells.  Returns the ONNX names and a torch function of
    the input giving (boxes, scores)."""
    c1, f1 = g.conv("input", 3, 8)
    r1 = g.node("Relu", [c1])
    w2 = (rng.standard_normal((8, 8, 3, 3)) * 0.2).astype(np.float32)
    c2 = g.node("Conv", [r1, g.init(w2)], pads=[1] * 4, strides=[2, 2])
    r2 = g.node("Relu", [c2])
    hb, fb = g.conv(r2, 8, 2 * 4, k=1, pad=0)
    hs, fs = g.conv(r2, 8, 2 * n_cls, k=1, pad=0)
    box = g.node("Reshape", [g.node("Transpose", [hb], perm=[0, 2, 3, 1]), g.init(np.array([1, -1, 4], np.int64))])
    sc = g.node("Reshape", [g.node("Transpose", [hs], perm=[0, 2, 3, 1]),
                            g.init(np.array([1, -1, n_cls], np.int64))])
    prob = g.node("Softmax", [sc], axis=2)

    def fn(t):
        y = F.relu(F.conv2d(F.relu(f1(t)), torch.from_numpy(w2).double(), padding=1, stride=2))
        b = fb(y).permute(0, 2, 3, 1).reshape(1, -1, 4)
        s = torch.softmax(fs(y).permute(0, 2, 3, 1).reshape(1, -1, n_cls), 2)
        return b, s
    return box, prob, fn


def d_two_outputs(rng, shape):
    """An SSD-like detector's raw outputs: boxes and class scores."""
    g = G(rng)
    box, prob, fn = ssd_heads(g, rng, 3)
    a = (shape[2] // 2) * (shape[3] // 2) * 2
    m = graph_model(g, shape, [(box, (1, a, 4)), (prob, (1, a, 3))], 11)
    return m, lambda t: [v.numpy() for v in fn(t)]


def d_shared_output(rng, shape):
    """An output that other nodes also read, and outputs in another order
    than the nodes that make them."""
    g = G(rng)
    c1, f1 = g.conv("input", 3, 4)
    s = g.node("Sigmoid", [c1])
    z = g.node("Mul", [s, c1])
    m = graph_model(g, shape, [(z, shape[:1] + (4,) + shape[2:]), (c1, shape[:1] + (4,) + shape[2:])], 13)

    def fn(t):
        y = f1(t)
        return [(torch.sigmoid(y) * y).numpy(), y.numpy()]
    return m, fn


def ref_topk(x, k, axis, largest):
    """ONNX TopK: the k largest (smallest) along axis, the lower index first
    among equals (a stable sort)."""
    order = np.argsort(-x if largest else x, axis=axis, kind="stable")
    idx = np.take(order, np.arange(k), axis=axis)
    return np.take_along_axis(x, idx, axis=axis), idx.astype(np.float64)


def d_topk(opset, largest, axis):
    """Scores from a conv head, then TopK: both outputs (values, indices)
    are graph outputs; Relu makes ties (zeros), which the lower index wins."""
    def make(rng, shape):
        g = G(rng)
        c1, f1 = g.conv("input", 3, 6)
        r = g.node("Relu", [c1])
        flat = g.node("Reshape", [r, g.init(np.array([1, 6, -1], np.int64))])
        n = shape[2] * shape[3]
        k = 5 if axis == 1 else n // 2 + 3  # past the positives of a slice: zeros tie
        attrs = dict(axis=axis)
        if opset >= 11:
            attrs.update(largest=largest, sorted=1)
        if opset < 10:
            vals, idx = g.node("TopK", [flat], n_out=2, k=k, **attrs)
        else:
            vals, idx = g.node("TopK", [flat, g.init(np.array([k], np.int64))], n_out=2, **attrs)
        os = (1, k, n) if axis == 1 else (1, 6, k)
        m = graph_model(g, shape, [(vals, os), (idx, os)], opset)
        m.graph.output[1].type.tensor_type.elem_type = TensorProto.INT64

        def fn(t):
            y = F.relu(f1(t)).reshape(1, 6, -1).numpy()
            return ref_topk(y, k, axis, largest)
        return m, fn
    return make


def ref_nms(boxes, scores, max_out, iou_thr, score_thr, center):
    """ONNX NonMaxSuppression (float32 arithmetic, as onnxruntime): per batch
    and class, by score (the lower index first among equals), a box kept
    unless its IoU with a kept one is above iou_thr; [num_selected, 3]."""
    f = np.float32
    out = []
    for b in range(boxes.shape[0]):
        bx = boxes[b].astype(f)
        if center:
            c = np.stack([bx[:, 1] - bx[:, 3] / f(2), bx[:, 0] - bx[:, 2] / f(2),
                          bx[:, 1] + bx[:, 3] / f(2), bx[:, 0] + bx[:, 2] / f(2)], 1)
        else:
            c = np.stack([np.minimum(bx[:, 0], bx[:, 2]), np.minimum(bx[:, 1], bx[:, 3]),
                          np.maximum(bx[:, 0], bx[:, 2]), np.maximum(bx[:, 1], bx[:, 3])], 1)
        area = (c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1])
        for k in range(scores.shape[1]):
            sc = scores[b, k].astype(f)
            cand = [i for i in range(len(sc)) if score_thr is None or sc[i] > f(score_thr)]
            cand.sort(key=lambda i: (-sc[i], i))
            kept = []
            for i in cand:
                if len(kept) >= max_out:
                    break
                drop = False
                for j in kept:
                    if area[i] <= 0 or area[j] <= 0:
                        continue
                    ih = min(c[i, 2], c[j, 2]) - max(c[i, 0], c[j, 0])
                    iw = min(c[i, 3], c[j, 3]) - max(c[i, 1], c[j, 1])
                    if ih <= 0 or iw <= 0:
                        continue
                    inter = f(ih) * f(iw)
                    if inter / (area[i] + area[j] - inter) > f(iou_thr):
                        drop = True
                        break
                if not drop:
                    kept.append(i)
                    out.append((b, k, i))
    return np.array(out, np.float64).reshape(-1, 3)


def ssd_decoded(g, rng, shape, center):
    """ssd_heads with the boxes decoded against constant anchors (anchor +
    0.5 * delta) and the scores transposed to [B, C, N]: NonMaxSuppression's
    inputs and the class scores [B, N, C] (names), the anchors and the
    heads' torch function."""
    box, prob, fn = ssd_heads(g, rng, 3)
    a = (shape[2] // 2) * (shape[3] // 2) * 2
    ctr = rng.uniform(0, 1, (1, a, 2)).astype(np.float32)
    size = rng.uniform(0.2, 0.6, (1, a, 2)).astype(np.float32)
    anchors = np.concatenate([ctr, size], 2) if center else np.concatenate([ctr - size / 2, ctr + size / 2], 2)
    dec = g.node("Add", [g.node("Mul", [box, g.init(np.array(0.5, np.float32))]), g.init(anchors)])
    return dec, g.node("Transpose", [prob], perm=[0, 2, 1]), prob, anchors, fn


def d_ssd_nms(opset, center, score_thr):
    """A small SSD-like detector: the heads of d_two_outputs, boxes decoded
    against constant anchors (anchor + 0.5 * delta), scores transposed to
    [B, C, N], and NonMaxSuppression; outputs: boxes, scores, selected."""
    def make(rng, shape):
        g = G(rng)
        dec, st, prob, anchors, fn = ssd_decoded(g, rng, shape, center)
        a = anchors.shape[1]
        ins = [dec, st, g.init(np.array([4], np.int64)), g.init(np.array([0.45], np.float32))]
        if score_thr is not None:
            ins.append(g.init(np.array([score_thr], np.float32)))
        sel = g.node("NonMaxSuppression", ins, center_point_box=center)
        m = graph_model(g, shape, [(dec, (1, a, 4)), (prob, (1, a, 3)), (sel, (1, 3))], opset)
        m.graph.output[2].type.tensor_type.elem_type = TensorProto.INT64
        del m.graph.output[2].type.tensor_type.shape.dim[:]
        m.graph.output[2].type.tensor_type.shape.dim.add().dim_param = "num_selected"
        m.graph.output[2].type.tensor_type.shape.dim.add().dim_value = 3

        def f(t):
            b, s = fn(t)
            d = (b * 0.5 + torch.from_numpy(anchors).double()).float().numpy().astype(np.float64)
            sel = ref_nms(d.astype(np.float32), s.permute(0, 2, 1).float().numpy(), 4, 0.45, score_thr, center)
            return [d, s.numpy(), sel]
        return m, f
    return make


class _NMS(torch.autograd.Function):
    """NonMaxSuppression for torch.onnx.export (torchvision's nms symbolic,
    which this machine lacks, emits the same node): boxes [1, N, 4], scores
    [1, C, N] -> selected [K, 3] int64."""

    @staticmethod
    def forward(ctx, boxes, scores, max_out, iou):
        sel = ref_nms(boxes.float().numpy(), scores.float().numpy(), max_out, iou, None, 0)
        return torch.from_numpy(sel).long()

    @staticmethod
    def symbolic(g, boxes, scores, max_out, iou):
        return g.op("NonMaxSuppression", boxes, scores, g.op("Constant", value_t=torch.tensor([max_out])),
                    g.op("Constant", value_t=torch.tensor([iou], dtype=torch.float32)))


class _TorchSSD(torch.nn.Module):
    """An SSD-like detector with the post-processing exporters write after
    NMS: the box column of the selection, the kept boxes and their class
    scores gathered, the class cast to float, all concatenated."""

    def __init__(self, rng, n_cls, anchors):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = torch.nn.Conv2d(8, 8, 3, padding=1, stride=2)
        self.hb = torch.nn.Conv2d(8, 8, 1)
        self.hs = torch.nn.Conv2d(8, 2 * n_cls, 1)
        for p in self.parameters():
            p.data = torch.from_numpy(rng.standard_normal(tuple(p.shape)).astype(np.float32) * 0.2)
        self.n_cls = n_cls
        self.register_buffer("anchors", torch.from_numpy(anchors))

    def forward(self, x):
        y = F.relu(self.c2(F.relu(self.c1(x))))
        b = self.hb(y).permute(0, 2, 3, 1).reshape(x.shape[0], -1, 4)
        p = torch.softmax(self.hs(y).permute(0, 2, 3, 1).reshape(x.shape[0], -1, self.n_cls), 2)
        dec = b * 0.5 + self.anchors
        sel = _NMS.apply(dec, p.transpose(1, 2), 3, 0.45)
        idx, cls = sel[:, 2], sel[:, 1]
        det = torch.cat([dec[0][idx], p[0][idx], cls.unsqueeze(1).to(dec.dtype)], 1)
        return det, idx


def d_torch_ssd_tail(opset):
    """_TorchSSD exported by torch.onnx.export with an open batch and an open
    number of detections; outputs: the detections [K, 4 + C + 1] and the
    kept box indices [K] (int64)."""
    def make(rng, shape):
        a = (shape[2] // 2) * (shape[3] // 2) * 2
        ctr = rng.uniform(0, 1, (1, a, 2)).astype(np.float32)
        size = rng.uniform(0.2, 0.6, (1, a, 2)).astype(np.float32)
        net = _TorchSSD(rng, 3, np.concatenate([ctr - size / 2, ctr + size / 2], 2)).eval()
        import io
        import warnings
        buf = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on _NMS.forward's NumPy round trip
            torch.onnx.export(net, torch.zeros(shape), buf, opset_version=opset, input_names=["input"],
                              output_names=["det", "idx"],
                              dynamic_axes={"input": {0: "N"}, "det": {0: "K"}, "idx": {0: "K"}})
        m = onnx.load_from_string(buf.getvalue())
        net = net.double()
        return m, lambda t: [v.numpy() for v in net(t)]
    return make


def d_nms_tail(opset):
    """Hand-built, as older exporters write it: Slice [:, 2:3] and Squeeze of
    the selection, Gather of the boxes [1, N, 4] on axis 1 and of the
    scores [1, C, N] on axis 2 (the data-dependent length on another
    axis), Transpose and Squeeze, the class column cast to float, Concat,
    a scale per column; outputs: detections and the box indices (int64)."""
    def make(rng, shape):
        g = G(rng)
        dec, st, _, anchors, fn = ssd_decoded(g, rng, shape, 0)
        sel = g.node("NonMaxSuppression", [dec, st, g.init(np.array([3], np.int64)),
                                           g.init(np.array([0.45], np.float32)), g.init(np.array([0.1], np.float32))])
        i64 = lambda v: g.init(np.array(v, np.int64))
        col = lambda c: g.node("Slice", [sel, i64([c]), i64([c + 1]), i64([1])])
        idx = g.node("Squeeze", [col(2)], axes=[1])
        kb = g.node("Squeeze", [g.node("Gather", [dec, idx], axis=1)], axes=[0])
        ks = g.node("Squeeze", [g.node("Transpose", [g.node("Gather", [st, idx], axis=2)], perm=[0, 2, 1])], axes=[0])
        cls = g.node("Cast", [col(1)], to=TensorProto.FLOAT)
        scale = (rng.uniform(0.5, 2, (1, 8))).astype(np.float32)
        det = g.node("Mul", [g.node("Concat", [kb, ks, cls], axis=1), g.init(scale)])
        m = graph_model(g, shape, [(det, (1, 8)), (idx, (1,))], opset)
        for k, dims in ((0, ["K", 8]), (1, ["K"])):
            t = m.graph.output[k].type.tensor_type
            del t.shape.dim[:]
            for d in dims:
                if isinstance(d, str):
                    t.shape.dim.add().dim_param = d
                else:
                    t.shape.dim.add().dim_value = d
        m.graph.output[1].type.tensor_type.elem_type = TensorProto.INT64

        def f(t):
            b, s = fn(t)
            d = (b * 0.5 + torch.from_numpy(anchors).double()).float().numpy().astype(np.float64)
            sp = s.permute(0, 2, 1).numpy()
            sel = ref_nms(d.astype(np.float32), sp.astype(np.float32), 3, 0.45, 0.1, 0)
            i = sel[:, 2].astype(np.int64)
            det = np.concatenate([d[0][i], sp[0][:, i].T, sel[:, 1:2]], 1) * scale
            return [det, i.astype(np.float64)]
        return m, f
    return make


def ref_roi_align(x, rois, bidx, oh, ow, sr, scale, half_pixel, max_mode):
    """ONNX RoiAlign as its reference implementation and onnxruntime compute
    it (float64 here)."""
    n, c, h, w = x.shape
    out = np.zeros((len(rois), c, oh, ow))
    off = 0.5 if half_pixel else 0.0
    for r, (roi, b) in enumerate(zip(rois, bidx)):
        x0, y0 = roi[0] * scale - off, roi[1] * scale - off
        rw, rh = roi[2] * scale - off - x0, roi[3] * scale - off - y0
        if not half_pixel:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / oh, rw / ow
        gh = sr if sr > 0 else int(math.ceil(rh / oh))
        gw = sr if sr > 0 else int(math.ceil(rw / ow))
        for ph in range(oh):
            for pw in range(ow):
                vals = []
                for iy in range(gh):
                    for ix in range(gw):
                        yy = y0 + ph * bh + (iy + 0.5) * bh / gh
                        xx = x0 + pw * bw + (ix + 0.5) * bw / gw
                        if yy < -1 or yy > h or xx < -1 or xx > w:
                            vals.append(np.zeros(c))
                            continue
                        yy, xx = max(yy, 0.0), max(xx, 0.0)
                        yl, xl = int(yy), int(xx)
                        if yl >= h - 1:
                            yl = yh = h - 1
                            yy = float(yl)
                        else:
                            yh = yl + 1
                        if xl >= w - 1:
                            xl = xh = w - 1
                            xx = float(xl)
                        else:
                            xh = xl + 1
                        ly, lx = yy - yl, xx - xl
                        p = x[int(b)]
                        t = [(1 - ly) * (1 - lx) * p[:, yl, xl], (1 - ly) * lx * p[:, yl, xh],
                             ly * (1 - lx) * p[:, yh, xl], ly * lx * p[:, yh, xh]]
                        vals.append(np.max(t, 0) if max_mode else np.sum(t, 0))
                v = np.array(vals)
                out[r, :, ph, pw] = v.max(0) if max_mode else v.sum(0) / max(gh * gw, 1)
    return out


def d_roi_align(opset, mode, sr, ctm, roi_from_head):
    """A conv feature map pooled by RoiAlign over fixed rois (some partly
    outside the map, one inverted) or rois computed by a head (Sigmoid of a
    conv, scaled to the image)."""
    def make(rng, shape):
        g = G(rng)
        c1, f1 = g.conv("input", 3, 4)
        r1 = g.node("Relu", [c1])
        h, w = shape[2], shape[3]
        scale = 0.5
        attrs = dict(mode=mode, output_height=3, output_width=2, sampling_ratio=sr, spatial_scale=scale)
        if ctm:
            attrs["coordinate_transformation_mode"] = ctm
        bidx = np.zeros(4, np.int64)
        if roi_from_head:
            hc, fh = g.conv(r1, 4, 4, k=1, pad=0)
            pooled = g.node("GlobalAveragePool", [hc])
            sig = g.node("Sigmoid", [g.node("Reshape", [pooled, g.init(np.array([1, 4], np.int64))])])
            corners = g.node("Mul", [sig, g.init(np.array([w, h, 2 * w, 2 * h], np.float32))])
            rois_in = g.node("Concat", [corners, g.init(np.array([[0, 0, 2 * w, 2 * h], [w, 1, 2 * w - 2, h],
                                                                  [3, 2, 2 * w + 6, h + 3]], np.float32))], axis=0)
        else:
            rois_c = np.array([[0, 0, 2 * w, 2 * h], [w, 1, 2 * w - 2, h], [3, 2, 2 * w + 6, h + 3],
                               [2 * w - 2, 2 * h - 2, 4, 3]], np.float32)
            rois_in = g.init(rois_c)
        y = g.node("RoiAlign", [r1, rois_in, g.init(bidx)], **attrs)
        m = graph_model(g, shape, [(y, (4, 4, 3, 2))], opset)
        m.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 4
        half = (ctm or ("half_pixel" if opset >= 16 else "output_half_pixel")) == "half_pixel"

        def fn(t):
            feat = F.relu(f1(t))
            if roi_from_head:
                pc = fh(feat).mean((2, 3)).reshape(1, 4)
                cr = torch.sigmoid(pc) * torch.tensor([w, h, 2 * w, 2 * h], dtype=torch.float64)
                rr = np.concatenate([cr.numpy(), np.array([[0, 0, 2 * w, 2 * h], [w, 1, 2 * w - 2, h],
                                                           [3, 2, 2 * w + 6, h + 3]])], 0)
            else:
                rr = rois_c.astype(np.float64)
            return [ref_roi_align(feat.numpy(), rr, bidx, 3, 2, sr, scale, half, mode == "max")]
        return m, fn
    return make


def d_if_shape(opset):
    """Exporters' shape checks: If on Equal(Shape(x)[1], 4), constant once
    the input's shape is fixed; the then branch (taken) reads outer values
    and has an initializer of its own, and holds a nested If whose else
    branch is taken; the outer else branch would fail."""
    def make(rng, shape):
        g = G(rng)
        c1, f1 = g.conv("input", 3, 4)
        dim = g.node("Gather", [g.node("Shape", [c1]), g.init(np.array(1, np.int64))], axis=0)
        cond = g.node("Equal", [dim, g.init(np.array(4, np.int64))])
        k = rng.standard_normal((1, 4, 1, 1)).astype(np.float32)
        inner_then = helper.make_graph([helper.make_node("Neg", [c1], ["in_then"], name="inner_neg")], "inner_then",
                                       [], [helper.make_tensor_value_info("in_then", TensorProto.FLOAT, None)])
        inner_else = helper.make_graph([helper.make_node("Sigmoid", [c1], ["in_else"], name="inner_sig")],
                                       "inner_else", [],
                                       [helper.make_tensor_value_info("in_else", TensorProto.FLOAT, None)])
        ncond = helper.make_node("Equal", [dim, "three"], ["ncond"], name="inner_eq")
        three = onnx.numpy_helper.from_array(np.array(3, np.int64), "three")
        then_b = helper.make_graph(
            [ncond, helper.make_node("If", ["ncond"], ["inner_out"], name="inner_if", then_branch=inner_then,
                                     else_branch=inner_else),
             helper.make_node("Mul", ["inner_out", "then_k"], ["then_out"], name="then_mul")],
            "then", [], [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, None)],
            [three, onnx.numpy_helper.from_array(k, "then_k")])
        else_b = helper.make_graph([helper.make_node("Relu", [c1], ["else_out"], name="else_relu")], "else", [],
                                   [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, None)])
        y = g.node("If", [cond], then_branch=then_b, else_branch=else_b)
        z = g.node("Add", [y, c1])
        m = graph_model(g, shape, [(z, (1, 4) + tuple(shape[2:]))], opset)

        def fn(t):
            c = f1(t)
            return [(torch.sigmoid(c) * torch.from_numpy(k).double() + c).numpy()]
        return m, fn
    return make


# name -> (make, per-sample input shape)
MODELS = {
    "det_two_outputs_o11": (d_two_outputs, (3, 8, 10)),
    "det_shared_output_o13": (d_shared_output, (3, 5, 6)),
    "det_topk_o9": (d_topk(9, 1, -1), (3, 4, 5)),
    "det_topk_o11": (d_topk(11, 1, -1), (3, 4, 5)),
    "det_topk_smallest_o11": (d_topk(11, 0, 1), (3, 4, 5)),
    "det_ssd_nms_o11": (d_ssd_nms(11, 0, 0.3), (3, 8, 10)),
    "det_ssd_nms_center_o10": (d_ssd_nms(10, 1, None), (3, 8, 10)),
    "det_roialign_o16": (d_roi_align(16, "avg", 0, None, False), (3, 8, 10)),
    "det_roialign_max_o10": (d_roi_align(10, "max", 2, None, False), (3, 8, 10)),
    "det_roialign_head_o16": (d_roi_align(16, "avg", 2, "output_half_pixel", True), (3, 8, 10)),
    "det_if_shape_o11": (d_if_shape(11), (3, 5, 6)),
    "det_torch_ssd_tail_o11": (d_torch_ssd_tail(11), (3, 8, 10)),
    "det_nms_tail_o10": (d_nms_tail(10), (3, 8, 10)),
    "det_nms_tail_o12": (d_nms_tail(12), (3, 8, 10)),
}


def e_topk_k_large(rng, shape):
    """k larger than the axis: refused naming TopK and the node."""
    g = G(rng)
    c1, _ = g.conv("input", 3, 4)
    g.node("TopK", [c1, g.init(np.array([shape[3] + 1], np.int64))], n_out=2)
    return graph_model(g, shape, [(g.nodes[-1].output[0], (1, 4, shape[2], shape[3] + 1))], 11)


def _nms_sel(g, shape):
    c1, _ = g.conv("input", 3, 4)
    b = g.node("Reshape", [c1, g.init(np.array([1, -1, 4], np.int64))])
    s = g.node("Reshape", [c1, g.init(np.array([1, 1, -1], np.int64))])
    s = g.node("Slice", [s, g.init(np.array([0], np.int64)), g.init(np.array([shape[2] * shape[3]], np.int64)),
                         g.init(np.array([2], np.int64))])
    return b, g.node("NonMaxSuppression", [b, s, g.init(np.array([2], np.int64))])


def e_nms_feeds(rng, shape):
    """The kept boxes (a data-dependent number of rows) into a Gemm: an
    outsourced layer has a fixed input length."""
    g = G(rng)
    b, sel = _nms_sel(g, shape)
    idx = g.node("Squeeze", [g.node("Slice", [sel, g.init(np.array([2], np.int64)), g.init(np.array([3], np.int64)),
                                              g.init(np.array([1], np.int64))])], axes=[1])
    kb = g.node("Gather", [g.node("Squeeze", [b], axes=[0]), idx])
    y = g.node("Gemm", [kb, g.init(np.ones((4, 2), np.float32))])
    return graph_model(g, shape, [(y, (1, 2))], 11)


def e_nms_shape(rng, shape):
    """Shape of the selection: its size is only known once the device ran."""
    g = G(rng)
    _, sel = _nms_sel(g, shape)
    n = g.node("Cast", [g.node("Shape", [sel])], to=TensorProto.FLOAT)
    y = g.node("Add", [g.node("ReduceMax", [sel], axes=[1], keepdims=0), n])
    return graph_model(g, shape, [(y, (1, 2))], 11)


def e_nms_reduce(rng, shape):
    """A sum over the selected rows (the data-dependent dimension)."""
    g = G(rng)
    _, sel = _nms_sel(g, shape)
    y = g.node("ReduceSum", [g.node("Cast", [sel], to=TensorProto.FLOAT)], axes=[0], keepdims=0)
    return graph_model(g, shape, [(y, (3,))], 11)


def e_if_dynamic(rng, shape):
    """If on a condition computed from the input: data-dependent control flow."""
    g = G(rng)
    c1, _ = g.conv("input", 3, 4)
    cond = g.node("ReduceMax", [c1], keepdims=0)
    br = [helper.make_graph([helper.make_node(op, [c1], [op.lower() + "_o"], name=op.lower())], op, [],
                            [helper.make_tensor_value_info(op.lower() + "_o", TensorProto.FLOAT, None)])
          for op in ("Relu", "Neg")]
    y = g.node("If", [cond], then_branch=br[0], else_branch=br[1])
    return graph_model(g, shape, [(y, (1, 4) + tuple(shape[2:]))], 11)


def e_loop(rng, shape):
    """Loop: refused naming the node."""
    g = G(rng)
    c1, _ = g.conv("input", 3, 4)
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="b_id"),
         helper.make_node("Relu", ["v_in"], ["v_out"], name="b_relu")], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)])
    y = g.node("Loop", [g.init(np.array(2, np.int64)), g.init(np.array(True)), c1], body=body)
    return graph_model(g, shape, [(y, (1, 4) + tuple(shape[2:]))], 11)


# must be refused (test_detect checks the messages name the op and node)
ERRORS = {"e_topk_k_large": e_topk_k_large, "e_nms_feeds": e_nms_feeds, "e_nms_shape": e_nms_shape,
          "e_nms_reduce": e_nms_reduce, "e_if_dynamic": e_if_dynamic,
          "e_loop": e_loop}


def ref_path(out, name, k):
    return os.path.join(out, name + (".ref.npy" if k == 0 else ".ref.%d.npy" % k))


def generate(out, name, make, shape):
    seed = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    common.set_determinism(seed, 2)
    gen = torch.Generator().manual_seed(seed)
    x = common.random_inputs(shape, 1, gen)
    calib = common.random_inputs(shape, N_CALIB, gen)
    proto, fn = make(np.random.default_rng(seed), (1,) + tuple(shape))
    onnx.checker.check_model(proto)
    with torch.no_grad():
        refs = [np.asarray(r, dtype=np.float32) for r in fn(x.double())]
    assert len(refs) == len(proto.graph.output)
    for r in refs:
        if not np.all(np.isfinite(r)):
            raise RuntimeError("%s: non-finite reference" % name)
    with open(os.path.join(out, name + ".onnx.tmp"), "wb") as fp:
        fp.write(proto.SerializeToString())
    os.replace(os.path.join(out, name + ".onnx.tmp"), os.path.join(out, name + ".onnx"))
    for path, a in [(os.path.join(out, name + ".input.npy"), x.numpy()),
                    (os.path.join(out, name + ".calib.npy"), calib.numpy())] + \
            [(ref_path(out, name, k), r) for k, r in enumerate(refs)]:
        np.save(path + ".tmp.npy", np.ascontiguousarray(a, dtype=np.float32))
        os.replace(path + ".tmp.npy", path)
    return len(refs)


def main(argv):
    if "--list" in argv:
        print("\n".join(MODELS))
        return 0
    out = [a for a in argv if not a.startswith("--")][0]
    os.makedirs(out, exist_ok=True)
    with open(__file__, "rb") as fp:
        src = hashlib.sha256(fp.read() + torch.__version__.encode() + onnx.__version__.encode()).hexdigest()
    stamp_path = os.path.join(out, "stamp.json")
    stamps = {}
    if os.path.exists(stamp_path):
        with open(stamp_path) as fp:
            stamps = json.load(fp)
    rows = []
    for name, (make, shape) in MODELS.items():
        st = stamps.get(name)
        if not (st and st[0] == src and os.path.exists(os.path.join(out, name + ".onnx"))):
            stamps[name] = [src, generate(out, name, make, shape)]
            print("%-24s written" % name)
        rows.append("%s %d" % (name, stamps[name][1]))
    for name, make in ERRORS.items():
        m = make(np.random.default_rng(1), (1, 3, 5, 6))
        with open(os.path.join(out, name + ".onnx.tmp"), "wb") as fp:
            fp.write(m.SerializeToString())
        os.replace(os.path.join(out, name + ".onnx.tmp"), os.path.join(out, name + ".onnx"))
    with open(stamp_path + ".tmp", "w") as fp:
        json.dump(stamps, fp)
    os.replace(stamp_path + ".tmp", stamp_path)
    with open(os.path.join(out, "models.txt"), "w") as fp:
        fp.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
