"""End-to-end equivalence of Gluon and the C++ engine on converted files (issue 5
acceptance): every zoo model at 64x64, three at 224x224, exact integers of a single
binary conv, inner-layer sign-bit agreement, and file sizes against bmx.summary.

Each whole-network test prints its worst deviation (run with ``-s`` to see them).
"""
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

import bmx
from bmx import convention
from bmx.converter import convert

os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")

ZOO = ["resnete18", "resnete34", "binarydensenet28", "binarydensenet37",
       "binarydensenet37_dilated", "binarydensenet45", "meliusnet22", "meliusnet29",
       "meliusnet42", "meliusnet59", "meliusnet_a", "meliusnet_b", "meliusnet_c"]
FAST = {"resnete18", "binarydensenet28", "meliusnet_a"}  # one per family in `make test-fast`
BIG = ["binarydensenet28", "resnete18", "meliusnet22"]
BATCH = 8
TOL = 1e-2  # engine logits within TOL * max|logit| of Gluon


def _engine():
    engine = bmx.engine
    if not hasattr(engine, "Model"):
        pytest.skip("bmx.engine.Model (the C++ runtime binding) is not built")
    return engine


def _randomize_bn(net, seed):
    """Running statistics, gamma and beta far from their initial values, so every folded
    BatchNorm matters."""
    rs = np.random.RandomState(seed)
    for p in net.collect_params().values():
        if p.name.endswith("running_mean"):
            p.set_data(p.data() + mx.nd.array(rs.normal(0, 0.3, p.shape)))
        elif p.name.endswith("running_var"):
            p.set_data(p.data() * mx.nd.array(rs.uniform(0.5, 2.0, p.shape)))
        elif p.name.endswith("gamma"):
            p.set_data(p.data() * mx.nd.array(rs.uniform(0.5, 1.5, p.shape)))
        elif p.name.endswith("beta"):
            p.set_data(p.data() + mx.nd.array(rs.normal(0, 0.2, p.shape)))


def _train_steps(net, shape, steps, seed):
    """A few Adam steps on random data: weights (and their signs), gamma/beta and the BN
    running statistics all move away from the initialization."""
    rs = np.random.RandomState(seed)
    trainer = mx.gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 1e-2})
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    classes = None
    for _ in range(steps):
        x = mx.nd.array(rs.randn(*shape))
        with mx.autograd.record():
            out = net(x)
            classes = out.shape[1]
            y = mx.nd.array(rs.randint(0, classes, shape[0]))
            loss = loss_fn(out, y)
        loss.backward()
        trainer.step(shape[0])


def _build(name, size, seed=0, train_steps=0, **kw):
    mx.random.seed(seed)
    net = bmx.model_zoo.get_model(name, **kw)
    net.initialize(bmx.model_zoo.common.default_initializer())
    shape = (BATCH, 3, size, size)
    net(mx.nd.zeros((1, 3, size, size)))
    if train_steps:
        _train_steps(net, (2, 3, size, size), train_steps, seed)
    _randomize_bn(net, seed + 1)
    x = np.random.RandomState(seed + 2).randn(*shape).astype(np.float32)
    return net, x


def _compare(name, net, x, size, threads=1):
    engine = _engine()
    data = convert(net, (1,) + x.shape[1:])
    model = engine.Model(data, num_threads=1)
    ref = net(mx.nd.array(x)).asnumpy()
    got = np.asarray(model.predict(x))
    assert got.shape == ref.shape
    dev = np.abs(got - ref).max() / np.abs(ref).max()
    same = (got.argmax(1) == ref.argmax(1)).mean()
    print(f"\n[equivalence] {name} {size}x{size} batch {len(x)}: max|engine-gluon|/max|logit| "
          f"= {dev:.3e}, argmax agreement {same:.3f}, file {len(data)} bytes")
    assert same == 1.0, f"{name}: argmax differs on {int((1 - same) * len(x))} images"
    assert dev <= TOL, f"{name}: deviation {dev:.3e} > {TOL}"
    if threads > 1:  # the threaded engine computes the same logits
        got_t = np.asarray(engine.Model(data, num_threads=threads).predict(x))
        assert np.abs(got_t - ref).max() <= TOL * np.abs(ref).max()
        assert (got_t.argmax(1) == ref.argmax(1)).all()
    return data, dev


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in FAST else pytest.mark.slow)
                                  for n in ZOO])
def test_zoo_64x64(name):
    _engine()
    net, x = _build(name, 64, train_steps=1, classes=10, stem="thumbnail")
    _compare(name, net, x, 64, threads=2)


@pytest.mark.slow
@pytest.mark.parametrize("name", BIG)
def test_zoo_224x224_and_size(name):
    _engine()
    net, x = _build(name, 224)
    data, _ = _compare(name, net, x, 224)
    size_mib = len(data) / 2.0 ** 20
    ref_mib = bmx.summary(net, (1, 3, 224, 224)).model_size_mib
    print(f"[size] {name}: file {size_mib:.3f} MiB, summary {ref_mib:.3f} MiB, "
          f"ratio {size_mib / ref_mib:.4f}")
    assert size_mib <= 1.03 * ref_mib
    if name == "binarydensenet28":
        assert size_mib <= 4.17


def test_resnete_on_28x28_ceil_mode_pooling():
    """MNIST-sized input: ResNetE's shortcut AvgPool2x2/2 (ceil_mode) meets a 7x7 map and
    the file records Pool2D.ceil_mode; Gluon and the engine must still agree."""
    _engine()
    net, x = _build("resnete18", 28, classes=10, stem="thumbnail")
    data = convert(net, (1, 3, 28, 28))
    from bmx.convert_utils import read_model
    pools = [o for o in read_model(data)["ops"] if o["type"] == "Pool2D"]
    assert any(o["options"]["ceil_mode"] for o in pools)
    _compare("resnete18", net, x, 28)


# Dispatch levels: "" is what the CPU offers, then features masked as on older CPUs.
LEVELS = ["", "avx512", "avx512,avx2", "avx512,avx2,popcnt"]


@pytest.mark.parametrize("name,kw", [
    pytest.param("resnete18", dict(classes=10), id="resnete18"),  # ImageNet stem: direct 7x7/2 float conv
    pytest.param("meliusnet_a", dict(classes=10), id="meliusnet_a", marks=pytest.mark.slow),  # grouped stem
    pytest.param("binarydensenet28", dict(classes=10, stem="thumbnail"), id="binarydensenet28",
                 marks=pytest.mark.slow),
])
def test_dispatch_levels_agree(name, kw, tmp_path):
    """The same file on every dispatch level the CPU can emulate (BMX_DISABLE_SIMD): each
    equals Gluon, and the AVX-512 and AVX2 levels give the same bits (the binary kernels
    are exact, and the float kernels keep one rounding order: the direct float conv does
    one FMA per tap and channel in both widths, the element-wise loops do not contract).
    The portable level runs the float convs as im2col + SGEMM: close, not equal."""
    import subprocess
    import sys
    _engine()
    net, x = _build(name, 64, train_steps=1, **kw)
    data = convert(net, (1,) + x.shape[1:])
    ref = net(mx.nd.array(x)).asnumpy()
    (tmp_path / "m.bmx").write_bytes(data)
    np.save(tmp_path / "x.npy", x)
    code = ("import sys, numpy as np, bmx.engine as e; d = sys.argv[1]; "
            "m = e.Model(open(d + '/m.bmx', 'rb').read(), num_threads=2); "
            "np.save(d + '/out.npy', np.asarray(m.predict(np.load(d + '/x.npy')))); print(e.auto_kernel())")
    outs = {}
    for level in LEVELS:
        run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=dict(os.environ, BMX_DISABLE_SIMD=level),
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-2000:]
        got = np.load(tmp_path / "out.npy")
        dev = np.abs(got - ref).max() / np.abs(ref).max()
        print(f"[levels] {name} BMX_DISABLE_SIMD={level!r}: kernel {run.stdout.strip()}, deviation {dev:.2e}")
        assert dev <= TOL and (got.argmax(1) == ref.argmax(1)).all(), (level, dev)
        outs[level] = got
    np.testing.assert_array_equal(outs["avx512"], outs[""])  # AVX2 kernels == the CPU's best


@pytest.mark.parametrize("cin,cout,k,stride,pad,dil,groups,hw", [
    (3, 8, 3, 1, 1, 1, 1, 7),
    (70, 13, 3, 2, 1, 1, 1, 9),
    (64, 64, 3, 1, 2, 2, 1, 8),
    (130, 32, 1, 1, 0, 1, 1, 5),
    (128, 64, 3, 1, 1, 1, 2, 6),
    (65, 9, 5, 2, 2, 1, 1, 11),
])
def test_single_binary_conv_exact_integers(cin, cout, k, stride, pad, dil, groups, hw):
    """Gluon's QActivation -> QConv2D and the engine give exactly the same integers."""
    engine = _engine()
    net = nn.HybridSequential()
    net.add(bmx.nn.BinaryConvolution(cout, kernel_size=k, stride=stride, padding=pad,
                                     dilation=dil, groups=groups, in_channels=cin),
            nn.Flatten())
    mx.random.seed(cin + cout)
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    x = np.random.RandomState(cin).randn(4, cin, hw, hw).astype(np.float32)
    x[0, :, 0, :] = 0.0  # sign(0) = +1 on both sides
    ref = net(mx.nd.array(x)).asnumpy()
    assert np.array_equal(ref, np.round(ref))
    data = convert(net, (1, cin, hw, hw))
    got = np.asarray(engine.Model(data, num_threads=1).predict(x))
    np.testing.assert_array_equal(got, ref)


def _inner_split(net):
    """The features up to stage 3, and the BatchNorm that stage 3's first Sign folds (None
    when its binary conv reads sign(x) directly, as in ResNetE)."""
    feats = net.features
    k = [i for i, b in enumerate(feats) if b.prefix.endswith("stage3_")][0]
    first = feats[k][0].body[0]
    return feats[:k], (first if isinstance(first, nn.BatchNorm) else None)


@pytest.mark.slow
@pytest.mark.parametrize("name", BIG)
def test_inner_sign_bits_agree(name):
    """The bits an inner Sign computes from the engine's values agree with Gluon's on at
    least 99.99% of the positions (float rounding may flip values sitting on zero)."""
    engine = _engine()
    net, x = _build(name, 224, seed=5)
    x = x[:2]
    head, bn = _inner_split(net)
    sub = nn.HybridSequential(prefix="")
    for blk in head:
        sub.add(blk)
    sub.add(nn.Flatten())
    ref = sub(mx.nd.array(x)).asnumpy()
    data = convert(sub, (1,) + x.shape[1:])
    got = np.asarray(engine.Model(data, num_threads=1).predict(x))
    if bn is not None:
        p = bn.params
        g = p.get("gamma").data().asnumpy()
        if bn._kwargs["fix_gamma"]:
            g = np.ones_like(g)
        s = g / np.sqrt(p.get("running_var").data().asnumpy() + bn._kwargs["eps"])
        t = p.get("beta").data().asnumpy() - p.get("running_mean").data().asnumpy() * s
        hw = ref.shape[1] // s.size  # flattened NCHW: channel-major
        s, t = np.repeat(s, hw), np.repeat(t, hw)
        ref, got = ref * s + t, got * s + t
    agree = (convention.to_bits(ref) == convention.to_bits(got)).mean()
    print(f"\n[sign bits] {name}: {ref.size} inner bits, agreement {agree:.6f}")
    assert agree >= 0.9999
