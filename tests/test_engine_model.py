"""bmx.engine.Model: the C++ runtime from Python against Gluon and the numpy interpreter.

Bethge et al., "BMXNet 2" (2019). Models are converted with :func:`bmx.convert` from zoo
networks whose BatchNorm statistics are randomised (so folding is not trivial); the
oracles are Gluon ``net(x)`` and :func:`bmx.modelfile.run_model`.

Every parameter of the zoo networks is moved away from its initial value (conftest):
zero biases and betas, unit gammas and zero running means hide folding faults.
"""
import re
import struct
import threading

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

import bmx
from bmx.modelfile import run_model
from bmx.engine import FORMAT_VERSION, MIN_FORMAT_VERSION, Model, ModelError, validate_model
from bmx.fb.Model import Model as FbModel
from conftest import (assert_all_moved, assert_logits_match, param_snapshot,
                      randomize_all_parameters)

KINDS = {"packing", "binary_conv", "float_conv", "bn_threshold", "pool", "concat", "other"}
# Logits, per image, relative to the batch's max|logit| (conftest.assert_logits_match).
# ROUND_TOL: float32 rounding of the float path in another order than Gluon's (oneDNN) or
# the interpreter's (float64 sums): measured <= 2.6e-7 on these 32x32 nets: ~4x that.
# FLIP_TOL: an image where an inner sign reads a value within rounding of 0 and the engine
# binarizes it differently; on 32x32 inputs the last maps are 4x4, so one flipped bit
# weighs more than at 64x64: measured 2.4e-5 (MeliusNet-22, image 0, where Gluon and the
# interpreter agree to 2e-7 and the engine differs from both): ~4x that.
ROUND_TOL = 1e-6
FLIP_TOL = 1e-4
# Same model, other batch size or thread count: the sub-batch plan and 2-thread splits may
# change the summation order of the pointwise float convs (measured: batch size 0, 2 threads
# 2.2e-7 = 1-3 ulps of the logits): ~4x the thread case.
ORDER_TOL = 1e-6


def _zoo(name, hw, stem="thumbnail", seed=0):
    net = bmx.get_model(name, classes=10, stem=stem)
    net.initialize(mx.init.Xavier(magnitude=2))
    net(mx.nd.zeros((1, 3, hw, hw)))
    before = param_snapshot(net)
    randomize_all_parameters(net, seed)
    assert_all_moved(net, before)
    net.hybridize()
    return net, bmx.convert(net, input_shape=(1, 3, hw, hw))


@pytest.fixture(scope="module")
def densenet():
    mx.random.seed(5)
    return _zoo("binarydensenet28", 32)


def _x(n, hw=32, seed=0):
    return np.random.RandomState(seed).standard_normal((n, 3, hw, hw)).astype(np.float32)


def _patch_version(data, version):
    buf = bytearray(data)
    m = FbModel.GetRootAs(buf, 0)
    o = m._tab.Offset(4)  # field 0: version
    assert o, "the converter always writes the version"
    struct.pack_into("<I", buf, m._tab.Pos + o, version)
    return bytes(buf)


@pytest.mark.parametrize("name,stem", [("binarydensenet28", "thumbnail"), ("resnete18", "thumbnail"),
                                       ("meliusnet22", "thumbnail"), ("meliusnet_a", "grouped")])
def test_engine_matches_gluon_and_interpreter(name, stem):
    hw = 64 if stem == "grouped" else 32
    net, data = _zoo(name, hw, stem)
    x = _x(8, hw)
    m = Model(data)
    got = m.predict(x)
    gluon = net(mx.nd.array(x)).asnumpy()
    interp = run_model(data, x)
    assert got.shape == (8, 10) and got.dtype == np.float32
    assert_logits_match(got, gluon, ROUND_TOL, FLIP_TOL, f"{name} engine vs gluon")
    assert_logits_match(got, interp, ROUND_TOL, FLIP_TOL, f"{name} engine vs interpreter")


def test_single_binary_conv_is_exact():
    """Gluon's 1-bit conv output (match counts) and the engine's are the same integers."""
    net = nn.HybridSequential()
    net.add(bmx.nn.BinaryConvolution(65, kernel_size=3, padding=1, in_channels=70), nn.Flatten())
    net.initialize(mx.init.Xavier(magnitude=2))
    x = _x(3, 9).repeat(24, axis=1)[:, :70]
    x[0, :, 0, 0] = 0.0  # sign(0) = +1
    net(mx.nd.array(x))
    data = bmx.convert(net, input_shape=(1, 70, 9, 9))
    got = Model(data).predict(x)
    want = net(mx.nd.array(x)).asnumpy()
    assert np.array_equal(got, want)
    assert np.array_equal(got, np.round(got))


def test_metadata_path_and_buffer_types(densenet, tmp_path):
    _, data = densenet
    p = tmp_path / "m.bmx"
    p.write_bytes(data)
    x = _x(2)
    ref = Model(data).predict(x)
    for src in (str(p), p, bytearray(data), memoryview(data)):
        m = Model(src)
        assert m.input_shape == (1, 3, 32, 32)
        assert m.output_shape == (1, 10)
        assert m.num_classes == 10
        assert "binarydensenet28" in m.producer
        np.testing.assert_array_equal(m.predict(x), ref)
    assert "Model(" in repr(m) and "BinaryConv2D" in m.summary()
    # a zoo model has no op of format 2 or 3: written as version 1, readable by older readers
    assert "(format 1," in m.summary()
    assert (MIN_FORMAT_VERSION, FORMAT_VERSION) == (1, 3)


def test_batch_sizes_threads_and_layouts(densenet):
    _, data = densenet
    m = Model(data)
    x = _x(5)
    full = m.predict(x)
    for n in (1, 5, 2, 1):  # re-plans on every change of batch size
        np.testing.assert_allclose(m.predict(x[:n]), full[:n], rtol=0, atol=ORDER_TOL * np.abs(full).max())
    m.num_threads = 2
    assert m.num_threads == 2
    two = m.predict(x)
    np.testing.assert_allclose(two, full, rtol=0, atol=ORDER_TOL * np.abs(full).max())
    # non-contiguous input is copied first: the very same computation, the same bits
    np.testing.assert_array_equal(m(np.asfortranarray(x)), two)
    np.testing.assert_array_equal(m(np.ascontiguousarray(x[::-1])[::-1]), two)


def test_large_batch_runs_in_sub_batches(densenet):
    # A batch whose activations outgrow ~1 MiB runs in several passes through the graph
    # (cache-sized sub-batches); the answer equals one call per image (float ops may round
    # differently per batch size), and a NaN in a later pass is reported at its index in
    # the caller's array.
    _, data = densenet
    m = Model(data)
    arena = int(re.search(r"arena (\d+) bytes per sample", m.summary()).group(1))
    n = 64
    assert arena * n > 2 * (1 << 20), "the batch must need several passes for this test"
    x = _x(n, seed=3)
    ref = np.concatenate([m.predict(x[i:i + 1]) for i in range(n)])
    for threads in (1, 2):
        m.num_threads = threads
        out = m.predict(x)
        np.testing.assert_allclose(out, ref, rtol=0, atol=ORDER_TOL * np.abs(ref).max())
        assert (out.argmax(1) == ref.argmax(1)).all()
    x[n - 1, 1, 2, 3] = np.nan
    flat = (n - 1) * 3 * 32 * 32 + (1 * 32 + 2) * 32 + 3
    with pytest.raises(ValueError, match=rf"NaN or Inf .*index {flat}\b"):
        m.predict(x)


@pytest.mark.parametrize("bad,msg", [
    (lambda x: x.astype(np.float64), "float32"),
    (lambda x: x.astype(np.float16), "float32"),
    (lambda x: x.astype(np.int32), "float32"),
    (lambda x: x[0], "shape"),
    (lambda x: x[:, :2], "shape"),
    (lambda x: x[:, :, :16], "shape"),
    (lambda x: x.reshape(2, 3, 32 * 32), "shape"),
    (lambda x: x[:0], "empty"),
    (lambda x: x.tolist(), "numpy"),
])
def test_bad_inputs_raise_value_error(densenet, bad, msg):
    _, data = densenet
    m = Model(data)
    with pytest.raises(ValueError, match=msg):
        m.predict(bad(_x(2)))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_raise_value_error(densenet, value):
    m = Model(densenet[1])
    x = _x(2)
    x[1, 2, 3, 4] = value
    with pytest.raises(ValueError, match="NaN or Inf"):
        m.predict(x)
    m.predict(_x(2))  # the model is still usable


def test_bad_files_raise_model_error(densenet, tmp_path):
    _, data = densenet
    cases = {
        "empty": b"",
        "tiny": b"BMX",
        "text": b"definitely not a model" * 10,
        "truncated half": data[:len(data) // 2],
        "truncated by 4": data[:-4],
        "truncated by 1": data[:-1],
        "header zeroed": b"\0" * 16 + data[16:],
        "wrong identifier": data[:4] + b"XXXX" + data[8:],
        "newer version": _patch_version(data, FORMAT_VERSION + 1),
        "version 0": _patch_version(data, 0),
    }
    for what, blob in cases.items():
        with pytest.raises(ModelError):
            Model(blob)
        with pytest.raises(ModelError):
            validate_model(blob)
        assert issubclass(ModelError, ValueError), what
    with pytest.raises(ModelError, match=f"version {FORMAT_VERSION + 1} "):
        Model(cases["newer version"])


def _full_weight_word_bytes(data):
    """Byte offsets of the BinaryConv2D weight words that hold no tail bits: every value of
    such a word is a valid binary filter (the tail bits past C_in must stay 0)."""
    from bmx.fb.BinaryConv2D import BinaryConv2D
    from bmx.fb.OpOptions import OpOptions
    m = FbModel.GetRootAs(data, 0)
    offsets = []
    for i in range(m.OpsLength()):
        op = m.Ops(i)
        if op.OptionsType() != OpOptions.BinaryConv2D:
            continue
        t = BinaryConv2D()
        tab = op.Options()
        t.Init(tab.Bytes, tab.Pos)
        o = t._tab.Offset(18)  # weight_bits: [C_out, KH, KW, words] uint64 as bytes
        start, nbytes = t._tab.Vector(o), t._tab.VectorLen(o)
        cin_g = t.InChannels() // max(t.Groups(), 1)
        words = (cin_g + 63) // 64
        full = words if cin_g % 64 == 0 else words - 1
        for w in range(nbytes // 8):
            if w % words < full:
                offsets.extend(range(start + 8 * w, start + 8 * w + 8))
    return np.array(offsets)


def test_corrupted_bytes_never_crash(densenet):
    """Random byte corruption, in three classes with known outcomes: bytes of the file
    identifier (rejected: not a bmx model), bytes inside weight words without tail bits
    (a valid, different model: loads, predicts finite logits, mostly different ones), and
    bytes anywhere (Model and validate_model classify each file alike; a loaded one either
    predicts logits of the right shape or raises ValueError)."""
    _, data = densenet
    rs = np.random.RandomState(0)
    x = _x(1)
    ref = Model(data).predict(x)
    # identifier: bytes 4..8
    for _ in range(20):
        buf = bytearray(data)
        pos = rs.randint(4, 8)
        buf[pos] = (buf[pos] + rs.randint(1, 256)) % 256
        with pytest.raises(ModelError, match="not a bmx model"):
            Model(bytes(buf))
        with pytest.raises(ModelError, match="not a bmx model"):
            validate_model(bytes(buf))
    # weight words: any value is a valid model
    words = _full_weight_word_bytes(data)
    assert len(words) > 1000
    changed = 0
    for _ in range(60):
        buf = bytearray(data)
        for pos in rs.choice(words, size=rs.randint(1, 8), replace=False):
            buf[pos] = (buf[pos] + rs.randint(1, 256)) % 256
        validate_model(bytes(buf))
        out = Model(bytes(buf)).predict(x)
        assert out.shape == ref.shape and np.isfinite(out).all()
        changed += not np.array_equal(out, ref)
    # a changed weight bit changes a match count; only a ReLU or max-pool can hide it
    assert changed >= 40, changed
    # anywhere
    outcomes = {"loaded": 0, "rejected": 0, "predict refused": 0}
    for _ in range(220):
        buf = bytearray(data)
        for pos in rs.randint(0, len(buf), size=rs.randint(1, 8)):
            buf[pos] = rs.randint(0, 256)
        blob = bytes(buf)
        try:
            validate_model(blob)
            valid = True
        except ModelError as e:
            valid = False
            assert str(e)
        try:
            m = Model(blob)
        except ModelError as e:
            assert not valid, f"validate_model accepts a file Model rejects: {e}"
            outcomes["rejected"] += 1
            continue
        assert valid, "Model loads a file validate_model rejects"
        outcomes["loaded"] += 1
        try:
            out = m.predict(x)
        except ValueError:
            outcomes["predict refused"] += 1
            continue
        # shape only: a corrupted float weight may be finite but huge, and overflow
        assert out.shape == ref.shape and out.dtype == np.float32
    print(f"\n[corruption] {outcomes}, {changed}/60 weight-word corruptions changed the logits")
    assert outcomes["loaded"] > 0 and outcomes["rejected"] > 0


def test_bad_paths_and_arguments(tmp_path, densenet):
    with pytest.raises(FileNotFoundError):
        Model(str(tmp_path / "missing.bmx"))
    with pytest.raises(IsADirectoryError):
        Model(str(tmp_path))
    with pytest.raises(TypeError):
        Model(42)
    with pytest.raises(ValueError):
        Model(densenet[1], num_threads=0)
    with pytest.raises(TypeError):
        Model(densenet[1], num_threads=1.5)
    m = Model(densenet[1])
    with pytest.raises(ValueError):
        m.num_threads = 0


def test_concurrent_predict_matches_serial(densenet):
    _, data = densenet
    m = Model(data, num_threads=2)
    xs = [_x(1 + i % 3, seed=i) for i in range(6)]
    want = [m.predict(x) for x in xs]
    errors = []

    def worker(t):
        try:
            for r in range(6):
                i = (t + r) % len(xs)
                if not np.array_equal(m.predict(xs[i]), want[i]):
                    errors.append((t, i))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_profile_by_kind(densenet):
    _, data = densenet
    m = Model(data, profile=True)
    assert m.profiling
    m.predict(_x(1))
    p = m.profile()
    assert set(p) == KINDS
    assert all(v >= 0 for v in p.values()) and sum(p.values()) > 0
    assert p["binary_conv"] > 0 and p["float_conv"] > 0 and p["packing"] > 0
    per_op = m.profile(per_op=True)
    assert len(per_op) > 20 and all(isinstance(n, str) for n, _ in per_op)
    m.reset_profile()
    assert sum(m.profile().values()) == 0
    m.profiling = False
    m.predict(_x(1))
    assert sum(m.profile().values()) == 0
