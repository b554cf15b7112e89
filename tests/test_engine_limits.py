"""The model format version and the loader limits that bmx._engine exports (defined once in
src/runtime/limits.h): each exported bound is the one the C++ loader and predict() enforce,
checked at the boundary with hand-built model files (the largest value loads, one more is
rejected with a message naming the bound)."""
import numpy as np
import pytest
import flatbuffers

from bmx import _engine
from bmx.fb import Concat, Model, Op, Pool2D, Relu, Value
from bmx.fb.OpOptions import OpOptions
from bmx.fb.PoolType import PoolType

EXPECTED_KEYS = {"max_dim", "max_elems", "max_total_bytes", "max_window", "max_ops", "max_values",
                 "max_op_inputs", "max_reduction", "max_file_bytes", "max_batch", "max_threads"}


def _ivec(b, vals):
    return b.CreateNumpyVector(np.asarray(vals, dtype="<i4"))


def _model(shapes, ops, version=None):
    """A model file: `shapes` are the values' NCHW shapes at batch 1 (value 0 the input, the
    last the output); `ops` are (OpOptions, inputs, output, pool stride or None)."""
    b = flatbuffers.Builder(1024)
    values = []
    for i, shape in enumerate(shapes):
        name = b.CreateString(f"v{i}")
        shp = _ivec(b, shape)
        Value.Start(b)
        Value.AddName(b, name)
        Value.AddShape(b, shp)
        values.append(Value.End(b))
    op_offsets = []
    for k, (kind, inputs, output, stride) in enumerate(ops):
        if kind == OpOptions.Relu:
            Relu.Start(b)
            opt = Relu.End(b)
        elif kind == OpOptions.Concat:
            Concat.Start(b)
            opt = Concat.End(b)
        else:
            kern, strd = _ivec(b, [1, 1]), _ivec(b, [stride, stride])
            Pool2D.Start(b)
            Pool2D.AddType(b, PoolType.Max)
            Pool2D.AddKernel(b, kern)
            Pool2D.AddStride(b, strd)
            opt = Pool2D.End(b)
        name = b.CreateString(f"op{k}")
        ins, outs = _ivec(b, inputs), _ivec(b, [output])
        Op.Start(b)
        Op.AddName(b, name)
        Op.AddOptionsType(b, kind)
        Op.AddOptions(b, opt)
        Op.AddInputs(b, ins)
        Op.AddOutputs(b, outs)
        op_offsets.append(Op.End(b))

    def vector(start, items):
        start(b, len(items))
        for it in reversed(items):
            b.PrependUOffsetTRelative(it)
        return b.EndVector()

    vals = vector(Model.StartValuesVector, values)
    opv = vector(Model.StartOpsVector, op_offsets)
    ins, outs = _ivec(b, [0]), _ivec(b, [len(shapes) - 1])
    Model.Start(b)
    Model.AddVersion(b, _engine.FORMAT_VERSION if version is None else version)
    Model.AddValues(b, vals)
    Model.AddInputs(b, ins)
    Model.AddOutputs(b, outs)
    Model.AddOps(b, opv)
    b.Finish(Model.End(b), file_identifier=b"BMX1")
    return bytes(b.Output())


def _relu_chain(shape, n_ops):
    return _model([shape] * (n_ops + 1), [(OpOptions.Relu, [k], k + 1, None) for k in range(n_ops)])


def _error(data):
    try:
        _engine.validate_model(data)
    except _engine.ModelError as e:
        return str(e)
    return ""


def test_exported_values_are_read_only_ints():
    lim = _engine.LIMITS
    assert set(lim) == EXPECTED_KEYS
    assert all(isinstance(v, int) and v > 0 for v in lim.values())
    with pytest.raises(TypeError):
        lim["max_dim"] = 1
    assert isinstance(_engine.FORMAT_VERSION, int) and _engine.FORMAT_VERSION >= 1
    assert isinstance(_engine.MIN_FORMAT_VERSION, int) and 1 <= _engine.MIN_FORMAT_VERSION <= _engine.FORMAT_VERSION


def test_format_versions_read():
    """Files of every version from MIN_FORMAT_VERSION to FORMAT_VERSION load; others are
    refused with the range this reader reads."""
    lo, hi = _engine.MIN_FORMAT_VERSION, _engine.FORMAT_VERSION
    for version in range(lo, hi + 1):
        assert _error(_model([[1, 1, 2, 2]] * 2, [(OpOptions.Relu, [0], 1, None)], version=version)) == ""
    for version in (hi + 1, lo - 1, 2 ** 32 - 1):
        err = _error(_model([[1, 1, 2, 2]] * 2, [(OpOptions.Relu, [0], 1, None)], version=version))
        assert f"unsupported model format version {version}" in err
        assert f"reads versions {lo} to {hi}" in err


def test_max_window():
    w = _engine.LIMITS["max_window"]
    shapes = [[1, 1, 2, 2], [1, 1, 1, 1]]
    assert _error(_model(shapes, [(OpOptions.Pool2D, [0], 1, w)])) == ""
    err = _error(_model(shapes, [(OpOptions.Pool2D, [0], 1, w + 1)]))
    assert f"stride ({w + 1}, {w + 1}) out of range [1, {w}]" in err


def test_max_dim():
    d = _engine.LIMITS["max_dim"]
    assert _error(_relu_chain([1, d, 1, 1], 1)) == ""
    err = _error(_relu_chain([1, d + 1, 1, 1], 1))
    assert f"= {d + 1} out of range [1, {d}]" in err


def test_max_elems_and_total_bytes():
    lim = _engine.LIMITS
    side = int(round(lim["max_elems"] ** 0.5))
    assert side * side == lim["max_elems"]
    # One value of max_elems elements (4 bytes each) loads; one element more does not.
    assert _error(_relu_chain([1, 1, side, side], 1)) == ""
    assert "too many elements" in _error(_relu_chain([1, 1, side, side + 1], 1))
    # Values of max_elems elements each, as many as max_total_bytes holds, load; one more does not.
    n = lim["max_total_bytes"] // (4 * lim["max_elems"])
    assert n >= 1
    assert _error(_relu_chain([1, 1, side, side], n - 1)) == ""
    assert "values too large in total" in _error(_relu_chain([1, 1, side, side], n))


def test_max_values_and_ops():
    lim = _engine.LIMITS
    assert lim["max_values"] <= lim["max_ops"] + 1  # a chain of max_values - 1 ops has max_values values
    assert _error(_relu_chain([1, 1, 1, 1], lim["max_values"] - 1)) == ""
    assert "too many values" in _error(_relu_chain([1, 1, 1, 1], lim["max_values"]))


def test_max_op_inputs():
    k = _engine.LIMITS["max_op_inputs"]
    assert _error(_model([[1, 1, 1, 1], [1, k, 1, 1]], [(OpOptions.Concat, [0] * k, 1, None)])) == ""
    err = _error(_model([[1, 1, 1, 1], [1, k + 1, 1, 1]], [(OpOptions.Concat, [0] * (k + 1), 1, None)]))
    assert "too many inputs" in err


def test_max_batch_and_threads():
    lim = _engine.LIMITS
    m = _engine.Model(_relu_chain([1, 1, 2, 2], 1))
    # A zero-stride view: the batch bound is checked before any memory is touched.
    x = np.broadcast_to(np.zeros((1, 1, 2, 2), np.float32), (lim["max_batch"] + 1, 1, 2, 2))
    with pytest.raises(ValueError, match=r"batch size must be in \[1, 2\^20\]"):
        m.predict(x)
    assert lim["max_batch"] == 2 ** 20  # the message above names it
    m.num_threads = lim["max_threads"]
    assert m.num_threads == lim["max_threads"]
    with pytest.raises(ValueError, match="too large"):
        m.num_threads = lim["max_threads"] + 1
    with pytest.raises(ValueError, match="too large"):
        _engine.Model(_relu_chain([1, 1, 2, 2], 1), num_threads=lim["max_threads"] + 1)
