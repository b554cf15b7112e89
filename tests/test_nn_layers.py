"""bmx.nn against independent oracles: MXNet's float layers on +-1 data, numpy."""
import inspect

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon
from mxnet.gluon import nn

import bmx
from bmx.nn import (BinaryConvolution, QActivation, QConv2D, QDense, activated_conv,
                    binary_layer_config, set_binary_layer_config)

HYBRID = pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybrid"])


def _sign(x):
    return np.where(x < 0, -1.0, 1.0).astype(np.float32)


def _run(block, x, hybridize, out_grad=None):
    """Forward (and backward with out_grad) -> (y, x.grad)."""
    if hybridize:
        block.hybridize()
    x = mx.nd.array(x)
    x.attach_grad()
    with autograd.record():
        y = block(x)
    if out_grad is None:
        out_grad = np.ones(y.shape, dtype=np.float32)
    y.backward(mx.nd.array(out_grad))
    return y.asnumpy(), x.grad.asnumpy()


# ---------------------------------------------------------------- QActivation

@HYBRID
@pytest.mark.parametrize("method", ["det_sign", "approx_sign"])
def test_sign_of_zero_is_plus_one(hybridize, method):
    act = QActivation(method=method)
    y, _ = _run(act, np.array([-1.0, -0.0, 0.0, 1e-7, -1e-7], dtype=np.float32), hybridize)
    np.testing.assert_array_equal(y, [-1, 1, 1, 1, -1])


@HYBRID
@pytest.mark.parametrize("t", [0.5, 1.0, 1.3, 2.0])
def test_det_sign_gradient_mask_is_exact(hybridize, t):
    t32 = np.float32(t)
    eps = np.float32(1e-3)
    x = np.array([-2.5, -t32 - eps, -t32, -t32 + eps, -0.1, 0.0, 0.1, t32 - eps, t32,
                  t32 + eps, 2.5], dtype=np.float32)
    g = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    y, gx = _run(QActivation(gradient_cancel_threshold=t), x, hybridize, out_grad=g)
    np.testing.assert_array_equal(y, _sign(x))
    np.testing.assert_array_equal(gx, g * (np.abs(x) <= t32))


@HYBRID
@pytest.mark.parametrize("t", [0.5, 1.3])
def test_approx_sign_gradient(hybridize, t):
    x = np.linspace(-1.6, 1.6, 33).astype(np.float32)
    y, gx = _run(QActivation(method="approx_sign", gradient_cancel_threshold=t), x, hybridize)
    expected = (2 - 2 * np.abs(x)) * (np.abs(x) <= 1) * (np.abs(x) <= np.float32(t))
    np.testing.assert_array_equal(y, _sign(x))
    # 2 - 2|x| in float32 on both sides, maybe contracted differently: <= 1 ulp of 2
    # (2.4e-7, measured 6e-8); 1e-6 is 4 ulps
    np.testing.assert_allclose(gx, expected, rtol=0, atol=1e-6)


@HYBRID
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_round_quantizer_has_2k_levels(hybridize, bits):
    x = np.linspace(-0.5, 1.5, 4001).astype(np.float32)
    y, gx = _run(QActivation(bits=bits), x, hybridize)
    levels = np.unique(y)
    n = 2 ** bits - 1
    assert len(levels) == 2 ** bits
    # round(x * n) / n in float32 vs the float64 grid: <= 1 ulp of 1 (6e-8 below 1,
    # measured 2.8e-8)
    np.testing.assert_allclose(levels, np.arange(n + 1) / n, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(gx, ((x >= 0) & (x <= 1)).astype(np.float32))


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_dorefa_weights_have_2k_levels(bits):
    conv = QConv2D(4, 3, in_channels=8, bits=bits)
    conv.initialize(mx.init.Normal(1.0))
    w = conv.weight.data()
    wq = bmx.nn.get_weight_quantizer("dorefa")(mx.nd, w, bits=bits).asnumpy()
    levels = np.unique(wq)
    assert len(levels) == 2 ** bits
    # 2 * round(...) / n - 1 in float32: <= 1 ulp of 1 (1.2e-7, measured 5.6e-8) off the
    # float64 grid; 1e-6 is 8 ulps, a level off by one step is >= 0.14 away
    np.testing.assert_allclose(levels, np.linspace(-1, 1, 2 ** bits), rtol=0, atol=1e-6)


# ---------------------------------------------------------------- QConv2D

def _reference_binary_conv(x, w, stride, pad, dilation, groups, out_grad):
    """Float nn.Conv2D on sign(x) padded with -1 and sign(w); (h + K)/2; gradients."""
    cout, cin_g, kh, kw = w.shape
    xs = np.pad(_sign(x), ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-1.0)
    ref = nn.Conv2D(cout, (kh, kw), strides=stride, dilation=dilation, groups=groups,
                    use_bias=False, in_channels=x.shape[1])
    ref.initialize()
    ref.weight.set_data(mx.nd.array(_sign(w)))
    xs_nd = mx.nd.array(xs)
    xs_nd.attach_grad()
    with autograd.record():
        h = ref(xs_nd)
        out = (h + cin_g * kh * kw) / 2
    out.backward(mx.nd.array(out_grad))
    gx = xs_nd.grad.asnumpy()[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]]
    return out.asnumpy(), gx, ref.weight.grad().asnumpy()


CONV_CASES = [
    # (cin, cout, hw, k, stride, pad, dilation, groups)
    (1, 4, 7, 3, 1, 1, 1, 1),
    (3, 8, 9, 3, 2, 1, 1, 1),
    (63, 5, 6, 3, 1, 1, 2, 1),
    (65, 7, 8, 3, 2, 2, 2, 1),
    (64, 6, 7, 3, 1, 1, 1, 2),
    (6, 4, 5, 1, 1, 0, 1, 2),
    (3, 3, 8, (3, 5), 1, 1, 1, 1),
]


@HYBRID
@pytest.mark.parametrize("case", CONV_CASES, ids=[str(c) for c in CONV_CASES])
def test_qconv2d_equals_float_conv_on_signs(hybridize, case):
    cin, cout, hw, k, stride, pad, dil, groups = case
    rng = np.random.default_rng(cin * 1000 + cout)
    x = rng.standard_normal((2, cin, hw, hw)).astype(np.float32)
    x[0, 0, 0, :2] = 0.0
    kernel = k if isinstance(k, tuple) else (k, k)
    if kernel != (k, k):
        pad_arg = (pad, pad)
    else:
        pad_arg = pad
    block = BinaryConvolution(cout, kernel_size=kernel, stride=stride, padding=pad_arg,
                              dilation=dil, groups=groups, in_channels=cin,
                              gradient_cancel_threshold=1.3)
    block.initialize()
    w = rng.standard_normal(block.qconv.weight.shape).astype(np.float32)
    block.qconv.weight.set_data(mx.nd.array(w))
    probe = block(mx.nd.array(x))
    g = rng.standard_normal(probe.shape).astype(np.float32)
    y, gx = _run(block, x, hybridize, out_grad=g)
    ref_y, ref_gsign, ref_gw = _reference_binary_conv(x, w, stride, pad, dil, groups, g)
    np.testing.assert_array_equal(y, ref_y)  # exact integers
    assert np.all(y == np.round(y)) and y.min() >= 0
    assert y.max() <= (cin // groups) * kernel[0] * kernel[1]
    # STE: input gradient = gradient w.r.t. sign(x), masked at |x| > 1.3. The same
    # Convolution backward runs on the same +-1 data on both sides, and the mask multiplies
    # by 0 or 1: the same bits (measured: identical).
    np.testing.assert_array_equal(gx, ref_gsign * (np.abs(x) <= np.float32(1.3)))
    # weights: identity STE, the same backward again
    np.testing.assert_array_equal(block.qconv.weight.grad().asnumpy(), ref_gw)


@HYBRID
def test_qconv2d_deferred_in_channels_and_no_offset(hybridize):
    rng = np.random.default_rng(5)
    x = _sign(rng.standard_normal((1, 65, 5, 5)))
    conv = QConv2D(3, 3, padding=1, no_offset=True)
    conv.initialize()
    if hybridize:
        conv.hybridize()
    y = conv(mx.nd.array(x)).asnumpy()
    ref, _, _ = _reference_binary_conv(x, conv.weight.data().asnumpy(), 1, 1, 1, 1,
                                       np.ones(y.shape, np.float32))
    np.testing.assert_array_equal(y, 2 * ref - 65 * 9)


def test_qconv2d_weight_scaling():
    rng = np.random.default_rng(6)
    x = _sign(rng.standard_normal((1, 4, 5, 5)))
    conv = QConv2D(3, 3, padding=1, in_channels=4, scaling="weight")
    conv.initialize()
    w = conv.weight.data().asnumpy()
    y = conv(mx.nd.array(x)).asnumpy()
    ref, _, _ = _reference_binary_conv(x, w, 1, 1, 1, 1, np.ones(y.shape, np.float32))
    alpha = np.abs(w).mean(axis=(1, 2, 3)).reshape(1, -1, 1, 1)
    # an integer times alpha: alpha's float32 mean over 36 weights and the product may
    # round differently, ~2 ulps (measured: identical); 4 eps32 = 8 ulps
    np.testing.assert_allclose(y, (2 * ref - 36) * alpha, rtol=4 * np.finfo(np.float32).eps)


def test_xnor_scaling_uses_input_magnitude():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    block = activated_conv(3, kernel_size=3, padding=1, in_channels=4, approximation="xnor")
    block.initialize()
    w = block.qconv.weight.data().asnumpy()
    y = block(mx.nd.array(x)).asnumpy()
    ref, _, _ = _reference_binary_conv(x, w, 1, 1, 1, 1, np.ones(y.shape, np.float32))
    alpha = np.abs(w).mean(axis=(1, 2, 3)).reshape(1, -1, 1, 1)
    a = np.pad(np.abs(x).mean(axis=1), ((0, 0), (1, 1), (1, 1)))
    kmat = np.zeros((1, 6, 6), np.float32)
    for i in range(6):
        for j in range(6):
            kmat[0, i, j] = a[0, i:i + 3, j:j + 3].mean()
    # three float32 factors and a 9-term mean in another order: a few ulps (measured
    # 2.1e-7 relative); 1e-6 is 8 ulps
    np.testing.assert_allclose(y, (2 * ref - 36) * alpha * kmat[:, None], rtol=1e-6, atol=0)


def test_qconv2d_signature_mirrors_conv2d():
    parent = inspect.signature(nn.Conv2D.__init__).parameters
    ours = inspect.signature(QConv2D.__init__).parameters
    parent_names = [n for n in parent if n != "kwargs"]
    assert list(ours)[:len(parent_names)] == parent_names
    for n in parent_names:
        if n == "use_bias":  # binary convolutions have no bias
            assert ours[n].default is False
        else:
            assert ours[n].default == parent[n].default, n
    for extra in ("bits", "pad_value", "no_offset", "scaling"):
        assert extra in ours
    assert "kwargs" in ours


def test_qdense_signature_mirrors_dense():
    parent = inspect.signature(nn.Dense.__init__).parameters
    ours = inspect.signature(QDense.__init__).parameters
    parent_names = [n for n in parent if n != "kwargs"]
    assert list(ours)[:len(parent_names)] == parent_names
    assert "bits" in ours and "no_offset" in ours


# ---------------------------------------------------------------- QDense

@HYBRID
@pytest.mark.parametrize("in_units", [1, 63, 64, 65, 129])
def test_qdense_equals_float_dense_on_signs(hybridize, in_units):
    rng = np.random.default_rng(in_units)
    x = rng.standard_normal((3, in_units)).astype(np.float32)
    net = nn.HybridSequential()
    net.add(QActivation(), QDense(7, in_units=in_units))
    net.initialize()
    w = rng.standard_normal((7, in_units)).astype(np.float32)
    net[1].weight.set_data(mx.nd.array(w))
    g = rng.standard_normal((3, 7)).astype(np.float32)
    y, gx = _run(net, x, hybridize, out_grad=g)
    ref = (_sign(x) @ _sign(w).T + in_units) / 2
    np.testing.assert_array_equal(y, ref)
    # Gradients: float32 sums of <= 7 (input) and 3 (weight) terms g/2 * +-1 in another
    # order than numpy's: <= 1 ulp of the largest (measured 0.2 ulp); 2 ulps allowed
    want_gx = (g / 2) @ _sign(w) * (np.abs(x) <= np.float32(1.3))
    want_gw = (g / 2).T @ _sign(x)
    ulp2 = 2 * np.finfo(np.float32).eps
    np.testing.assert_allclose(gx, want_gx, rtol=0, atol=ulp2 * np.abs(want_gx).max())
    np.testing.assert_allclose(net[1].weight.grad().asnumpy(), want_gw, rtol=0,
                               atol=ulp2 * np.abs(want_gw).max())


# ---------------------------------------------------------------- export, config, errors

def test_export_and_symbolblock_roundtrip(tmp_path):
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 3, padding=1, in_channels=3), nn.BatchNorm(),
            BinaryConvolution(16, kernel_size=3, padding=1, stride=2, in_channels=8),
            nn.BatchNorm(), QActivation(), QConv2D(8, 3, padding=1, dilation=1),
            nn.Activation("relu"), nn.GlobalAvgPool2D(), QActivation(), QDense(5))
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    net.hybridize()
    x = mx.nd.random.normal(shape=(2, 3, 10, 10))
    y = net(x)
    prefix = str(tmp_path / "bnn")
    net.export(prefix, epoch=0)
    imported = gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"], prefix + "-0000.params")
    np.testing.assert_array_equal(imported(x).asnumpy(), y.asnumpy())


def test_config_context_manager_restores():
    before = binary_layer_config.as_dict()
    with set_binary_layer_config(bits_a=2, grad_cancel=0.7, approximation="weight"):
        assert binary_layer_config.bits_a == 2
        assert binary_layer_config.activation == "round"
        act = QActivation()
        assert act.bits == 2 and act.method == "round"
        assert QActivation(bits=1).threshold == pytest.approx(0.7)
    assert binary_layer_config.as_dict() == before
    with pytest.raises(RuntimeError):
        with set_binary_layer_config(grad_cancel=2.0):
            raise RuntimeError("boom")
    assert binary_layer_config.as_dict() == before
    assert QActivation().threshold == pytest.approx(1.3)


@pytest.mark.parametrize("make", [
    lambda: QActivation(method="nope"),
    lambda: QActivation(bits=0),
    lambda: QActivation(gradient_cancel_threshold=-1.0),
    lambda: QActivation(bits=2, method="det_sign"),
    lambda: QConv2D(4, 3, bits=0),
    lambda: QConv2D(4, 3, scaling="abc"),
    lambda: QConv2D(4, 3, use_bias=True),
    lambda: QConv2D(4, 3, weight_quantization="nope"),
    lambda: QDense(4, bits=-2),
    lambda: set_binary_layer_config(activation="nope").__enter__(),
    lambda: set_binary_layer_config(grad_cancel=-0.1).__enter__(),
    lambda: set_binary_layer_config(bits=0).__enter__(),
    lambda: set_binary_layer_config(approximation="binet").__enter__(),
])
def test_bad_arguments_raise_value_error(make):
    before = binary_layer_config.as_dict()
    with pytest.raises(ValueError, match=r"\S"):
        make()
    assert binary_layer_config.as_dict() == before


def test_binary_weights_and_bn_get_no_weight_decay():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, in_channels=3), nn.BatchNorm(in_channels=4),
            BinaryConvolution(4, in_channels=4), nn.Dense(3, in_units=4))
    changed = bmx.nn.set_binary_wd_mult(net)
    params = net.collect_params()
    binary_weight = net[2].qconv.weight.name
    for name, p in params.items():
        if "batchnorm" in name or name == binary_weight:
            assert p.wd_mult == 0.0, name
            assert name in changed
        else:
            assert p.wd_mult == 1.0, name
