"""Small models that together cover every ONNX op and attribute variant the
twinedge importer supports, at several opsets (attribute-style inputs at
opset 10, input-style at 11/13/17).

OPS maps a name to a function returning a dict:
    kind   "torch" (model: nn.Module, exported at `opset`) or
           "onnx"  (model: onnx.ModelProto built by hand; its reference output
                    comes from onnx_ref, the float64 NumPy interpreter)
    shape  per-sample input shape (no batch dimension)
    error  True for the deliberately unsupported model
Input shapes are mostly non-square so H/W mix-ups show.
"""
import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

import onnx_ref
from zoo import LRN, _L2Normalize

# ---------------------------------------------------------------- PyTorch


class ConvVariants(nn.Module):
    """Grouped, depthwise (with multiplier 1 and 2), dilated, strided,
    non-square kernels, with and without bias; BN after a conv."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2)
        self.dw = nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=16, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.dw2 = nn.Conv2d(16, 32, 3, stride=(2, 1), padding=1, groups=16)
        self.c3 = nn.Conv2d(32, 12, (3, 5), stride=(1, 2), padding=(1, 2), bias=False)
        self.c4 = nn.Conv2d(12, 6, (1, 3), dilation=(1, 2), stride=(2, 1), padding=(0, 1))
        self.c5 = nn.Conv2d(6, 4, 2, stride=1, padding=0)

    def forward(self, x):
        x = F.relu(self.c1(x))
        x = F.relu(self.c2(x))
        x = F.relu(self.bn(self.dw(x)))
        x = F.relu(self.dw2(x))
        x = F.relu(self.c3(x))
        x = F.relu(self.c4(x))
        return self.c5(x)


class ConvAsymPad(nn.Module):
    """Asymmetric padding as a separate Pad node before a pad-free Conv."""

    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad2d((1, 2, 0, 3))  # left, right, top, bottom
        self.c1 = nn.Conv2d(3, 8, 3)
        self.c2 = nn.Conv2d(8, 8, 3, stride=2, bias=False)

    def forward(self, x):
        x = F.relu(self.c1(self.pad(x)))
        x = F.pad(x, (0, 1, 2, 1), mode="constant", value=0.5)
        return self.c2(x)


class PadModes(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3, padding=1)
        self.out = nn.Conv2d(12, 6, 3)

    def forward(self, x):
        x = self.c(x)
        a = F.pad(x, (2, 1, 1, 0), mode="reflect")
        b = F.pad(x, (2, 1, 1, 0), mode="replicate")
        c = F.pad(x, (2, 1, 1, 0), mode="constant", value=-0.25)
        return self.out(torch.cat([a, b, c], 1))


class Activations(nn.Module):
    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(3 if i == 0 else 6, 6, 3, padding=1)
                                    for i in range(7)])
        self.acts = [nn.LeakyReLU(0.1), nn.PReLU(6), nn.Sigmoid(), nn.Tanh(),
                     nn.Hardsigmoid(), lambda t: torch.clamp(t, -0.5, 1.25), nn.ReLU6()]
        self.prelu = self.acts[1]  # register the PReLU parameters

    def forward(self, x):
        for conv, act in zip(self.convs, self.acts):
            x = act(conv(x))
        return x


class HardSwishNet(nn.Module):
    """HardSwish exists from opset 14 (earlier it decomposes into Mul)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.c3 = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = F.hardswish(self.c1(x))
        x = F.hardsigmoid(self.c2(x))
        return F.hardswish(self.c3(x))


class Pools(nn.Module):
    """Max/average pooling with pads, ceil_mode (including a case where ceil
    adds a partial window) and both count_include_pad settings."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.mp = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)
        self.c2 = nn.Conv2d(8, 8, 1)
        self.ap_ex = nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False)
        self.c3 = nn.Conv2d(8, 8, 1)
        self.ap_in = nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=True)
        self.ap_plain = nn.AvgPool2d((2, 3), 1)
        self.mp2 = nn.MaxPool2d((2, 3), (2, 1), padding=(1, 0))
        self.mp3 = nn.MaxPool2d(2, 2, ceil_mode=True)

    def forward(self, x):
        x = self.mp(F.relu(self.c1(x)))
        x = self.ap_ex(self.c2(x))
        x = self.ap_in(self.c3(x))
        y = self.mp2(self.ap_plain(x))
        return self.mp3(y)


class LRNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 10, 3, padding=1)
        self.n1 = LRN(3, alpha=0.5, beta=0.75, k=1.0)
        self.c2 = nn.Conv2d(10, 10, 3, padding=1)
        self.n2 = LRN(5, alpha=1.0, beta=0.5, k=2.0)

    def forward(self, x):
        return self.n2(self.c2(self.n1(F.relu(self.c1(x)))))


class Arith(nn.Module):
    """Add of two activations, Concat, Mul/Sub/Div with scalar and per-channel
    constants (on either side for Sub)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding=1)
        self.b = nn.Conv2d(3, 6, 1)
        self.c = nn.Conv2d(12, 5, 3, padding=1)
        self.register_buffer("chan", torch.linspace(0.5, 1.5, 5).view(1, 5, 1, 1))

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        s = F.relu(a + b)
        y = self.c(torch.cat([s, a], 1))
        y = y * 0.5 - 0.25
        y = 1.5 - y
        y = y / 3.0
        return y * self.chan + y


class FCSoftmax(nn.Module):
    """Flatten -> Gemm -> BN (2-D) -> ReLU -> Gemm -> Softmax."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3, stride=2)
        self.fc1 = nn.Linear(4 * 4 * 5, 32)
        self.bn = nn.BatchNorm1d(32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.flatten(F.relu(self.c(x)), 1)
        x = F.relu(self.bn(self.fc1(x)))
        return F.softmax(self.fc2(x), dim=1)


class MatMul3D(nn.Module):
    """nn.Linear on a 3-D input exports as MatMul (constant right operand)
    plus Add; then Transpose, Flatten and Gemm."""

    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(12, 16)
        self.l2 = nn.Linear(16, 8, bias=False)
        self.fc = nn.Linear(8 * 6, 5)

    def forward(self, x):
        x = F.relu(self.l1(x))
        x = self.l2(x).transpose(1, 2)
        return self.fc(torch.flatten(x, 1))


class Norms(nn.Module):
    """ReduceL2 + Div, LpNormalization, Sqrt, channel Softmax (4-D)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 16)

    def forward(self, x):
        x = self.c1(x)
        x = x / x.norm(p=2, dim=1, keepdim=True)         # ReduceL2 (axes=[1]) + Div
        x = torch.sqrt(F.relu(self.c2(x)) + 0.5)          # Sqrt
        x = F.softmax(x * 2.0, dim=1)                     # Softmax along channels
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return _L2Normalize.apply(self.fc(x))             # LpNormalization


class Shapes(nn.Module):
    """Reshape (with -1), Transpose, Unsqueeze, Squeeze, Flatten."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3, padding=1, stride=2)
        self.fc = nn.Linear(4, 6)
        self.out = nn.Linear(6 * 40, 7)

    def forward(self, x):
        x = F.relu(self.c(x))                   # 1x4x5x8
        x = x.reshape(-1, 4, 40).transpose(1, 2)  # 1x40x4
        x = self.fc(x.unsqueeze(1).squeeze(1))   # 1x1x40x4 -> 1x40x4 -> MatMul 1x40x6
        return self.out(torch.flatten(x, 1))


class Legacy(nn.Module):
    """Exported at opset 10: Clip min/max, Pad pads/value, Unsqueeze/Squeeze
    axes as attributes; Softmax with the old 2-D coercion semantics."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3)
        self.c2 = nn.Conv2d(6, 6, 3, groups=3)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        x = F.hardtanh(self.c1(F.pad(x, (1, 1, 2, 0), value=0.3)), -0.5, 2.0)
        x = F.relu6(self.c2(F.pad(x, (1, 1, 1, 1), mode="reflect")))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        x = self.fc(x.unsqueeze(2).squeeze(2))
        return F.softmax(x, dim=1)


# ---------------------------------------------------------------- onnx.helper

def _w(rng, *shape, fan_in=None):
    fan_in = fan_in or int(np.prod(shape[1:]))
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def _graph_model(nodes, inits, in_shape, out_shape, opset, name):
    g = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1] + list(in_shape))],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)],
        initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                          producer_name="twinedge-tests")
    m.ir_version = 7
    if out_shape is None:  # fill in the output shape by running the graph
        y = onnx_ref.run(m, np.zeros([1] + list(in_shape), np.float32))
        dims = m.graph.output[0].type.tensor_type.shape.dim
        for d in y.shape:
            dims.add().dim_value = d
    if opset >= 11 and all(n.op_type != "Cos" for n in nodes):
        m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    return m


def conv_pads_asym():
    """Conv with pads=[0,1,2,0] (top, left, bottom, right), stride (2,1);
    grouped dilated Conv without bias, pads=[1,0,0,2]."""
    rng = np.random.default_rng(11)
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv_asym",
                         kernel_shape=[3, 3], pads=[0, 1, 2, 0], strides=[2, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["output"], name="conv_grp_dil",
                         kernel_shape=[2, 3], pads=[1, 0, 0, 2], dilations=[2, 1], group=2),
    ]
    inits = [_init("w1", _w(rng, 8, 3, 3, 3)),
             _init("b1", (rng.standard_normal(8) * 0.1).astype(np.float32)),
             _init("w2", _w(rng, 6, 4, 2, 3))]
    return _graph_model(nodes, inits, (3, 9, 10), None, 13, "conv_pads_asym")


def gemm_variants():
    """Gemm alpha/beta with transB=1 and transB=0, with a 2-D and a 1-D C and
    without C; BatchNormalization on a 2-D tensor; Dropout (ratio input),
    Identity, HardSigmoid with default attributes, Clip with only a min."""
    rng = np.random.default_rng(12)
    k, n1, n2, n3 = 20, 16, 12, 8
    nodes = [
        helper.make_node("Gemm", ["input", "w1", "b1"], ["g1"], name="gemm_tb1",
                         alpha=0.5, beta=2.0, transA=0, transB=1),
        helper.make_node("Relu", ["g1"], ["r1"], name="relu1"),
        helper.make_node("Gemm", ["r1", "w2", "b2"], ["g2"], name="gemm_tb0",
                         alpha=1.5, beta=0.5, transB=0),
        helper.make_node("BatchNormalization", ["g2", "bn_s", "bn_b", "bn_m", "bn_v"],
                         ["bn"], name="bn2d", epsilon=1e-3),
        helper.make_node("Dropout", ["bn", "ratio"], ["d"], name="dropout"),
        helper.make_node("Identity", ["d"], ["i"], name="identity"),
        helper.make_node("Clip", ["i", "cmin", ""], ["cl"], name="clip_min_only"),
        helper.make_node("Gemm", ["cl", "w3"], ["g3"], name="gemm_noc", transB=1),
        helper.make_node("HardSigmoid", ["g3"], ["output"], name="hardsigmoid_default"),
    ]
    inits = [
        _init("w1", _w(rng, n1, k)),
        _init("b1", (rng.standard_normal(n1) * 0.1).astype(np.float32)),
        _init("w2", _w(rng, n2, n1, fan_in=n1).reshape(n1, n2)),
        _init("b2", (rng.standard_normal((1, n2)) * 0.1).astype(np.float32)),
        _init("bn_s", rng.uniform(0.5, 1.5, n2).astype(np.float32)),
        _init("bn_b", (rng.standard_normal(n2) * 0.2).astype(np.float32)),
        _init("bn_m", (rng.standard_normal(n2) * 0.3).astype(np.float32)),
        _init("bn_v", rng.uniform(0.5, 2.0, n2).astype(np.float32)),
        _init("ratio", np.array(0.3, dtype=np.float32)),
        _init("cmin", np.array(-0.2, dtype=np.float32)),
        _init("w3", _w(rng, n3, n2)),
    ]
    return _graph_model(nodes, inits, (k,), None, 13, "gemm_variants")


def legacy_attrs():
    """Opset 10, hand-built: Dropout ratio attribute, Clip min/max attributes,
    edge Pad with pads attribute, Squeeze/Unsqueeze axes attributes,
    AveragePool count_include_pad=1, Constant node feeding a Mul."""
    rng = np.random.default_rng(13)
    nodes = [
        helper.make_node("Pad", ["input"], ["p"], name="pad_edge", mode="edge",
                         pads=[0, 0, 1, 2, 0, 0, 2, 1]),
        helper.make_node("Conv", ["p", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3]),
        helper.make_node("Clip", ["c1"], ["cl"], name="clip_attr", min=-0.3, max=1.2),
        helper.make_node("Dropout", ["cl"], ["d"], name="dropout_attr", ratio=0.25),
        helper.make_node("AveragePool", ["d"], ["ap0"], name="avgpool_incl",
                         kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                         count_include_pad=1),
        # 6x5 -> ceil: 3x3; the last column window overhangs the right pad
        helper.make_node("AveragePool", ["ap0"], ["ap1"], name="avgpool_incl_ceil",
                         kernel_shape=[2, 3], strides=[2, 2], pads=[0, 1, 1, 0],
                         count_include_pad=1, ceil_mode=1),
        helper.make_node("MaxPool", ["ap1"], ["ap"], name="maxpool_ceil",
                         kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        helper.make_node("Constant", [], ["k"], name="const_k",
                         value=numpy_helper.from_array(np.array(1.75, dtype=np.float32))),
        helper.make_node("Mul", ["ap", "k"], ["m"], name="mul_const"),
        helper.make_node("GlobalAveragePool", ["m"], ["gap"], name="gap"),
        helper.make_node("Squeeze", ["gap"], ["sq"], name="squeeze_attr", axes=[2, 3]),
        helper.make_node("Unsqueeze", ["sq"], ["us"], name="unsqueeze_attr", axes=[1]),
        helper.make_node("Flatten", ["us"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["g"], name="fc", transB=1),
        helper.make_node("Softmax", ["g"], ["output"], name="softmax_legacy", axis=1),
    ]
    inits = [_init("w1", _w(rng, 6, 3, 3, 3)),
             _init("b1", (rng.standard_normal(6) * 0.1).astype(np.float32)),
             _init("w2", _w(rng, 5, 6)),
             _init("b2", (rng.standard_normal(5) * 0.1).astype(np.float32))]
    return _graph_model(nodes, inits, (3, 11, 8), None, 10, "legacy_attrs")


def unsupported():
    """A Cos node the importer must reject with a message naming it."""
    rng = np.random.default_rng(14)
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c1"], name="conv1", kernel_shape=[3, 3]),
        helper.make_node("Cos", ["c1"], ["cos"], name="my_unsupported_node"),
        helper.make_node("Relu", ["cos"], ["output"], name="relu"),
    ]
    inits = [_init("w1", _w(rng, 4, 3, 3, 3))]
    return _graph_model(nodes, inits, (3, 8, 8), [1, 4, 6, 6], 13, "unsupported")


# ---------------------------------------------------------------- registry

def _t(cls, shape, opset):
    return lambda: dict(kind="torch", model=cls(), shape=shape, opset=opset)


def _o(fn, shape, error=False):
    return lambda: dict(kind="onnx", model=fn(), shape=shape, error=error)


OPS = {
    "op_conv_variants": _t(ConvVariants, (3, 15, 17), 13),
    "op_conv_asym_pad": _t(ConvAsymPad, (3, 10, 9), 11),
    "op_pad_modes": _t(PadModes, (3, 7, 9), 13),
    "op_activations": _t(Activations, (3, 6, 7), 13),
    "op_hardswish": _t(HardSwishNet, (3, 6, 5), 17),
    "op_pools": _t(Pools, (3, 29, 36), 13),
    "op_pools_o11": _t(Pools, (3, 29, 36), 11),
    "op_lrn": _t(LRNNet, (3, 6, 5), 13),
    "op_arith": _t(Arith, (3, 6, 7), 13),
    "op_fc_softmax": _t(FCSoftmax, (3, 9, 11), 13),
    "op_fc_softmax_o11": _t(FCSoftmax, (3, 9, 11), 11),
    "op_matmul3d": _t(MatMul3D, (6, 12), 13),
    "op_norms": _t(Norms, (3, 7, 6), 13),
    "op_norms_o17": _t(Norms, (3, 7, 6), 17),
    "op_norms_o11": _t(Norms, (3, 7, 6), 11),
    "op_shapes": _t(Shapes, (3, 9, 16), 13),
    "op_shapes_o11": _t(Shapes, (3, 9, 16), 11),
    "op_legacy_o10": _t(Legacy, (3, 8, 7), 10),
    "op_conv_pads_asym": _o(conv_pads_asym, (3, 9, 10)),
    "op_gemm_variants": _o(gemm_variants, (20,)),
    "op_legacy_attrs": _o(legacy_attrs, (3, 11, 8)),
    "op_unsupported": _o(unsupported, (3, 8, 8), error=True),
}
