"""Tests of bmx.model_zoo (Bethge et al., "Back to Simplicity" / "BinaryDenseNet" /
"MeliusNet"): registry, shapes, hybridize/export, the custom blocks against numpy, the
float twin, the dilated model, weight decay, initialization and local pretrained files."""
import json
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

import bmx
from bmx.model_zoo import (ChannelShuffle, DenseLayer, ImprovementBlock, ResNetEBlock,
                           binarydensenet_flex, binarydensenet_spec, default_initializer,
                           get_model, get_model_list, meliusnet_flex, meliusnet_spec,
                           resnete_flex, transition_features)

NAMES = ["resnete18", "resnete34", "binarydensenet28", "binarydensenet37",
         "binarydensenet37_dilated", "binarydensenet45", "meliusnet22", "meliusnet29",
         "meliusnet42", "meliusnet59", "meliusnet_a", "meliusnet_b", "meliusnet_c"]

# ops allowed in an exported zoo graph besides those of bmx.nn's binary convolution
ZOO_OPS = {"null", "Convolution", "BatchNorm", "Activation", "Pooling", "FullyConnected",
           "Flatten", "Concat", "elemwise_add", "_plus", "slice_axis", "Reshape", "transpose"}


def _init(net, seed=0):
    mx.random.seed(seed)
    net.initialize(default_initializer())
    return net


def _x(shape, seed=1):
    return mx.nd.array(np.random.RandomState(seed).randn(*shape).astype(np.float32))


def _leaves(block):
    yield block
    for c in block._children.values():
        yield from _leaves(c)


def _binary_conv_ops():
    blk = bmx.nn.BinaryConvolution(4, 3, padding=1)
    blk.initialize()
    blk.hybridize()
    blk(mx.nd.ones((1, 2, 5, 5)))
    return {n["op"] for n in json.loads(blk._cached_graph[1].tojson())["nodes"]}


def test_model_list():
    assert get_model_list() == NAMES
    assert bmx.get_model is get_model


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as e:
        get_model("nope")
    for n in NAMES:
        assert n in str(e.value)


@pytest.mark.filterwarnings("ignore:Cannot decide type")  # SymbolBlock.imports, harmless
@pytest.mark.parametrize("name", NAMES)
def test_thumbnail_forward_hybridize_export(name, tmp_path):
    """At 32x32 with the thumbnail stem: imperative == hybridized == exported graph, and
    the graph uses only the operators the converter reads."""
    net = _init(get_model(name, stem="thumbnail", classes=10))
    x = _x((2, 3, 32, 32))
    y = net(x).asnumpy()
    assert y.shape == (2, 10) and np.isfinite(y).all()
    net.hybridize()
    # The same operators run imperatively and as one graph (measured: identical logits);
    # a backend that fused conv + BN would round each output a few ulps differently:
    # 4 eps32 of max|y| allowed. (A sign flipped by that would show far above it.)
    tol = 4 * np.finfo(np.float32).eps * np.abs(y).max()
    np.testing.assert_allclose(net(x).asnumpy(), y, rtol=0, atol=tol)
    prefix = str(tmp_path / name)
    net.export(prefix)
    ops = {n["op"] for n in json.load(open(prefix + "-symbol.json"))["nodes"]}
    assert ops <= ZOO_OPS | _binary_conv_ops(), ops - ZOO_OPS
    sb = nn.SymbolBlock.imports(prefix + "-symbol.json", ["data"], prefix + "-0000.params")
    np.testing.assert_allclose(sb(x).asnumpy(), y, rtol=0, atol=tol)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_forward_224_hybridized(name):
    net = _init(get_model(name))
    net.hybridize(static_alloc=True)
    with mx.autograd.pause():
        y = net(_x((1, 3, 224, 224))).asnumpy()
    assert y.shape == (1, 1000) and np.isfinite(y).all()


@pytest.mark.parametrize("name,stem", [("resnete18", "grouped"), ("binarydensenet28", "grouped"),
                                       ("meliusnet22", "imagenet")])
def test_other_stems_224(name, stem):
    net = _init(get_model(name, stem=stem, classes=7))
    assert net(_x((1, 3, 224, 224))).shape == (1, 7)


def test_bad_stem():
    with pytest.raises(ValueError, match="stem"):
        get_model("resnete18", stem="cifar")


def test_default_stems():
    def first_conv(net):
        return next(b for b in _leaves(net) if isinstance(b, nn.Conv2D))
    assert first_conv(get_model("resnete18"))._kwargs["kernel"] == (7, 7)
    assert first_conv(get_model("binarydensenet28"))._kwargs["kernel"] == (7, 7)
    c = first_conv(get_model("meliusnet22"))
    assert c._kwargs["kernel"] == (3, 3) and c._kwargs["stride"] == (2, 2)


def test_float_twin_same_graph_without_sign():
    b = get_model("meliusnet_a", stem="thumbnail", classes=10)
    f = get_model("meliusnet_a", stem="thumbnail", classes=10, binary=False)
    assert not any(isinstance(m, (bmx.nn.QActivation, bmx.nn.QConv2D)) for m in _leaves(f))
    assert sum(isinstance(m, bmx.nn.QConv2D) for m in _leaves(b)) == \
        sum(isinstance(m, nn.Conv2D) for m in _leaves(f)) - \
        sum(isinstance(m, nn.Conv2D) and not isinstance(m, bmx.nn.QConv2D) for m in _leaves(b))
    _init(b), _init(f)
    x = _x((1, 3, 32, 32))
    assert b(x).shape == f(x).shape == (1, 10)
    shapes = lambda n: [p.shape for p in n.collect_params().values()]  # noqa: E731
    assert shapes(b) == shapes(f)
    # float convs of the twin pad with zeros (nn.Conv2D padding), binary ones with -1
    fc = [m for m in _leaves(f) if isinstance(m, nn.Conv2D) and m._kwargs["kernel"] == (3, 3)]
    assert all(m._kwargs["pad"] == (1, 1) for m in fc[1:])


def test_dilated_keeps_28x28_and_shares_weights(tmp_path):
    net = _init(get_model("binarydensenet37_dilated"))
    shapes = {}
    x = _x((1, 3, 224, 224))
    for i, blk in enumerate(net.features):
        x = blk(x)
        shapes[blk.prefix or str(i)] = x.shape
    stage = {k: v for k, v in shapes.items() if "stage" in k}
    assert [v[2:] for k, v in sorted(stage.items())] == [(56, 56), (28, 28), (28, 28), (28, 28)]
    assert net.output(x).shape == (1, 1000)
    dil = [m._kwargs["dilate"] for m in _leaves(net) if isinstance(m, bmx.nn.QConv2D)]
    assert dil == [(1, 1)] * 14 + [(2, 2)] * 12 + [(4, 4)] * 6
    # same weights as binarydensenet37
    f = str(tmp_path / "bdn37.params")
    plain = _init(get_model("binarydensenet37"), seed=3)
    plain(_x((1, 3, 64, 64)))
    plain.save_parameters(f)
    loaded = get_model("binarydensenet37_dilated", pretrained=f)
    for a, b in zip(plain.collect_params().values(), loaded.collect_params().values()):
        np.testing.assert_array_equal(a.data().asnumpy(), b.data().asnumpy())


def test_transition_channels_follow_the_formula():
    expected_end = {28: (448, 544, 576, 576), 37: (448, 640, 960, 640),
                    45: (448, 928, 1184, 800)}
    for n, (blocks, red, chans) in binarydensenet_spec.items():
        c, ends, outs = 64, [], []
        for i, b in enumerate(blocks):
            c += 64 * b
            ends.append(c)
            if i < 3:
                c = transition_features(c, red[i])
                outs.append(c)
        assert tuple(outs) == chans
        assert tuple(ends[:3]) + (ends[3],) == expected_end[n]
        net = get_model(f"binarydensenet{n}")
        assert net.stage_channels[:3] == list(expected_end[n][:3])
        assert net.num_features == expected_end[n][3]


@pytest.mark.parametrize("variant,final", [("22", 512), ("29", 640), ("42", 1056),
                                           ("59", 1312), ("a", 672), ("b", 704), ("c", 672)])
def test_meliusnet_final_channels(variant, final):
    name = "meliusnet" + (variant if variant.isdigit() else "_" + variant)
    net = get_model(name)
    assert net.num_features == final
    convs = [m for m in _leaves(net) if isinstance(m, nn.Conv2D)
             and not isinstance(m, bmx.nn.QConv2D) and m._kwargs["kernel"] == (1, 1)]
    groups = meliusnet_spec[variant][2]
    assert [m._channels for m in convs] == list(meliusnet_spec[variant][1])
    assert all(m._kwargs["num_group"] == groups for m in convs)
    assert sum(isinstance(m, ChannelShuffle) for m in _leaves(net)) == (3 if groups > 1 else 0)


def test_improvement_block_math():
    x = _x((2, 96, 5, 5))
    blk = ImprovementBlock(32, 96, prefix="imp_")
    blk.initialize(default_initializer())
    r = blk.body(x).asnumpy()
    y = blk(x).asnumpy()
    xn = x.asnumpy()
    np.testing.assert_array_equal(y[:, :64], xn[:, :64])
    np.testing.assert_array_equal(y[:, 64:], xn[:, 64:] + r)  # one float32 add, both sides
    # body is BN -> sign -> binary conv: integer match counts in [0, 96*9]
    assert np.all(r == np.round(r)) and r.min() >= 0 and r.max() <= 96 * 9
    full = ImprovementBlock(96, 96)
    full.initialize()
    np.testing.assert_array_equal(full(x).asnumpy(), xn + full.body(x).asnumpy())
    with pytest.raises(ValueError):
        ImprovementBlock(128, 96)


def test_dense_layer_and_channel_shuffle():
    x = _x((1, 16, 6, 6))
    d = DenseLayer(8, 16)
    d.initialize()
    y = d(x).asnumpy()
    assert y.shape == (1, 24, 6, 6)
    np.testing.assert_array_equal(y[:, :16], x.asnumpy())
    np.testing.assert_array_equal(y[:, 16:], d.body(x).asnumpy())
    cs = ChannelShuffle(4)
    xs = x.asnumpy()
    ref = xs.reshape(1, 4, 4, 6, 6).transpose(0, 2, 1, 3, 4).reshape(1, 16, 6, 6)
    np.testing.assert_array_equal(cs(x).asnumpy(), ref)
    # channel j*g+i of the output is channel i*(C/g)+j of the input
    np.testing.assert_array_equal(cs(x).asnumpy()[0, 1 * 4 + 2], xs[0, 2 * 4 + 1])


@pytest.mark.parametrize("downsample,pool", [("fp", True), ("fp", False), ("binary", True),
                                             ("binary", False)])
def test_resnete_block_downsampling(downsample, pool):
    blk = ResNetEBlock(16, 2, 8, downsample=downsample, pool=pool)
    blk.initialize(default_initializer())
    x = _x((1, 8, 7, 7))
    y = blk(x)
    assert y.shape == (1, 16, 4, 4)  # odd sizes: the pooled shortcut matches the conv
    # the block adds the same two branches: the same float32 bits
    np.testing.assert_array_equal(y.asnumpy(), (blk.body(x) + blk.shortcut(x)).asnumpy())
    sc = list(blk.shortcut._children.values())
    assert isinstance(sc[0], nn.AvgPool2D) == pool
    conv = [m for m in _leaves(blk.shortcut) if isinstance(m, nn.Conv2D)][0]
    assert isinstance(conv, bmx.nn.QConv2D) == (downsample == "binary")
    ident = ResNetEBlock(8, 1, 8)
    ident.initialize()
    assert ident.shortcut is None
    np.testing.assert_array_equal(ident(x).asnumpy(), (ident.body(x) + x).asnumpy())


def test_resnete_flex_variants_forward():
    for ds, pool in [("binary", True), ("fp", False)]:
        net = _init(resnete_flex([1, 1, 1, 1], stem="thumbnail", classes=3, downsample=ds,
                                 downsample_pool=pool))
        assert net(_x((1, 3, 32, 32))).shape == (1, 3)


def test_flex_constructors():
    net = binarydensenet_flex([2, 2, 2, 2], growth_rate=32, init_features=32, reduction=2,
                              stem="thumbnail", classes=5)
    # 32 + 2*32 = 96 -> round((96 // 2) / 32) * 32 = 64 (round half to even), 64 + 64 = 128
    assert net.stage_channels == [96, 128, 128, 128]
    assert transition_features(96, 2) == 64 and transition_features(128, 2) == 64
    net = _init(binarydensenet_flex([2, 2], reduction=[1.5], downsample="binary",
                                    bottleneck=True, stem="thumbnail", classes=5))
    assert net(_x((1, 3, 16, 16))).shape == (1, 5)
    kernels = [m._kwargs["kernel"] for m in _leaves(net) if isinstance(m, bmx.nn.QConv2D)]
    assert kernels == [(1, 1), (3, 3)] * 2 + [(1, 1)] + [(1, 1), (3, 3)] * 2
    net = _init(meliusnet_flex([1, 2], transition_channels=[96], transition_groups=2,
                               stem="thumbnail", classes=4, dilation=(1, 2)))
    assert net(_x((1, 3, 16, 16))).shape == (1, 4)
    assert sum(isinstance(m, nn.MaxPool2D) for m in _leaves(net)) == 0  # dilated stage
    with pytest.raises(ValueError, match="exactly one"):
        binarydensenet_flex([1, 1], reduction=2, transition_channels=[64])
    with pytest.raises(ValueError):
        binarydensenet_flex([1, 1], reduction=2, downsample="avg")


def test_quantizer_kwargs_reach_the_layers():
    net = get_model("binarydensenet28", clip_threshold=1.0, bits=2, bits_a=2)
    acts = [m for m in _leaves(net) if isinstance(m, bmx.nn.QActivation)]
    convs = [m for m in _leaves(net) if isinstance(m, bmx.nn.QConv2D)]
    assert len(acts) == len(convs) == 23
    assert all(a.bits == 2 and a.threshold == 1.0 for a in acts)
    assert all(c.bits == 2 for c in convs)
    net = get_model("resnete18")
    assert all(a.threshold == 1.3 for a in _leaves(net) if isinstance(a, bmx.nn.QActivation))


def test_weight_decay_multipliers():
    net = get_model("meliusnet_a")
    params = net.collect_params()
    for blk in _leaves(net):
        for p in blk._reg_params.values():
            if isinstance(blk, nn.BatchNorm) or isinstance(blk, bmx.nn.QConv2D):
                assert p.wd_mult == 0.0, p.name
            else:
                assert p.wd_mult == 1.0, p.name
    assert len(list(params.keys())) > 100


def test_he_normal_initialization():
    net = _init(get_model("resnete18", classes=10))
    net(_x((1, 3, 64, 64)))
    conv = next(m for m in _leaves(net) if isinstance(m, nn.Conv2D))
    w = conv.weight.data().asnumpy()
    assert w.shape == (64, 3, 7, 7)
    assert abs(w.std() / np.sqrt(2.0 / (3 * 49)) - 1) < 0.1
    bn = next(m for m in _leaves(net) if isinstance(m, nn.BatchNorm))
    assert np.all(bn.gamma.data().asnumpy() == 1) and np.all(bn.beta.data().asnumpy() == 0)


def test_pretrained(tmp_path):
    with pytest.raises(bmx.model_zoo.PretrainedNotFoundError, match="downloads nothing"):
        get_model("resnete18", pretrained=True, root=str(tmp_path))
    with pytest.raises(ValueError):  # the error is also a ValueError
        get_model("resnete18", pretrained=True, root=str(tmp_path))
    with pytest.raises(FileNotFoundError):
        get_model("resnete18", pretrained=str(tmp_path / "missing.params"))
    src = _init(get_model("meliusnet_c", stem="thumbnail", classes=10), seed=7)
    x = _x((1, 3, 32, 32))
    y = src(x).asnumpy()
    f = str(tmp_path / "meliusnet_c.params")
    src.save_parameters(f)
    dst = get_model("meliusnet_c", stem="thumbnail", classes=10, pretrained=f)
    np.testing.assert_array_equal(dst(x).asnumpy(), y)
    dst = get_model("meliusnet_c", stem="thumbnail", classes=10, pretrained=True,
                    root=str(tmp_path))
    np.testing.assert_array_equal(dst(x).asnumpy(), y)
    assert os.path.isfile(f)
