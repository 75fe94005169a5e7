"""The twinedge test architectures, defined from scratch in PyTorch.

Every constructor takes the input resolution `size` and a channel `width`
multiplier; the reduced variants used by the fast default tests keep the full
layer structure (same layers, same kernels/strides, same block repeats) and
only shrink the input and the channel counts.

    build(name, full=False) -> (model in eval mode, per-sample input shape)

Weights are random (see common.init_model), deterministic per name.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def _ch(c, width, multiple=4):
    """Scaled channel count, a multiple of `multiple` (keeps group convs and
    concats valid)."""
    v = int(c * width / multiple + 0.5) * multiple
    return max(multiple, v)


class _LRNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, size, alpha, beta, k):
        return F.local_response_norm(x, size, alpha, beta, k)

    @staticmethod
    def symbolic(g, x, size, alpha, beta, k):
        return g.op("LRN", x, size_i=size, alpha_f=alpha, beta_f=beta, bias_f=k)


class LRN(nn.LocalResponseNorm):
    """nn.LocalResponseNorm that exports as one ONNX LRN node (torch 1.13
    decomposes it into Pow/AvgPool/...).  Odd sizes only, where the torch and
    ONNX channel windows agree."""

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        if size % 2 != 1:
            raise ValueError("LRN size must be odd")
        super().__init__(size, alpha, beta, k)

    def forward(self, x):
        return _LRNFunction.apply(x, self.size, self.alpha, self.beta, self.k)


def _flat_features(features, c, size):
    with torch.no_grad():
        return features(torch.zeros(1, c, size, size)).numel()


# --------------------------------------------------------------------------
# LeNet-5 (ReLU / max-pool variant).  size 32 is the classic input; size 28
# (MNIST / Fashion-MNIST) pads the first convolution by 2.

class LeNet5(nn.Module):
    def __init__(self, size=32, width=1.0, num_classes=10, in_ch=1):
        super().__init__()
        pad = (32 - size) // 2
        if size + 2 * pad != 32:
            raise ValueError("LeNet5 expects size 28 or 32")
        c1, c2 = _ch(6, width, 2), _ch(16, width, 2)
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, c1, 5, padding=pad), nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(c1, c2, 5), nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(c2 * 5 * 5, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


# --------------------------------------------------------------------------
# AlexNet as in Krizhevsky et al. 2012: LRN after conv1/conv2, grouped
# conv2/4/5 (the two-GPU split).  227 is the classic input; 67 is the
# smallest that still leaves a 1x1 map after the last pooling.

class AlexNet(nn.Module):
    def __init__(self, size=227, width=1.0, num_classes=1000, fc=4096):
        super().__init__()
        c = [_ch(x, width, 8) for x in (96, 256, 384, 384, 256)]
        self.features = nn.Sequential(
            nn.Conv2d(3, c[0], 11, stride=4), nn.ReLU(inplace=True),
            LRN(5, alpha=1e-4, beta=0.75, k=2.0),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(c[0], c[1], 5, padding=2, groups=2), nn.ReLU(inplace=True),
            LRN(5, alpha=1e-4, beta=0.75, k=2.0),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(c[1], c[2], 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c[2], c[3], 3, padding=1, groups=2), nn.ReLU(inplace=True),
            nn.Conv2d(c[3], c[4], 3, padding=1, groups=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
        )
        nf = _flat_features(self.features, 3, size)
        fc = _ch(fc, width, 8)
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(nf, fc), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(fc, fc), nn.ReLU(inplace=True),
            nn.Linear(fc, num_classes),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


# --------------------------------------------------------------------------
# VGG-16 (configuration D), no BN.  Smallest input: 32.

_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
          512, 512, 512, "M", 512, 512, 512, "M"]


class VGG16(nn.Module):
    def __init__(self, size=224, width=1.0, num_classes=1000, fc=4096):
        super().__init__()
        layers, cin = [], 3
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                cout = _ch(v, width)
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
                cin = cout
        self.features = nn.Sequential(*layers)
        nf = _flat_features(self.features, 3, size)
        fc = _ch(fc, width, 8)
        self.classifier = nn.Sequential(
            nn.Linear(nf, fc), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(fc, fc), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(fc, num_classes),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


# --------------------------------------------------------------------------
# ResNet-18 / ResNet-50 (He et al. 2016, v1.5 stride placement).  Smallest
# input: 32.

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + idt)


class ResNet(nn.Module):
    def __init__(self, block, repeats, size=224, width=1.0, num_classes=1000):
        super().__init__()
        c0 = _ch(64, width)
        self.stem = nn.Sequential(
            nn.Conv2d(3, c0, 7, 2, 3, bias=False), nn.BatchNorm2d(c0),
            nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        stages, cin = [], c0
        for i, n in enumerate(repeats):
            planes = _ch(64 * 2 ** i, width)
            for j in range(n):
                stages.append(block(cin, planes, 2 if (j == 0 and i > 0) else 1))
                cin = planes * block.expansion
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.pool(self.stages(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


def ResNet18(size=224, width=1.0, num_classes=1000):
    return ResNet(BasicBlock, [2, 2, 2, 2], size, width, num_classes)


def ResNet50(size=224, width=1.0, num_classes=1000):
    return ResNet(Bottleneck, [3, 4, 6, 3], size, width, num_classes)


# --------------------------------------------------------------------------
# MobileNetV2 (Sandler et al. 2018): depthwise convs, ReLU6 (-> Clip),
# linear bottlenecks with residuals.  Smallest input: 32.

def _divisible(v, d=8):
    n = max(d, int(v + d / 2) // d * d)
    return n + d if n < 0.9 * v else n


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        layers = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                       nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
                   nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    _CFG = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
            (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, size=224, width=1.0, num_classes=1000):
        super().__init__()
        cin = _divisible(32 * width)
        last = _divisible(1280 * width) if width < 1.0 else 1280
        layers = [nn.Conv2d(3, cin, 3, 2, 1, bias=False), nn.BatchNorm2d(cin),
                  nn.ReLU6(inplace=True)]
        for t, c, n, s in self._CFG:
            cout = _divisible(c * width)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        layers += [nn.Conv2d(cin, last, 1, bias=False), nn.BatchNorm2d(last),
                   nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


# --------------------------------------------------------------------------
# SqueezeNet 1.1 (Iandola et al.): Fire modules (Concat), ceil-mode pooling,
# a conv classifier and global average pooling.  Smallest input: ~17.

class Fire(nn.Module):
    def __init__(self, cin, squeeze, e1, e3):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU(inplace=True))
        self.e1 = nn.Sequential(nn.Conv2d(squeeze, e1, 1), nn.ReLU(inplace=True))
        self.e3 = nn.Sequential(nn.Conv2d(squeeze, e3, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, x):
        s = self.squeeze(x)
        return torch.cat([self.e1(s), self.e3(s)], 1)


class SqueezeNet11(nn.Module):
    def __init__(self, size=224, width=1.0, num_classes=1000):
        super().__init__()
        c = lambda v: _ch(v, width)  # noqa: E731
        fires = [(16, 64), (16, 64), "M", (32, 128), (32, 128), "M",
                 (48, 192), (48, 192), (64, 256), (64, 256)]
        layers = [nn.Conv2d(3, c(64), 3, 2), nn.ReLU(inplace=True),
                  nn.MaxPool2d(3, 2, ceil_mode=True)]
        cin = c(64)
        for f in fires:
            if f == "M":
                layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
            else:
                layers.append(Fire(cin, c(f[0]), c(f[1]), c(f[1])))
                cin = 2 * c(f[1])
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Conv2d(cin, num_classes, 1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


# --------------------------------------------------------------------------
# Inception-ResNet-v1 as used by FaceNet (Szegedy et al. 2016; Schroff et al.
# 2015): stem, 5x Inception-ResNet-A, reduction A, 10x B, reduction B, 5x C
# (+ one without ReLU), 512-d embedding, BN, L2 normalisation (exported as
# LpNormalization).  160 is the usual input; 75 is the smallest valid one.

class BasicConv(nn.Sequential):
    def __init__(self, cin, cout, k, stride=1, pad=0):
        super().__init__(nn.Conv2d(cin, cout, k, stride, pad, bias=False),
                         nn.BatchNorm2d(cout, eps=1e-3), nn.ReLU(inplace=True))


class _ScaledResidual(nn.Module):
    """relu(x + scale * up(concat(branches(x))))"""

    def __init__(self, cin, branches, scale, relu=True):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        cat = sum(b[-1][0].out_channels for b in branches)
        self.up = nn.Conv2d(cat, cin, 1)
        self.scale = scale
        self.relu = nn.ReLU(inplace=True) if relu else None

    def forward(self, x):
        y = self.up(torch.cat([b(x) for b in self.branches], 1))
        y = x + y * self.scale
        return self.relu(y) if self.relu is not None else y


def _block35(cin, c, scale):
    return _ScaledResidual(cin, [
        nn.Sequential(BasicConv(cin, c(32), 1)),
        nn.Sequential(BasicConv(cin, c(32), 1), BasicConv(c(32), c(32), 3, 1, 1)),
        nn.Sequential(BasicConv(cin, c(32), 1), BasicConv(c(32), c(32), 3, 1, 1),
                      BasicConv(c(32), c(32), 3, 1, 1)),
    ], scale)


def _block17(cin, c, scale):
    return _ScaledResidual(cin, [
        nn.Sequential(BasicConv(cin, c(128), 1)),
        nn.Sequential(BasicConv(cin, c(128), 1),
                      BasicConv(c(128), c(128), (1, 7), 1, (0, 3)),
                      BasicConv(c(128), c(128), (7, 1), 1, (3, 0))),
    ], scale)


def _block8(cin, c, scale, relu=True):
    return _ScaledResidual(cin, [
        nn.Sequential(BasicConv(cin, c(192), 1)),
        nn.Sequential(BasicConv(cin, c(192), 1),
                      BasicConv(c(192), c(192), (1, 3), 1, (0, 1)),
                      BasicConv(c(192), c(192), (3, 1), 1, (1, 0))),
    ], scale, relu)


class _Reduction(nn.Module):
    """concat(conv branches..., maxpool 3x3/2)"""

    def __init__(self, branches):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.pool = nn.MaxPool2d(3, 2)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches] + [self.pool(x)], 1)


class _L2Normalize(torch.autograd.Function):
    """x / ||x||_2 along axis 1; exported as ONNX LpNormalization."""

    @staticmethod
    def forward(ctx, x):
        return x / x.norm(p=2, dim=1, keepdim=True)

    @staticmethod
    def symbolic(g, x):
        return g.op("LpNormalization", x, axis_i=1, p_i=2)


class InceptionResNetV1(nn.Module):
    def __init__(self, size=160, width=1.0, embedding=512, l2="lp"):
        super().__init__()
        c = lambda v: _ch(v, width)  # noqa: E731
        self.stem = nn.Sequential(
            BasicConv(3, c(32), 3, 2), BasicConv(c(32), c(32), 3),
            BasicConv(c(32), c(64), 3, 1, 1), nn.MaxPool2d(3, 2),
            BasicConv(c(64), c(80), 1), BasicConv(c(80), c(192), 3),
            BasicConv(c(192), c(256), 3, 2))
        c35 = c(256)
        self.repeat1 = nn.Sequential(*[_block35(c35, c, 0.17) for _ in range(5)])
        self.mixed6a = _Reduction([
            nn.Sequential(BasicConv(c35, c(384), 3, 2)),
            nn.Sequential(BasicConv(c35, c(192), 1), BasicConv(c(192), c(192), 3, 1, 1),
                          BasicConv(c(192), c(256), 3, 2)),
        ])
        c17 = c(384) + c(256) + c35
        self.repeat2 = nn.Sequential(*[_block17(c17, c, 0.10) for _ in range(10)])
        self.mixed7a = _Reduction([
            nn.Sequential(BasicConv(c17, c(256), 1), BasicConv(c(256), c(384), 3, 2)),
            nn.Sequential(BasicConv(c17, c(256), 1), BasicConv(c(256), c(256), 3, 2)),
            nn.Sequential(BasicConv(c17, c(256), 1), BasicConv(c(256), c(256), 3, 1, 1),
                          BasicConv(c(256), c(256), 3, 2)),
        ])
        c8 = c(384) + c(256) + c(256) + c17
        self.repeat3 = nn.Sequential(*[_block8(c8, c, 0.20) for _ in range(5)])
        self.block8 = _block8(c8, c, 1.0, relu=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.6)
        self.last_linear = nn.Linear(c8, embedding, bias=False)
        self.last_bn = nn.BatchNorm1d(embedding, eps=1e-3)
        self.l2 = l2

    def forward(self, x):
        x = self.stem(x)
        x = self.mixed6a(self.repeat1(x))
        x = self.mixed7a(self.repeat2(x))
        x = self.block8(self.repeat3(x))
        x = self.dropout(torch.flatten(self.pool(x), 1))
        x = self.last_bn(self.last_linear(x))
        if self.l2 == "lp":
            return _L2Normalize.apply(x)
        return x / x.norm(p=2, dim=1, keepdim=True)  # ReduceL2 + Div


# --------------------------------------------------------------------------
# Registry: name -> (constructor, input channels, reduced kwargs, full kwargs)

ARCHS = {
    "lenet5": (LeNet5, 1, dict(size=28), dict(size=32)),
    "alexnet": (AlexNet, 3, dict(size=67, width=0.25), dict(size=227)),
    "vgg16": (VGG16, 3, dict(size=32, width=0.25), dict(size=224)),
    "resnet18": (ResNet18, 3, dict(size=32, width=0.25), dict(size=224)),
    "resnet50": (ResNet50, 3, dict(size=32, width=0.25), dict(size=224)),
    "mobilenetv2": (MobileNetV2, 3, dict(size=32, width=0.5), dict(size=224)),
    "squeezenet11": (SqueezeNet11, 3, dict(size=32, width=0.5), dict(size=224)),
    "facenet": (InceptionResNetV1, 3, dict(size=75, width=0.25), dict(size=160)),
}


def build(name, full=False):
    """Return (model, per-sample input shape (C, H, W)); weights are NOT yet
    initialised (see common.init_model)."""
    ctor, cin, red, ful = ARCHS[name]
    kw = dict(ful if full else red)
    model = ctor(**kw)
    return model, (cin, kw["size"], kw["size"])
