"""A small float64 NumPy interpreter for exactly the ONNX ops twinedge
supports.  It is the independent reference for the hand-built ONNX models
(which PyTorch cannot produce) and cross-checks that every exported model
means what the PyTorch output says (there is no onnxruntime on Debian).

    y = run(onnx_model, x)        # float64 result of the single output

Pooling with ceil_mode follows PyTorch (and ONNX opset >= 19): the last
window is dropped if it would start in the right padding; an AveragePool
window with count_include_pad=1 counts padding but not the ceil overhang.
"""
import numpy as np
from onnx import numpy_helper


def _attrs(node):
    out = {}
    for a in node.attribute:
        if a.type == a.FLOAT:
            out[a.name] = a.f
        elif a.type == a.INT:
            out[a.name] = a.i
        elif a.type == a.STRING:
            out[a.name] = a.s.decode()
        elif a.type == a.INTS:
            out[a.name] = list(a.ints)
        elif a.type == a.FLOATS:
            out[a.name] = list(a.floats)
        elif a.type == a.TENSOR:
            out[a.name] = numpy_helper.to_array(a.t)
        else:
            raise NotImplementedError("attribute type %d (%s)" % (a.type, a.name))
    return out


def _pool_geometry(h, k, s, d, pb, pe, ceil_mode):
    """Output length and the extra end padding a ceil-mode window needs."""
    eff = (k - 1) * d + 1
    num = h + pb + pe - eff
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= h + pb:
        out -= 1
    extra = max(0, (out - 1) * s + eff - (h + pb + pe))
    return out, extra


def _windows(xp, kernel, strides, dil, outs):
    """Yield the strided slices of padded xp [N, C, H, W] for each kernel tap."""
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            hi, wj = i * dil[0], j * dil[1]
            yield i, j, xp[:, :, hi:hi + strides[0] * (outs[0] - 1) + 1:strides[0],
                           wj:wj + strides[1] * (outs[1] - 1) + 1:strides[1]]


def _spatial(node, a, x, kernel):
    nd = x.ndim - 2
    if nd != 2:
        raise NotImplementedError("%s: only 2-D spatial inputs" % node.op_type)
    auto = a.get("auto_pad", "NOTSET")
    if auto not in ("NOTSET", "VALID"):
        raise NotImplementedError("auto_pad %s" % auto)
    strides = a.get("strides", [1] * nd)
    dil = a.get("dilations", [1] * nd)
    pads = a.get("pads", [0] * (2 * nd)) if auto == "NOTSET" else [0] * (2 * nd)
    return strides, dil, pads


def _conv(node, a, x, w, b=None):
    g = a.get("group", 1)
    kernel = list(w.shape[2:])
    strides, dil, pads = _spatial(node, a, x, kernel)
    n, c, h, wd = x.shape
    m = w.shape[0]
    oh, _ = _pool_geometry(h, kernel[0], strides[0], dil[0], pads[0], pads[2], False)
    ow, _ = _pool_geometry(wd, kernel[1], strides[1], dil[1], pads[1], pads[3], False)
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    cg, mg = c // g, m // g
    wg = w.reshape(g, mg, cg, kernel[0], kernel[1])
    y = np.zeros((n, g, mg, oh * ow))
    for i, j, xs in _windows(xp, kernel, strides, dil, (oh, ow)):
        # [g, mg, cg] @ [n, g, cg, oh*ow] -> [n, g, mg, oh*ow]  (BLAS)
        y += np.matmul(np.ascontiguousarray(wg[:, :, :, i, j]),
                       np.ascontiguousarray(xs).reshape(n, g, cg, oh * ow))
    y = y.reshape(n, m, oh, ow)
    if b is not None:
        y += b.reshape(1, m, 1, 1)
    return y


def _pool(node, a, x, kind):
    kernel = a["kernel_shape"]
    strides, dil, pads = _spatial(node, a, x, kernel)
    ceil = a.get("ceil_mode", 0)
    n, c, h, w = x.shape
    oh, eh = _pool_geometry(h, kernel[0], strides[0], dil[0], pads[0], pads[2], ceil)
    ow, ew = _pool_geometry(w, kernel[1], strides[1], dil[1], pads[1], pads[3], ceil)
    padw = ((0, 0), (0, 0), (pads[0], pads[2] + eh), (pads[1], pads[3] + ew))
    if kind == "max":
        xp = np.pad(x, padw, constant_values=-np.inf)
        y = np.full((n, c, oh, ow), -np.inf)
        for _, _, xs in _windows(xp, kernel, strides, dil, (oh, ow)):
            y = np.maximum(y, xs)
        return y
    xp = np.pad(x, padw)
    mask = np.zeros((1, 1) + xp.shape[2:])
    if a.get("count_include_pad", 0):
        mask[:, :, :h + pads[0] + pads[2], :w + pads[1] + pads[3]] = 1
    else:
        mask[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + w] = 1
    s = np.zeros((n, c, oh, ow))
    cnt = np.zeros((1, 1, oh, ow))
    for (_, _, xs), (_, _, ms) in zip(_windows(xp, kernel, strides, dil, (oh, ow)),
                                      _windows(mask, kernel, strides, dil, (oh, ow))):
        s += xs
        cnt += ms
    return s / cnt


def _lrn(a, x):
    size = a["size"]
    alpha, beta, bias = a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0)
    c = x.shape[1]
    sq = x * x
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    acc = np.zeros_like(x)
    for ch in range(c):
        acc[:, ch] = sq[:, max(0, ch - lo):min(c, ch + hi + 1)].sum(axis=1)
    return x / (bias + alpha / size * acc) ** beta


def _opt(inputs, i):
    return inputs[i] if len(inputs) > i and inputs[i] is not None else None


def _eval_node(node, inputs, opset):
    a = _attrs(node)
    op = node.op_type
    x = inputs[0] if inputs else None
    if op == "Conv":
        return _conv(node, a, x, inputs[1], _opt(inputs, 2))
    if op == "Gemm":
        A = x.T if a.get("transA", 0) else x
        B = inputs[1].T if a.get("transB", 0) else inputs[1]
        y = a.get("alpha", 1.0) * (A @ B)
        c = _opt(inputs, 2)
        return y + a.get("beta", 1.0) * c if c is not None else y
    if op == "MatMul":
        return np.matmul(x, inputs[1])
    if op == "BatchNormalization":
        scale, bias, mean, var = inputs[1:5]
        shp = (1, -1) + (1,) * (x.ndim - 2)
        eps = a.get("epsilon", 1e-5)
        return ((x - mean.reshape(shp)) / np.sqrt(var.reshape(shp) + eps) * scale.reshape(shp)
                + bias.reshape(shp))
    if op == "Relu":
        return np.maximum(x, 0)
    if op == "LeakyRelu":
        return np.where(x >= 0, x, a.get("alpha", 0.01) * x)
    if op == "PRelu":
        return np.where(x >= 0, x, inputs[1] * x)
    if op == "Clip":
        if opset < 11:
            lo, hi = a.get("min", -np.inf), a.get("max", np.inf)
        else:
            lo = _opt(inputs, 1)
            hi = _opt(inputs, 2)
            lo = -np.inf if lo is None else float(lo)
            hi = np.inf if hi is None else float(hi)
        return np.clip(x, lo, hi)
    if op == "Sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if op == "Tanh":
        return np.tanh(x)
    if op == "HardSigmoid":
        return np.clip(a.get("alpha", 0.2) * x + a.get("beta", 0.5), 0, 1)
    if op == "HardSwish":
        return x * np.clip(x / 6.0 + 0.5, 0, 1)
    if op == "MaxPool":
        return _pool(node, a, x, "max")
    if op == "AveragePool":
        return _pool(node, a, x, "avg")
    if op == "GlobalAveragePool":
        return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)
    if op == "LRN":
        return _lrn(a, x)
    if op == "Flatten":
        ax = a.get("axis", 1)
        ax = ax + x.ndim if ax < 0 else ax
        return x.reshape(int(np.prod(x.shape[:ax])), -1)
    if op == "Reshape":
        shape = [int(v) for v in inputs[1]]
        if not a.get("allowzero", 0):
            shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
        return x.reshape(shape)
    if op == "Concat":
        return np.concatenate(inputs, axis=a["axis"])
    if op in ("Add", "Sub", "Mul", "Div"):
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op]
        return f(inputs[0], inputs[1])
    if op == "Softmax":
        if opset < 13:
            ax = a.get("axis", 1)
            ax = ax + x.ndim if ax < 0 else ax
            x2 = x.reshape(int(np.prod(x.shape[:ax])), -1)
            e = np.exp(x2 - x2.max(axis=1, keepdims=True))
            return (e / e.sum(axis=1, keepdims=True)).reshape(x.shape)
        ax = a.get("axis", -1)
        e = np.exp(x - x.max(axis=ax, keepdims=True))
        return e / e.sum(axis=ax, keepdims=True)
    if op in ("Dropout", "Identity"):
        return x
    if op == "Pad":
        mode = a.get("mode", "constant")
        if opset < 11:
            pads, value = a["pads"], a.get("value", 0.0)
        else:
            pads = [int(v) for v in inputs[1]]
            cv = _opt(inputs, 2)
            value = 0.0 if cv is None else float(cv)
        nd = x.ndim
        if any(p < 0 for p in pads):
            raise NotImplementedError("negative pads")
        pw = [(pads[i], pads[i + nd]) for i in range(nd)]
        if mode == "constant":
            return np.pad(x, pw, constant_values=value)
        return np.pad(x, pw, mode={"reflect": "reflect", "edge": "edge"}[mode])
    if op == "LpNormalization":
        p = a.get("p", 2)
        ax = a.get("axis", -1)
        if p == 1:
            nrm = np.abs(x).sum(axis=ax, keepdims=True)
        else:
            nrm = np.sqrt((x * x).sum(axis=ax, keepdims=True))
        return x / nrm
    if op == "ReduceL2":
        axes = a.get("axes")
        if axes is None and len(inputs) > 1 and inputs[1] is not None:
            axes = [int(v) for v in inputs[1]]
        axes = tuple(range(x.ndim)) if axes is None else tuple(axes)
        return np.sqrt((x * x).sum(axis=axes, keepdims=bool(a.get("keepdims", 1))))
    if op == "Sqrt":
        return np.sqrt(x)
    if op == "Transpose":
        return np.transpose(x, a.get("perm", list(range(x.ndim))[::-1]))
    if op in ("Squeeze", "Unsqueeze"):
        axes = a.get("axes")
        if axes is None and len(inputs) > 1 and inputs[1] is not None:
            axes = [int(v) for v in inputs[1]]
        if op == "Squeeze":
            if axes is None:
                return np.squeeze(x)
            return np.squeeze(x, axis=tuple(ax % x.ndim for ax in axes))
        nd = x.ndim + len(axes)
        y = x
        for ax in sorted(ax % nd for ax in axes):
            y = np.expand_dims(y, ax)
        return y
    if op == "Constant":
        for k in ("value", "value_float", "value_floats", "value_int", "value_ints"):
            if k in a:
                return np.asarray(a[k])
        raise NotImplementedError("Constant without a supported value attribute")
    raise NotImplementedError("op %s is not supported" % op)


def run(model, x, return_all=False):
    """Evaluate `model` on input array x; returns the float64 output (or the
    dict of every value when return_all)."""
    g = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    vals = {}
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        vals[init.name] = arr.astype(np.float64) if arr.dtype.kind == "f" else arr
    inputs = [i.name for i in g.input if i.name not in vals]
    if len(inputs) != 1:
        raise ValueError("expected one graph input, got %s" % inputs)
    vals[inputs[0]] = np.asarray(x, dtype=np.float64)
    for node in g.node:
        ins = [vals[i] if i else None for i in node.input]
        y = _eval_node(node, ins, opset)
        if isinstance(y, np.ndarray) and y.dtype.kind == "f":
            y = y.astype(np.float64)
        vals[node.output[0]] = y
        for extra in node.output[1:]:  # e.g. Dropout's mask
            if extra:
                vals[extra] = np.ones_like(y, dtype=bool)
    return vals if return_all else vals[g.output[0].name]
