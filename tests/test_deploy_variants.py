"""What trains and what deploys: every bmx.nn variant a user can train, tried as a user
would (float stem, two quantized layers with BatchNorm, a classifier; a few Adam steps so
BatchNorm statistics and weights have moved; ``bmx.convert``; engine against Gluon).

The table in docs/model-format.md ("What trains and what deploys") lists the same rows.
Variants that deploy must give Gluon's logits: argmax equal on every image, and per image
within float rounding (ROUND_TOL) unless an inner sign reads a value within rounding of 0
(conftest.assert_logits_match). Variants the format cannot express yet must be refused
with a ConversionError naming the layer and the reason, never converted into something
else.
"""
import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

import bmx
from bmx.converter import ConversionError
from bmx.modelfile import read_model
from conftest import assert_logits_match

SHAPE = (16, 3, 10, 10)
# Engine vs Gluon, relative to max|logit|: float32 sums in another order, a few ulps of the
# largest logit (measured 1e-7 .. 6e-7 on these nets): 2e-6 is about 3x the largest. XNOR
# scaling multiplies by mean|x| computed in another order too (measured <= 7e-7).
ROUND_TOL = 2e-6
# An image whose inner sign flips on a value within rounding of 0 changes by one +-2 term
# of a dot product: measured <= 3e-3 of max|logit| on these small nets; 1e-2 bounds it.
FLIP_TOL = 1e-2


def _binary(kind):
    """Two quantized layers of one variant (each followed by BatchNorm)."""
    if kind == "baseline":
        return [bmx.nn.BinaryConvolution(16, 3, padding=1), bmx.nn.BinaryConvolution(16, 3, padding=1)]
    if kind == "weight":
        return [bmx.nn.activated_conv(16, 3, padding=1, approximation="weight") for _ in range(2)]
    if kind == "xnor":
        return [bmx.nn.activated_conv(16, 3, padding=1, stride=s, approximation="xnor") for s in (1, 2)]
    if kind in ("act2", "act4"):
        bits = int(kind[3:])
        return [bmx.nn.BinaryConvolution(16, 3, padding=1, bits_a=bits) for _ in range(2)]
    if kind == "dorefa2":
        return [bmx.nn.BinaryConvolution(16, 3, padding=1, bits=2) for _ in range(2)]
    if kind == "act2_dorefa2":  # stride 2 and a 5x5 window: other border patterns
        return [bmx.nn.BinaryConvolution(16, 3, padding=1, bits=2, bits_a=2),
                bmx.nn.BinaryConvolution(16, 5, padding=2, stride=2, bits=2, bits_a=2)]
    if kind == "act3_dorefa4_bias":  # a k-bit layer may have a bias (a 1-bit one may not)
        return [bmx.nn.BinaryConvolution(16, 3, padding=1, bits=4, bits_a=3, use_bias=True)
                for _ in range(2)]
    if kind == "act2_grouped":
        return [bmx.nn.BinaryConvolution(16, 3, padding=1, bits_a=2, groups=2) for _ in range(2)]
    raise AssertionError(kind)


def _net(kind):
    net = nn.HybridSequential()
    net.add(nn.Conv2D(16, 3, padding=1), nn.BatchNorm())
    if kind == "kbit_dense":
        net.add(bmx.nn.QActivation(bits=2), bmx.nn.QDense(10))
        return net
    if kind in ("dense_head", "binary_classifier"):
        net.add(bmx.nn.BinaryConvolution(16, 3, padding=1), nn.BatchNorm(), nn.MaxPool2D(2))
        net.add(bmx.nn.QActivation(), bmx.nn.QDense(32), nn.BatchNorm())
        if kind == "binary_classifier":
            net.add(bmx.nn.QActivation(), bmx.nn.QDense(10))
        else:
            net.add(nn.Dense(10))
        return net
    for layer in _binary(kind):
        net.add(layer, nn.BatchNorm())
    net.add(nn.GlobalAvgPool2D(), nn.Dense(10))
    return net


def _trained(kind, seed=0):
    mx.random.seed(seed)
    rng = np.random.RandomState(seed)
    net = _net(kind)
    net.initialize(mx.init.Xavier(magnitude=2))
    trainer = mx.gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 1e-2})
    loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    x = mx.nd.array(rng.randn(*SHAPE).astype(np.float32))
    y = mx.nd.array(rng.randint(0, 10, SHAPE[0]))
    for _ in range(4):
        with mx.autograd.record():
            out = loss(net(x), y)
        out.backward()
        trainer.step(SHAPE[0])
    net.hybridize()
    return net, rng.randn(*SHAPE).astype(np.float32)


DEPLOYS = {
    "baseline": ["Sign", "BinaryConv2D"],
    "weight": ["Sign", "BinaryConv2D"],
    "xnor": ["MeanAbsChannels", "Mul"],
    "dense_head": ["BinaryDense"],
    "binary_classifier": ["BinaryDense", "BinaryDense"],
    "act2": ["Quantize", "KbitConv2D", "Quantize", "KbitConv2D"],
    "act4": ["Quantize", "KbitConv2D", "Quantize", "KbitConv2D"],
    "dorefa2": ["Sign", "KbitConv2D", "Sign", "KbitConv2D"],
    "act2_dorefa2": ["Quantize", "KbitConv2D", "Quantize", "KbitConv2D"],
    "act3_dorefa4_bias": ["Quantize", "KbitConv2D", "Quantize", "KbitConv2D"],
}
REFUSED = {
    "kbit_dense": ("k-bit dense layers are not supported",),
    "act2_grouped": ("groups = 2", "groups 1 only"),
}


@pytest.mark.parametrize("kind", list(DEPLOYS))
def test_variant_deploys_and_matches_gluon(kind):
    net, x = _trained(kind)
    data = bmx.convert(net, (1,) + SHAPE[1:])
    types = [o["type"] for o in read_model(data)["ops"]]
    for t in DEPLOYS[kind]:
        assert types.count(t) >= DEPLOYS[kind].count(t), (kind, types)
    ref = net(mx.nd.array(x)).asnumpy()
    assert_logits_match(bmx.engine.Model(data).predict(x), ref, ROUND_TOL, FLIP_TOL, kind)


@pytest.mark.parametrize("kind", list(REFUSED))
def test_variant_trains_but_is_refused_with_reason(kind):
    net, x = _trained(kind)
    assert np.isfinite(net(mx.nd.array(x)).asnumpy()).all()  # it trains
    with pytest.raises(ConversionError) as e:
        bmx.convert(net, (1,) + SHAPE[1:])
    for words in REFUSED[kind]:
        assert words in str(e.value), str(e.value)


@pytest.mark.parametrize("kind", ["act2_dorefa2", "act3_dorefa4_bias"])
def test_kbit_variant_converts_from_an_exported_symbol(kind, tmp_path):
    """Without the block objects the bit widths are found from what the graph computes
    (the activation on a probe, the weight path on the real weights)."""
    net, x = _trained(kind)
    net(mx.nd.array(x))
    net.export(str(tmp_path / "m"))
    data = bmx.convert(symbol_file=str(tmp_path / "m-symbol.json"),
                       params_file=str(tmp_path / "m-0000.params"), input_shape=(1,) + SHAPE[1:])
    m = read_model(data)
    kconvs = [o["options"] for o in m["ops"] if o["type"] == "KbitConv2D"]
    planes = {"act2_dorefa2": (2, 2), "act3_dorefa4_bias": (3, 4)}[kind]
    assert [o["weightplanes"] for o in kconvs] == [planes[1]] * 2
    levels = [v["planes"] for v in m["values"] if v["kind"] == "Levels"]
    assert levels == [planes[0]] * 2
    ref = net(mx.nd.array(x)).asnumpy()
    assert_logits_match(bmx.engine.Model(data).predict(x), ref, ROUND_TOL, FLIP_TOL, kind)
