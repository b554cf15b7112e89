"""Every bmx.nn layer variant builds without ``in_channels``/``in_units`` (Gluon's deferred
shape inference), imperative and hybridized, and computes what its eager twin with the
channels given computes."""
import itertools

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

import bmx

C_IN, C_OUT = 6, 8


def _conv_variants():
    for bits, scaling, no_offset in itertools.product((1, 2, 4), (None, "weight", "xnor"),
                                                      (False, True)):
        if no_offset and (bits != 1 or scaling is not None):
            continue  # no_offset only changes the 1-bit offset form
        yield dict(bits=bits, scaling=scaling, no_offset=no_offset)


def _layers():
    """(name, constructor(**channel_kwargs)) for each variant; channel_kwargs is {} (deferred)
    or the in_channels/in_units of the eager twin."""
    for kw in _conv_variants():
        name = "QConv2D(" + ",".join(f"{k}={v}" for k, v in kw.items()) + ")"
        yield name, lambda ck, kw=kw: bmx.nn.QConv2D(C_OUT, 3, padding=1, **kw, **ck)
    for bits, bits_a in itertools.product((1, 2), (1, 2, 4)):
        yield (f"BinaryConvolution(bits={bits},bits_a={bits_a})",
               lambda ck, b=bits, a=bits_a: bmx.nn.BinaryConvolution(
                   C_OUT, 3, padding=1, bits=b, bits_a=a, **ck))
    for groups in (1, 2):
        yield (f"BinaryConvolution(groups={groups},stride=2,dilation=2)",
               lambda ck, g=groups: bmx.nn.BinaryConvolution(
                   C_OUT, 3, stride=2, padding=2, dilation=2, groups=g, **ck))
    for approx in (None, "weight", "xnor"):
        yield (f"activated_conv(approximation={approx})",
               lambda ck, a=approx: bmx.nn.activated_conv(C_OUT, 3, padding=1, approximation=a,
                                                          **ck))
    for bits, no_offset in ((1, False), (1, True), (2, False), (4, False)):
        yield (f"QDense(bits={bits},no_offset={no_offset})",
               lambda ck, b=bits, n=no_offset: bmx.nn.QDense(
                   C_OUT, bits=b, no_offset=n,
                   **({"in_units": C_IN * 5 * 5} if ck else {})))


LAYERS = list(_layers())


@pytest.mark.parametrize("hybridize", [False, True])
@pytest.mark.parametrize("name, make", LAYERS, ids=[n for n, _ in LAYERS])
def test_builds_without_in_channels(name, make, hybridize):
    x = mx.nd.array(np.random.RandomState(0).randn(2, C_IN, 5, 5))
    nets = []
    for ck in ({}, {"in_channels": C_IN}):
        net = nn.HybridSequential()
        net.add(make(ck))
        net.initialize(mx.init.Xavier(magnitude=2))
        if hybridize:
            net.hybridize()
        nets.append(net)
    y = nets[0](x)  # deferred: the weight's shape comes from x
    w_def = [p for p in nets[0].collect_params().values() if p.name.endswith("weight")][0]
    w_eag = [p for p in nets[1].collect_params().values() if p.name.endswith("weight")][0]
    assert w_def.shape == w_eag.shape and 0 not in w_def.shape
    # the same weights give the same outputs as the layer built with its channels
    w_eag.set_data(w_def.data())
    np.testing.assert_array_equal(y.asnumpy(), nets[1](x).asnumpy())
    assert np.isfinite(y.asnumpy()).all()


def test_qactivation_variants_without_shapes():
    x = mx.nd.array(np.linspace(-2, 2, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4))
    for bits, method in ((1, "det_sign"), (1, "approx_sign"), (2, "round"), (4, "round")):
        act = bmx.nn.QActivation(bits=bits, method=method)
        act.hybridize()
        y = act(x).asnumpy()
        if bits == 1:
            np.testing.assert_array_equal(y, np.where(x.asnumpy() < 0, -1.0, 1.0))
        else:
            n = 2 ** bits - 1
            np.testing.assert_array_equal(y, np.round(np.clip(x.asnumpy(), 0, 1) * n) / n)
