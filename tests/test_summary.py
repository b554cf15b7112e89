"""Tests of bmx.summary: the papers' counting rule (Bethge et al., "Back to Simplicity",
2019; spec section 4) against hand-computed counts and the published sizes and OPs."""
import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

import bmx
from bmx.model_summary import ModelSummary, summary
from bmx.model_zoo import default_initializer, get_model

MIB = 2 ** 20

# (model, stem) -> (published size in MB as printed, published OPs); spec section 4
PUBLISHED = {
    ("resnete18", "imagenet"): ("4.00", 1.63e8), ("resnete18", "grouped"): ("3.98", 1.14e8),
    ("resnete34", "imagenet"): ("5.23", 1.92e8), ("resnete34", "grouped"): ("5.21", 1.43e8),
    ("binarydensenet28", "imagenet"): ("4.04", 2.58e8),
    ("binarydensenet28", "grouped"): ("4.03", 2.09e8),
    ("binarydensenet37", "imagenet"): ("5.13", 2.70e8),
    ("binarydensenet37", "grouped"): ("5.12", 2.20e8),
    ("binarydensenet45", "imagenet"): ("7.35", 3.44e8),
    ("meliusnet22", "imagenet"): ("3.89", 2.58e8), ("meliusnet22", "grouped"): ("3.88", 2.08e8),
    ("meliusnet29", "imagenet"): ("5.08", 2.64e8), ("meliusnet29", "grouped"): ("5.07", 2.14e8),
    ("meliusnet42", "grouped"): ("10.1", 3.25e8), ("meliusnet59", "grouped"): ("17.39", 5.32e8),
    ("meliusnet_a", "grouped"): ("4.05", 1.63e8), ("meliusnet_b", "grouped"): ("5.0", 1.96e8),
    ("meliusnet_c", "grouped"): ("4.46", 1.50e8),
}
FAST = {("resnete18", "imagenet"), ("binarydensenet28", "imagenet"), ("meliusnet22", "grouped")}


def _tol(printed):
    """Half a unit of the last printed digit, plus a hair: 0.006 / 0.06 MiB."""
    decimals = len(printed.split(".")[1])
    return 0.6 * 10 ** -decimals


def _params():
    return [pytest.param(k, v, marks=() if k in FAST else pytest.mark.slow,
                         id=f"{k[0]}-{k[1]}") for k, v in PUBLISHED.items()]


@pytest.mark.parametrize("key,published", _params())
def test_published_size_and_ops(key, published):
    name, stem = key
    size, ops = published
    s = summary(get_model(name, stem=stem))
    assert abs(s.model_size_mib - float(size)) <= _tol(size), (s.model_size_mib, size)
    assert abs(s.ops / ops - 1) <= 0.01, (s.ops, ops)


def test_binarydensenet28_bops():
    s = summary(get_model("binarydensenet28"))
    assert abs(s.bops / 3.59e9 - 1) <= 0.01, s.bops


def test_resnete18_exact_counts():
    """ResNetE-18 counted by hand from its architecture (spec section 3)."""
    s = summary(get_model("resnete18"))
    binary = 9 * (4 * 64 * 64 + 64 * 128 + 3 * 128 * 128 + 128 * 256 + 3 * 256 * 256
                  + 256 * 512 + 3 * 512 * 512)
    bn = 2 * (64 + 64 + 4 * 64 + 5 * 128 + 5 * 256 + 5 * 512)  # stem, after pool, blocks, sc
    fp = 7 * 7 * 3 * 64 + bn + 64 * 128 + 128 * 256 + 256 * 512 + 512 * 1000 + 1000
    assert s.binary_params == binary == 10985472
    assert s.fp_params == fp
    assert s.model_size_bytes == binary / 8 + 4 * fp == 4189856
    flops = 112 * 112 * 7 * 7 * 3 * 64 + 28 * 28 * 64 * 128 + 14 * 14 * 128 * 256 \
        + 7 * 7 * 256 * 512
    bops = 9 * (56 * 56 * 4 * 64 * 64 + 28 * 28 * (64 * 128 + 3 * 128 * 128)
                + 14 * 14 * (128 * 256 + 3 * 256 * 256) + 7 * 7 * (256 * 512 + 3 * 512 * 512))
    assert s.flops == flops and s.bops == bops
    assert s.ops == flops + bops / 64
    assert s.classifier_macs == 512 * 1000


class _Tiny(nn.HybridBlock):
    def __init__(self, **kw):
        super().__init__(**kw)
        with self.name_scope():
            self.conv = nn.Conv2D(8, 3, padding=1, use_bias=True)          # fp, with bias
            self.bn = nn.BatchNorm()
            self.bconv = bmx.nn.BinaryConvolution(16, 3, stride=2, padding=1)
            self.gconv = nn.Conv2D(16, 1, groups=4, use_bias=False)        # grouped fp
            self.fixed = nn.BatchNorm(scale=False)                        # gamma not trained
            self.pool = nn.GlobalAvgPool2D()
            self.hidden = nn.Dense(12)                                    # not the last Dense
            self.out = nn.Dense(5)

    def hybrid_forward(self, F, x):
        x = self.bn(self.conv(x))
        x = self.fixed(self.gconv(self.bconv(x)))
        return self.out(self.hidden(self.pool(x)))


def _tiny_expected():
    binary = 16 * 8 * 9
    fp = (8 * 3 * 9 + 8) + 16 + 16 * 4 + 16 + (12 * 16 + 12) + (5 * 12 + 5)
    flops = 10 * 10 * 8 * 27 + 5 * 5 * 16 * 4 + 16 * 12
    bops = 5 * 5 * 16 * 72
    return binary, fp, flops, bops


def test_tiny_net_by_hand():
    net = _Tiny()
    net.initialize(default_initializer())
    s = summary(net, (3, 3, 10, 10))  # batch 3: counts are per sample
    binary, fp, flops, bops = _tiny_expected()
    assert (s.binary_params, s.fp_params, s.flops, s.bops) == (binary, fp, flops, bops)
    assert s.model_size_mib == (binary / 8 + 4 * fp) / MIB
    assert s.ops == flops + bops / 64
    assert s.classifier_macs == 60
    by_kind = {}
    for r in s.rows:
        by_kind.setdefault(r.kind, []).append(r)
    assert [r.output_shape for r in by_kind["QConv2D"]] == [(3, 16, 5, 5)]
    assert by_kind["QConv2D"][0].weight_bits == 1 and by_kind["QConv2D"][0].binary
    assert by_kind["QActivation"][0].params == 0
    text = str(s)
    for word in ("Layer", "Output shape", "W bits", "Params", "MACs", "Model size", "OPs",
                 "(60)", f"{binary + fp:,}"):
        assert word in text


def test_uninitialized_and_hybridized_nets():
    net = _Tiny()
    s1 = summary(net, (1, 3, 10, 10))  # initializes what was never initialized
    binary, fp, flops, bops = _tiny_expected()
    assert (s1.binary_params, s1.fp_params, s1.flops, s1.bops) == (binary, fp, flops, bops)
    net.hybridize()
    x = mx.nd.ones((1, 3, 10, 10))
    y = net(x).asnumpy()
    s2 = summary(net, (2, 3, 10, 10))
    assert (s2.flops, s2.bops, s2.model_size_mib) == (s1.flops, s1.bops, s1.model_size_mib)
    assert net._active and net.bconv._active  # hybridization restored
    np.testing.assert_array_equal(net(x).asnumpy(), y)  # the same graph, the same bits
    assert isinstance(s2, ModelSummary) and s2.as_dict()["bops"] == bops


def test_float_twin_counts_everything_as_flops():
    b = summary(get_model("resnete18", stem="thumbnail", classes=10), (1, 3, 32, 32))
    f = summary(get_model("resnete18", stem="thumbnail", classes=10, binary=False),
                (1, 3, 32, 32))
    assert f.bops == 0 and f.binary_params == 0
    assert f.flops == b.flops + b.bops
    assert f.fp_params == b.fp_params + b.binary_params


def test_binary_downsampling_moves_macs_to_bops():
    fp = summary(bmx.model_zoo.binarydensenet_flex([2, 2], reduction=2, stem="thumbnail",
                                                   classes=10), (1, 3, 16, 16))
    bi = summary(bmx.model_zoo.binarydensenet_flex([2, 2], reduction=2, stem="thumbnail",
                                                   classes=10, downsample="binary"),
                 (1, 3, 16, 16))
    trans = 8 * 8 * 192 * 96  # 192 -> 96 channels on 8x8 after the pool
    assert fp.flops - bi.flops == trans and bi.bops - fp.bops == trans
    assert fp.fp_params - bi.fp_params == 192 * 96 == bi.binary_params - fp.binary_params


@pytest.mark.parametrize("bits_w,bits_a,kw", [
    (1, 1, {}), (1, 2, {"bits_a": 2}), (2, 2, {"bits": 2, "bits_a": 2}),
    (4, 3, {"bits": 4, "bits_a": 3}), (2, 1, {"bits": 2}), (1, 1, {"xnor": True})])
def test_kbit_bops_are_macs_times_bit_widths(bits_w, bits_a, kw):
    """BOPs of a quantized conv = MACs * bits_w * bits_a (bit-plane products), the
    activation bits read from the traced input (+-1 -> 1, 2^k levels of [0, 1] -> k); the
    weights count bits_w bits each in the size."""
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 3, padding=1), nn.BatchNorm())
    if kw.pop("xnor", False):
        net.add(bmx.nn.activated_conv(16, 3, padding=1, in_channels=8, approximation="xnor"))
    else:
        net.add(bmx.nn.BinaryConvolution(16, 3, padding=1, in_channels=8, **kw))
    net.add(nn.GlobalAvgPool2D(), nn.Dense(4))
    s = summary(net, (1, 3, 6, 6))
    (q,) = [r for r in s.rows if r.kind == "QConv2D"]
    macs = 16 * 6 * 6 * 8 * 9
    assert (q.macs, q.act_bits, q.weight_bits) == (macs, bits_a, bits_w)
    assert s.bops == macs * bits_w * bits_a
    assert q.size_bits == 16 * 8 * 9 * bits_w and q.binary_params == 16 * 8 * 9
    assert "bits_w x bits_a" in str(s)


def test_lazy_alias():
    assert bmx.summary is summary
