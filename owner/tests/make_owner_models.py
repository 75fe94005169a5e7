#!/usr/bin/python3
"""Small ONNX models for the owner tool's tests, with reference outputs.

Usage: make_owner_models.py OUT_DIR

For each model NAME it writes NAME.onnx, NAME.input.npy and NAME.ref.npy
(the reference output, computed with torch in float64 from the same
parameters, independently of the C importer).  Also writes deliberately
broken files (unsupported op, malformed protobuf, unsupported opset).
"""
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(1234)


def rnd(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def t64(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def save(out, name, graph, x, ref, opset=13):
    oname = graph.output[0].name
    del graph.output[:]
    graph.output.append(vi(oname, list(np.asarray(ref).shape)))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="twinedge-owner-tests")
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(out, name + ".onnx"))
    np.save(os.path.join(out, name + ".input.npy"), x.astype(np.float32))
    np.save(os.path.join(out, name + ".ref.npy"), np.asarray(ref, dtype=np.float32))


def vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def bn_ref(y, g, b, mu, var, eps):
    sh = (1, -1) + (1,) * (y.dim() - 2)
    return (y - t64(mu).view(sh)) / torch.sqrt(t64(var).view(sh) + eps) * t64(g).view(sh) + t64(b).view(sh)


def bn_params(c):
    return (rnd(c) * 0.5 + 1.0, rnd(c) * 0.3, rnd(c) * 0.2,
            (np.abs(rnd(c)) + 0.5).astype(np.float32))


def conv_bn(out):
    x = rnd(1, 3, 9, 9)
    w, b = rnd(4, 3, 3, 3, scale=0.3), rnd(4, scale=0.1)
    g, be, mu, var = bn_params(4)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv1", pads=[1, 0, 2, 1], strides=[2, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "be", "mu", "var"], ["n"], name="bn1", epsilon=1e-3),
        helper.make_node("Relu", ["n"], ["y"], name="relu1"),
    ]
    graph = helper.make_graph(nodes, "conv_bn", [vi("x", ["N", 3, 9, 9])], [vi("y", None)],
                              [init("w", w), init("b", b), init("g", g), init("be", be), init("mu", mu),
                               init("var", var)])
    xp = F.pad(t64(x), (0, 1, 1, 2))  # left, right, top, bottom
    ref = F.relu(bn_ref(F.conv2d(xp, t64(w), t64(b), stride=(2, 1)), g, be, mu, var, 1e-3))
    save(out, "conv_bn", graph, x, ref.numpy())


def dw_nofold(out):
    x = rnd(1, 4, 8, 8)
    w = rnd(4, 1, 3, 3, scale=0.5)
    g, be, mu, var = bn_params(4)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="dw", group=4, dilations=[2, 2], auto_pad="SAME_UPPER",
                         kernel_shape=[3, 3]),
        helper.make_node("BatchNormalization", ["c", "g", "be", "mu", "var"], ["n"], name="bn_kept"),
        helper.make_node("Add", ["n", "c"], ["y"], name="residual"),
    ]
    graph = helper.make_graph(nodes, "dw_nofold", [vi("x", [1, 4, 8, 8])], [vi("y", [1, 4, 8, 8])],
                              [init("w", w), init("g", g), init("be", be), init("mu", mu), init("var", var)])
    c = F.conv2d(t64(x), t64(w), None, padding=2, dilation=2, groups=4)
    ref = bn_ref(c, g, be, mu, var, 1e-5) + c
    save(out, "dw_nofold", graph, x, ref.numpy())


def same_lower(out):
    x = rnd(1, 2, 6, 6)
    w = rnd(3, 2, 2, 2, scale=0.5)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="cl", auto_pad="SAME_LOWER")]
    graph = helper.make_graph(nodes, "same_lower", [vi("x", [1, 2, 6, 6])], [vi("y", None)], [init("w", w)])
    ref = F.conv2d(F.pad(t64(x), (1, 0, 1, 0)), t64(w))
    save(out, "same_lower", graph, x, ref.numpy())


def gemm(out):
    x = rnd(2, 5)
    b1, c1 = rnd(3, 5), rnd(3)
    b2, c2 = rnd(3, 4), rnd(1, 4)
    nodes = [
        helper.make_node("Gemm", ["x", "b1", "c1"], ["h"], name="fc1", alpha=0.5, beta=2.0, transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "b2", "c2"], ["y"], name="fc2"),
    ]
    graph = helper.make_graph(nodes, "gemm", [vi("x", [2, 5])], [vi("y", [2, 4])],
                              [init("b1", b1), init("c1", c1), init("b2", b2), init("c2", c2)])
    h = F.relu(0.5 * t64(x) @ t64(b1).T + 2.0 * t64(c1))
    ref = h @ t64(b2) + t64(c2)
    save(out, "gemm", graph, x, ref.numpy())


def gemm_ta(out):
    x = rnd(5, 2)
    b, c = rnd(5, 3), np.array(0.75, dtype=np.float32)
    nodes = [helper.make_node("Gemm", ["x", "b", "c"], ["y"], name="fc_ta", transA=1, beta=0.5)]
    graph = helper.make_graph(nodes, "gemm_ta", [vi("x", [5, 2])], [vi("y", [2, 3])], [init("b", b), init("c", c)])
    ref = t64(x).T @ t64(b) + 0.5 * 0.75
    save(out, "gemm_ta", graph, x, ref.numpy())


def matmul(out):
    x = rnd(2, 3, 4)
    w, b = rnd(4, 6), rnd(6)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
        helper.make_node("Add", ["h", "b"], ["y"], name="mm_bias"),
    ]
    graph = helper.make_graph(nodes, "matmul", [vi("x", [2, 3, 4])], [vi("y", None)], [init("w", w), init("b", b)])
    ref = t64(x) @ t64(w) + t64(b)
    save(out, "matmul", graph, x, ref.numpy())


def matmul_left(out):
    x = rnd(2, 4, 3)
    a = rnd(5, 4)
    nodes = [helper.make_node("MatMul", ["a", "x"], ["y"], name="mm_left")]
    graph = helper.make_graph(nodes, "matmul_left", [vi("x", [2, 4, 3])], [vi("y", None)], [init("a", a)])
    ref = t64(a) @ t64(x)
    save(out, "matmul_left", graph, x, ref.numpy())


def ops11(out):
    x = rnd(1, 2, 7, 7)
    w = rnd(18, 4)
    nodes = [
        helper.make_node("MaxPool", ["x"], ["m"], name="pool", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
        helper.make_node("Constant", [], ["ca"], value=numpy_helper.from_array(np.array(2.0, np.float32))),
        helper.make_node("Constant", [], ["cb"], value=numpy_helper.from_array(np.array([0.75], np.float32))),
        helper.make_node("Mul", ["ca", "cb"], ["cc"]),
        helper.make_node("Mul", ["m", "cc"], ["m2"], name="scale"),
        helper.make_node("Softmax", ["m2"], ["s"], name="sm", axis=1),
        helper.make_node("Unsqueeze", ["s"], ["u"], axes=[0]),
        helper.make_node("Squeeze", ["u"], ["q"], axes=[0]),
        helper.make_node("Flatten", ["q"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "w"], ["y"], name="head"),
    ]
    graph = helper.make_graph(nodes, "ops11", [vi("x", [1, 2, 7, 7])], [vi("y", None)], [init("w", w)])
    m = F.max_pool2d(t64(x), 3, 2, ceil_mode=True) * 1.5
    s = torch.softmax(m.reshape(1, -1), dim=1)
    ref = s @ t64(w)
    save(out, "ops11", graph, x, ref.numpy(), opset=11)


def ops13(out):
    x = rnd(1, 3, 5, 5)
    w, b = rnd(4, 3, 3, 3, scale=0.4), rnd(4, scale=0.1)
    nodes = [
        helper.make_node("Constant", [], ["pads"], value=numpy_helper.from_array(
            np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64))),
        helper.make_node("Pad", ["x", "pads"], ["p"], name="pad", mode="reflect"),
        helper.make_node("Conv", ["p", "w", "b"], ["c"], name="conv"),
        helper.make_node("Clip", ["c", "lo", "hi"], ["r"], name="relu6"),
        helper.make_node("AveragePool", ["r"], ["a"], name="avg", kernel_shape=[2, 2], strides=[2, 2],
                         pads=[1, 1, 0, 0]),
        helper.make_node("GlobalAveragePool", ["a"], ["gap"], name="gap"),
        helper.make_node("Shape", ["gap"], ["shp"]),
        helper.make_node("Gather", ["shp", "zero"], ["n0"], axis=0),
        helper.make_node("Unsqueeze", ["n0", "ax0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["newshape"], axis=0),
        helper.make_node("Reshape", ["gap", "newshape"], ["flat"], name="flatten"),
        helper.make_node("LeakyRelu", ["flat"], ["l"], alpha=0.2),
        helper.make_node("HardSwish", ["l"], ["hs"]),
        helper.make_node("Softmax", ["hs"], ["y"], name="softmax"),
    ]
    graph = helper.make_graph(nodes, "ops13", [vi("x", [1, 3, 5, 5])], [vi("y", None)],
                              [init("w", w), init("b", b), init("lo", np.array(0.0, np.float32)),
                               init("hi", np.array(0.5, np.float32)), init("zero", np.array(0, np.int64)),
                               init("ax0", np.array([0], np.int64)), init("minus1", np.array([-1], np.int64))])
    p = F.pad(t64(x), (2, 1, 1, 2), mode="reflect")
    r = torch.clamp(F.conv2d(p, t64(w), t64(b)), 0.0, 0.5)
    a = F.avg_pool2d(F.pad(r, (1, 0, 1, 0)), 2, 2)
    # count_include_pad=0: divide by the number of real elements in each window
    ones = F.avg_pool2d(F.pad(torch.ones_like(r), (1, 0, 1, 0)), 2, 2)
    a = a / ones
    g = a.mean(dim=(2, 3)).reshape(1, -1)
    hs = F.hardswish(F.leaky_relu(g, 0.2))
    ref = torch.softmax(hs, dim=-1)
    save(out, "ops13", graph, x, ref.numpy(), opset=14)


class TinyCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.relu6(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


def torch_cnn(out):
    torch.manual_seed(0)
    model = TinyCNN()
    with torch.no_grad():
        for bn in (model.bn1, model.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    model.eval()
    x = torch.from_numpy(rnd(1, 3, 8, 8))
    path = os.path.join(out, "torch_cnn.onnx")
    torch.onnx.export(model, x, path, opset_version=13, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "N"}, "output": {0: "N"}})
    with torch.no_grad():
        ref = model(x.double() if False else x).numpy()
    np.save(os.path.join(out, "torch_cnn.input.npy"), x.numpy())
    np.save(os.path.join(out, "torch_cnn.ref.npy"), ref)
    calib = np.stack([rnd(1, 3, 8, 8) for _ in range(4)])
    np.save(os.path.join(out, "torch_cnn.calib.npy"), calib)


def broken(out):
    x = rnd(1, 4)
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="ok_relu"),
             helper.make_node("Erf", ["r"], ["y"], name="my_unsupported_node")]
    graph = helper.make_graph(nodes, "unsupported", [vi("x", [1, 4])], [vi("y", [1, 4])])
    save(out, "unsupported", graph, x, x)  # Erf: supported since issue 12, kept for older checkouts
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="ok_relu"),
             helper.make_node("Cos", ["r"], ["y"], name="my_unsupported_node")]
    graph = helper.make_graph(nodes, "unsupported", [vi("x", [1, 4])], [vi("y", [1, 4])])
    save(out, "unsupported_cos", graph, x, x)
    # opset 9 was below the supported range before issue 12; 6 still is
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "old", [vi("x", [1, 4])], [vi("y", [1, 4])])
    save(out, "opset9", graph, x, np.maximum(x, 0), opset=9)
    save(out, "opset6", graph, x, np.maximum(x, 0), opset=6)
    with open(os.path.join(out, "malformed.onnx"), "wb") as f:
        f.write(b"\x0a\xff\xff\xff\xff\x0f this is not a protobuf")
    with open(os.path.join(out, "conv_bn.onnx"), "rb") as f:
        data = f.read()
    with open(os.path.join(out, "truncated.onnx"), "wb") as f:
        f.write(data[: len(data) * 2 // 3])


def branches(out):
    """Linear layers sharing one input (owner/fuse.c): kernels that embed in a
    5x5 (1x1, 3x3, 1x3, asymmetric pads), one that does not (dilation 2),
    a 1x1 beside a 3x3 at stride 2 (ResNet's downsample), two Gemms."""
    r = np.random.default_rng(77)

    def w(*shape):
        return (r.standard_normal(shape) * 0.3).astype(np.float32)

    x = w(1, 4, 9, 10) / 0.3
    # name: out channels, kernel (h, w), pads (t, l, b, r), stride, dilation
    convs = [("a", 2, (1, 1), (0, 0, 0, 0), 1, 1), ("b", 3, (3, 3), (1, 1, 1, 1), 1, 1),
             ("b2", 2, (3, 3), (1, 1, 1, 1), 1, 1), ("c", 4, (5, 5), (2, 2, 2, 2), 1, 1),
             ("d", 3, (3, 3), (2, 2, 2, 2), 1, 2), ("h", 2, (3, 3), (0, 0, 2, 2), 1, 1),
             ("k", 2, (1, 3), (0, 1, 0, 1), 1, 1), ("f", 3, (3, 3), (1, 1, 1, 1), 2, 1),
             ("g", 2, (1, 1), (0, 0, 0, 0), 2, 1)]
    nodes, inits, outs = [], [], {}
    for name, oc, k, pads, st, dil in convs:
        wt, bs = w(oc, 4, *k), w(oc)
        inits += [init("w_" + name, wt), init("b_" + name, bs)]
        nodes.append(helper.make_node("Conv", ["x", "w_" + name, "b_" + name], ["y_" + name], name="conv_" + name,
                                      kernel_shape=list(k), pads=[pads[0], pads[1], pads[2], pads[3]],
                                      strides=[st, st], dilations=[dil, dil]))
        xp = F.pad(t64(x), (pads[1], pads[3], pads[0], pads[2]))
        outs[name] = F.conv2d(xp, t64(wt), t64(bs), stride=st, dilation=dil)
    full, half = ["a", "b", "b2", "c", "d", "h", "k"], ["f", "g"]
    nodes += [helper.make_node("Concat", ["y_" + n for n in full], ["cat1"], axis=1),
              helper.make_node("Concat", ["y_" + n for n in half], ["cat2"], axis=1),
              helper.make_node("Flatten", ["cat1"], ["flat1"], axis=1),
              helper.make_node("Flatten", ["cat2"], ["flat2"], axis=1),
              helper.make_node("Concat", ["flat1", "flat2"], ["z0"], axis=1),
              helper.make_node("Relu", ["z0"], ["z"])]
    z = F.relu(torch.cat([torch.flatten(torch.cat([outs[n] for n in full], 1), 1),
                          torch.flatten(torch.cat([outs[n] for n in half], 1), 1)], 1))
    fcs = []
    for name, n in (("fc1", 6), ("fc2", 5)):
        wt, bs = w(n, z.shape[1]) * 0.1, w(n)
        inits += [init("w_" + name, wt), init("b_" + name, bs)]
        nodes.append(helper.make_node("Gemm", ["z", "w_" + name, "b_" + name], ["y_" + name], name=name, transB=1))
        fcs.append(z @ t64(wt).T + t64(bs))
    nodes.append(helper.make_node("Concat", ["y_fc1", "y_fc2"], ["y"], axis=1))
    ref = torch.cat(fcs, 1)
    graph = helper.make_graph(nodes, "branches", [vi("x", [1, 4, 9, 10])], [vi("y", list(ref.shape))], inits)
    save(out, "branches", graph, x, ref.numpy())
    np.save(os.path.join(out, "branches.calib.npy"), np.stack([w(1, 4, 9, 10) / 0.3 for _ in range(4)]))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for fn in (conv_bn, dw_nofold, same_lower, gemm, gemm_ta, matmul, matmul_left, ops11, ops13, torch_cnn, broken,
               branches):
        fn(out)
    with open(os.path.join(out, "stamp"), "w") as f:
        f.write("ok\n")


if __name__ == "__main__":
    main()
