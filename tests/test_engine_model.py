"""bmx.engine.Model: the C++ runtime from Python against Gluon and the numpy interpreter.

Bethge et al., "BMXNet 2" (2019). Models are converted with :func:`bmx.convert` from zoo
networks whose BatchNorm statistics are randomised (so folding is not trivial); the
oracles are Gluon ``net(x)`` and :func:`bmx.convert_utils.run_model`.
"""
import os
import re
import struct
import threading

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

import bmx
from bmx.convert_utils import run_model
from bmx.engine import FORMAT_VERSION, Model, ModelError, validate_model
from bmx.fb.Model import Model as FbModel

KINDS = {"packing", "binary_conv", "float_conv", "bn_threshold", "pool", "concat", "other"}


def _randomize(net, seed):
    rs = np.random.RandomState(seed)
    for name, p in net.collect_params().items():
        if name.endswith("running_mean") or name.endswith("beta"):
            p.set_data(mx.nd.array(rs.normal(0, 0.3, p.shape)))
        elif name.endswith("running_var") or name.endswith("gamma"):
            p.set_data(mx.nd.array(rs.uniform(0.5, 1.5, p.shape)))


def _zoo(name, hw, stem="thumbnail", seed=0):
    net = bmx.get_model(name, classes=10, stem=stem)
    net.initialize(mx.init.Xavier(magnitude=2))
    net(mx.nd.zeros((1, 3, hw, hw)))
    _randomize(net, seed)
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
    scale = np.abs(gluon).max()
    assert np.abs(got - gluon).max() <= 1e-2 * scale, (name, np.abs(got - gluon).max() / scale)
    assert np.array_equal(got.argmax(1), gluon.argmax(1))
    np.testing.assert_allclose(got, interp, rtol=0, atol=1e-4 * np.abs(interp).max())


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
    assert FORMAT_VERSION == 1


def test_batch_sizes_threads_and_layouts(densenet):
    _, data = densenet
    m = Model(data)
    x = _x(5)
    full = m.predict(x)
    for n in (1, 5, 2, 1):  # re-plans on every change of batch size
        np.testing.assert_allclose(m.predict(x[:n]), full[:n], rtol=0, atol=1e-5 * np.abs(full).max())
    m.num_threads = 2
    assert m.num_threads == 2
    np.testing.assert_allclose(m.predict(x), full, rtol=0, atol=1e-5 * np.abs(full).max())
    # non-contiguous input is copied, same answer
    xt = np.asfortranarray(x)
    np.testing.assert_allclose(m(xt), full, rtol=0, atol=1e-5 * np.abs(full).max())


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
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
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
        "version 2": _patch_version(data, 2),
        "version 0": _patch_version(data, 0),
    }
    for what, blob in cases.items():
        with pytest.raises(ModelError):
            Model(blob)
        with pytest.raises(ModelError):
            validate_model(blob)
        assert issubclass(ModelError, ValueError), what
    with pytest.raises(ModelError, match="version 2"):
        Model(cases["version 2"])


def test_corrupted_bytes_never_crash(densenet):
    _, data = densenet
    rs = np.random.RandomState(0)
    x = _x(1)
    outcomes = {"loaded": 0, "rejected": 0}
    for _ in range(300):
        buf = bytearray(data)
        for pos in rs.randint(0, len(buf), size=rs.randint(1, 8)):
            buf[pos] = rs.randint(0, 256)
        try:
            m = Model(bytes(buf))
        except ModelError:
            outcomes["rejected"] += 1
            continue
        outcomes["loaded"] += 1
        try:
            m.predict(x)
        except ValueError:
            pass
    assert outcomes["loaded"] + outcomes["rejected"] == 300


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
