"""Shared helpers for the twinedge test models: seeding, initialisation,
synthetic inputs, ONNX export and the allowed-op check.

Runs with Debian's /usr/bin/python3 (torch 1.13, onnx 1.12, numpy 1.24).
"""
import collections
import io
import math

import numpy as np
import onnx
import torch
from onnx import numpy_helper
import torch.nn as nn

# The ops the C importer supports (owner tool).  Anything else in a generated
# model is a bug in the generator, except the deliberate "unsupported" model.
ALLOWED_OPS = frozenset([
    "Conv", "Gemm", "MatMul", "BatchNormalization", "Relu", "LeakyRelu",
    "PRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish",
    "MaxPool", "AveragePool", "GlobalAveragePool", "LRN", "Flatten",
    "Reshape", "Concat", "Add", "Mul", "Sub", "Div", "Softmax", "Dropout",
    "Identity", "Pad", "LpNormalization", "ReduceL2", "Sqrt", "Transpose",
    "Squeeze", "Unsqueeze", "Constant",
])

# Binary ops that need a constant operand (Add may join two activations).
# Div is also allowed with a ReduceL2 (or Sqrt) result as divisor: that is
# the L2-normalisation pattern.
_CONST_OPERAND_OPS = ("Mul", "Sub", "Div")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def set_determinism(seed=0, threads=2):
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)
    try:
        torch.use_deterministic_algorithms(True)
    except Exception:  # pragma: no cover - older torch
        pass


def natural_images(n, c, h, w, gen, mean=None, std=None):
    """n "real-looking" images: smooth random fields at several scales with
    correlated channels and a little pixel noise, values in [0, 1], then
    normalised with mean/std (ImageNet statistics for 3 channels, 0.5/0.5
    otherwise).  Returns float32 tensor [n, c, h, w]."""
    img = torch.zeros(n, c, h, w, dtype=torch.float64)
    for octave, weight in ((2, 1.0), (4, 0.6), (8, 0.35), (16, 0.2)):
        gh = max(2, min(h, octave))
        gw = max(2, min(w, octave))
        lum = torch.randn(n, 1, gh, gw, generator=gen, dtype=torch.float64)
        col = torch.randn(n, c, gh, gw, generator=gen, dtype=torch.float64)
        field = 0.8 * lum + 0.45 * col
        field = torch.nn.functional.interpolate(field, size=(h, w), mode="bilinear",
                                                align_corners=False)
        img += weight * field
    img += 0.05 * torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    img = torch.sigmoid(1.6 * img)  # squash into (0, 1), like pixel values
    if mean is None:
        mean = IMAGENET_MEAN if c == 3 else (0.5,) * c
        std = IMAGENET_STD if c == 3 else (0.5,) * c
    m = torch.tensor(mean, dtype=torch.float64).view(1, c, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(1, c, 1, 1)
    return ((img - m) / s).float()


def random_inputs(shape, count, gen):
    """count inputs of per-sample shape `shape` (without batch): images for
    4-D, standard normal otherwise."""
    if len(shape) == 3:
        return natural_images(count, shape[0], shape[1], shape[2], gen)
    return torch.randn((count,) + tuple(shape), generator=gen)


@torch.no_grad()
def init_model(model, calib, gen):
    """Deterministic random initialisation that keeps activations O(1)
    through any depth:

    1. kaiming-normal weights (ReLU gain), small random biases;
    2. one data-driven pass (LSUV-style): every Conv/Linear output is rescaled
       to unit standard deviation on the calibration batch, the weights and
       bias rescaled with it, so downstream layers see the corrected values;
    3. BatchNorm: random affine params, running statistics measured on the
       calibration batch (so they are far from 0/1 and BN folding is really
       exercised), then a small random perturbation.
    The model ends in eval mode."""
    for mod in model.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            fan_in = mod.weight[0].numel()
            std = math.sqrt(2.0 / fan_in)
            mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) * std)
            if mod.bias is not None:
                mod.bias.copy_((torch.rand(mod.bias.shape, generator=gen) - 0.5) * 0.2)
        elif isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            mod.weight.copy_(0.6 + 0.8 * torch.rand(mod.weight.shape, generator=gen))
            mod.bias.copy_(0.2 * torch.randn(mod.bias.shape, generator=gen))
        elif isinstance(mod, nn.PReLU):
            mod.weight.copy_(0.05 + 0.3 * torch.rand(mod.weight.shape, generator=gen))

    # 2. LSUV: rescale in the forward hooks (a single pass).
    model.eval()
    hooks = []

    def lsuv_hook(mod, inp, out):
        s = float(out.double().std())
        if not math.isfinite(s) or s < 1e-8:
            return None
        mod.weight.div_(s)
        if mod.bias is not None:
            mod.bias.div_(s)
        return out / s

    for mod in model.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            hooks.append(mod.register_forward_hook(lsuv_hook))
    model(calib)
    for h in hooks:
        h.remove()

    # 3. BN statistics from the calibration batch (cumulative average).
    bns = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    if bns:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
            bn.train()
        model(calib)
        for bn in bns:
            # Dead (constant) channels would give a near-zero variance and a
            # huge folded weight; keep every channel's variance sane.
            floor = 0.05 * float(bn.running_var.median()) + 1e-3
            bn.running_var.clamp_(min=floor)
            sd = bn.running_var.sqrt()
            bn.running_mean.add_(0.05 * sd * torch.randn(sd.shape, generator=gen))
            bn.running_var.mul_(0.9 + 0.2 * torch.rand(sd.shape, generator=gen))
            bn.momentum = 0.1
    model.eval()
    return model


def export_onnx(model, example, opset=13, input_name="input", output_name="output"):
    """Export to an onnx.ModelProto.  BatchNormalization nodes are preserved
    (TrainingMode.PRESERVE on an eval-mode model), so the C importer folds
    them itself instead of the exporter doing it."""
    model.eval()
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, example, buf, opset_version=opset,
                          do_constant_folding=True,
                          training=torch.onnx.TrainingMode.PRESERVE,
                          input_names=[input_name], output_names=[output_name])
    m = fold_constants(onnx.load_from_string(buf.getvalue()))
    # Shapes torch could not infer through the unfolded chains are unknown
    # in its value_info: redo the inference on the folded graph and write the
    # real (static) output shape.
    del m.graph.value_info[:]
    with torch.no_grad():
        out_shape = list(model(example).shape)
    dims = m.graph.output[0].type.tensor_type.shape.dim
    del dims[:]
    for d in out_shape:
        dims.add().dim_value = d
    m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    onnx.checker.check_model(m)
    return m


def _fold_node(node, ins):
    """NumPy value of a shape-helper node whose inputs are all constant, or
    None if the op is not one we fold."""
    a = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
    op = node.op_type
    if op == "ConstantOfShape":
        val = a.get("value")
        v = numpy_helper.to_array(val).reshape(-1) if val is not None else np.zeros(1, np.float32)
        return np.full([int(d) for d in ins[0]], v[0], dtype=v.dtype)
    if op == "Cast":
        return ins[0].astype(onnx.mapping.TENSOR_TYPE_TO_NP_TYPE[a["to"]])
    if op == "Concat":
        return np.concatenate(ins, axis=a["axis"])
    if op == "Reshape":
        shape = [ins[0].shape[i] if d == 0 else int(d) for i, d in enumerate(ins[1])]
        return ins[0].reshape(shape)
    if op == "Transpose":
        return np.transpose(ins[0], a.get("perm"))
    if op == "Slice":
        data, starts, ends = ins[0], ins[1], ins[2]
        axes = ins[3] if len(ins) > 3 and ins[3] is not None else range(len(starts))
        steps = ins[4] if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
        sl = [slice(None)] * data.ndim
        for s, e, ax, st in zip(starts, ends, axes, steps):
            sl[int(ax)] = slice(int(s), int(e), int(st))
        return data[tuple(sl)]
    if op in ("Unsqueeze", "Squeeze"):
        axes = a.get("axes", list(ins[1]) if len(ins) > 1 else None)
        if op == "Squeeze":
            return np.squeeze(ins[0], axis=tuple(int(x) for x in axes))
        y = ins[0]
        for ax in sorted(int(x) % (y.ndim + len(axes)) for x in axes):
            y = np.expand_dims(y, ax)
        return y
    if op == "Gather":
        return np.take(ins[0], ins[1], axis=a.get("axis", 0))
    return None


def fold_constants(model):
    """Fold the constant shape-helper chains torch 1.13 leaves behind (e.g.
    the pads computation of F.pad: ConstantOfShape/Slice/Cast/...) into
    initializers and drop whatever becomes unused."""
    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t) \
                if n.attribute[0].name == "value" else None
    keep, folded = [], {}
    for n in g.node:
        if n.op_type != "Constant" and all((not i) or consts.get(i) is not None for i in n.input):
            v = _fold_node(n, [consts[i] if i else None for i in n.input])
            if v is not None:
                consts[n.output[0]] = folded[n.output[0]] = v
                continue
        keep.append(n)
    # drop dead nodes / initializers (walk backwards from the output)
    needed = {o.name for o in g.output}
    live = []
    for n in reversed(keep):
        if any(o in needed for o in n.output):
            live.append(n)
            needed.update(i for i in n.input if i)
    live.reverse()
    inits = [i for i in g.initializer if i.name in needed]
    inits += [numpy_helper.from_array(v, k) for k, v in folded.items() if k in needed]
    del g.node[:]
    g.node.extend(live)
    del g.initializer[:]
    g.initializer.extend(inits)
    names = {i.name for i in inits} | {o for n in live for o in n.output}
    vi = [v for v in g.value_info if v.name in names]
    del g.value_info[:]
    g.value_info.extend(vi)
    return model


def op_histogram(model):
    return collections.Counter(n.op_type for n in model.graph.node)


def check_ops(model, allow_unsupported=False):
    """Raise ValueError if the model uses an op outside ALLOWED_OPS or a
    Mul/Sub/Div/MatMul without a constant operand (Div by a ReduceL2/Sqrt
    result is the L2-normalisation pattern and is allowed)."""
    g = model.graph
    consts = {i.name for i in g.initializer}
    producer = {}
    for n in g.node:
        for o in n.output:
            producer[o] = n
        if n.op_type == "Constant":
            consts.update(n.output)
    problems = []
    for n in g.node:
        if n.op_type not in ALLOWED_OPS:
            if not allow_unsupported:
                problems.append("op %s (node %r) is not supported" % (n.op_type, n.name))
            continue
        if n.op_type in _CONST_OPERAND_OPS:
            if not any(i in consts for i in n.input):
                div_ok = (n.op_type == "Div" and n.input[1] in producer and
                          producer[n.input[1]].op_type in ("ReduceL2", "Sqrt"))
                if not div_ok:
                    problems.append("%s node %r has no constant operand" % (n.op_type, n.name))
        if n.op_type == "MatMul" and n.input[1] not in consts:
            problems.append("MatMul node %r: right operand is not constant" % n.name)
        if n.op_type == "Conv" and not all(i in consts for i in n.input[1:] if i):
            problems.append("Conv node %r: weights are not constant" % n.name)
        if n.op_type == "Gemm":
            if not all(i in consts for i in n.input[1:] if i):
                problems.append("Gemm node %r: B/C are not constant" % n.name)
            if any(a.name == "transA" and a.i for a in n.attribute):
                problems.append("Gemm node %r: transA=1" % n.name)
    if len(g.input) - len([i for i in g.input if i.name in consts]) != 1 or len(g.output) != 1:
        problems.append("model must have exactly one input and one output")
    if problems:
        raise ValueError("; ".join(problems))
    return True
