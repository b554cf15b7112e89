"""Build stage, standard operators: one IR op per Gluon/MXNet operator node.

:func:`_translate` looks the operator up in :data:`OP_LOWERING`; every lowering takes
``(builder, node, attrs, shape)`` and returns an :class:`~.ir._Op`. BatchNorm becomes an
``affine`` (folded into its neighbours by :mod:`.passes`); slice, reshape and transpose
are kept only for the pattern passes to match.
"""
import numpy as np

from .errors import ConversionError
from .graph import _node_attrs, _pair
from .ir import _Op


def _translate(builder, i, n):
    """The IR op of json node ``i`` (not part of a quantized block)."""
    a = _node_attrs(n)
    shp = builder.g.shape(i)
    lower = OP_LOWERING.get(n["op"])
    if lower is None:
        raise _unsupported(n)
    return lower(builder, n, a, shp)


def _unsupported(n):
    return ConversionError(f"unsupported operator {n['op']!r} (node {n['name']!r}); the converter "
                           "handles bmx.nn binary layers, Conv2D, BatchNorm, ReLU, pooling, "
                           "concat, add, channel shuffle, Dense and Flatten")


def _alias(builder, n, a, shp):
    return _Op("alias", n["name"], [builder.ref(n["inputs"][0])], shp)


def _conv(builder, n, a, shp):
    name = n["name"]
    if a.get("layout", "NCHW") not in (None, "NCHW"):
        raise ConversionError(f"{name!r}: layout {a.get('layout')} is not supported")
    if len(_pair(a.get("kernel"), (1, 1))) != 2:
        raise ConversionError(f"{name!r}: only 2-D convolutions are supported")
    W = builder.param(n, 1, "weight")
    b = None if a.get("no_bias", False) else builder.param(n, 2, "bias")
    return _Op("conv", name, [builder.ref(n["inputs"][0])], shp, W=W.copy(),
               b=None if b is None else b.copy(), cout=int(a["num_filter"]),
               kernel=_pair(a.get("kernel"), (1, 1)), stride=_pair(a.get("stride"), (1, 1)),
               pad=_pair(a.get("pad"), (0, 0)), dilation=_pair(a.get("dilate"), (1, 1)),
               groups=int(a.get("num_group", 1)), activation=None)


def _batchnorm(builder, n, a, shp):
    """BatchNorm in inference form: y = scale * x + shift per channel, in float64."""
    name = n["name"]
    if int(a.get("axis", 1)) != 1:
        raise ConversionError(f"BatchNorm {name!r} on axis {a.get('axis')}: only axis 1")
    gamma = builder.param(n, 1, "gamma").astype(np.float64)
    beta = builder.param(n, 2, "beta").astype(np.float64)
    mean = builder.param(n, 3, "running mean").astype(np.float64)
    var = builder.param(n, 4, "running var").astype(np.float64)
    if a.get("fix_gamma", True):  # MXNet's default is fix_gamma=True: gamma is 1
        gamma = np.ones_like(gamma)
    eps = float(a.get("eps", 1e-3))
    with np.errstate(invalid="ignore", divide="ignore"):  # checked before writing
        scale = gamma / np.sqrt(var + eps)
        shift = beta - mean * scale
    return _Op("affine", name, [builder.ref(n["inputs"][0])], shp, scale=scale, shift=shift,
               activation=None)


def _relu(builder, n, a, shp):
    act = a.get("act_type", "relu") if n["op"] == "Activation" else "relu"
    if act != "relu":
        raise ConversionError(f"activation {act!r} ({n['name']!r}) is not supported "
                              "(only relu)")
    return _Op("relu", n["name"], [builder.ref(n["inputs"][0])], shp)


def _concat(builder, n, a, shp):
    if int(a.get("dim", 1)) != 1:
        raise ConversionError(f"concat {n['name']!r} along dim {a.get('dim')}: only channels")
    return _Op("concat", n["name"], [builder.ref(s) for s in n["inputs"]], shp)


def _add(builder, n, a, shp):
    ins = n["inputs"]
    s0, s1 = builder.g.shape(*ins[0][:2]), builder.g.shape(*ins[1][:2])
    if s0 != s1:
        raise ConversionError(f"{n['op']} {n['name']!r} of shapes {s0} and {s1}: broadcasting "
                              "additions are not supported")
    return _Op("add", n["name"], [builder.ref(s) for s in ins], shp)


def _add_n(builder, n, a, shp):
    if len(n["inputs"]) != 2:
        raise _unsupported(n)
    return _Op("add", n["name"], [builder.ref(s) for s in n["inputs"]], shp)


def _dense(builder, n, a, shp):
    name, ins = n["name"], n["inputs"]
    W = builder.param(n, 1, "weight")
    b = None if a.get("no_bias", False) else builder.param(n, 2, "bias")
    ishape = builder.g.shape(*ins[0][:2])
    if not a.get("flatten", True) and len(ishape) != 2:
        raise ConversionError(f"FullyConnected {name!r} with flatten=False on a "
                              f"{len(ishape)}-D input is not supported")
    return _Op("dense", name, [builder.ref(ins[0])], shp, W=W.reshape(W.shape[0], -1).copy(),
               b=None if b is None else b.copy(), units=int(a["num_hidden"]))


def _flatten(builder, n, a, shp):
    return _Op("flatten", n["name"], [builder.ref(n["inputs"][0])], shp)


def _slice_axis(builder, n, a, shp):
    src = n["inputs"][0]
    ishape = builder.g.shape(*src[:2])
    axis = int(a["axis"])
    axis = axis + len(ishape) if axis < 0 else axis
    begin, end = a.get("begin", 0), a.get("end")
    c = ishape[axis]
    begin = int(begin) + c if int(begin) < 0 else int(begin)
    end = c if end is None else (int(end) + c if int(end) < 0 else int(end))
    return _Op("slice", n["name"], [builder.ref(src)], shp, axis=axis, begin=begin, end=end,
               in_shape=ishape)


def _reshape(builder, n, a, shp):
    src = n["inputs"][0]
    return _Op("reshape", n["name"], [builder.ref(src)], shp,
               in_shape=builder.g.shape(*src[:2]))


def _transpose(builder, n, a, shp):
    src = n["inputs"][0]
    nd_ = len(builder.g.shape(*src[:2]))
    if n["op"] == "transpose":
        axes = tuple(a.get("axes") or tuple(reversed(range(nd_))))
    else:
        d1, d2 = int(a.get("dim1", 0)), int(a.get("dim2", 0))
        ax = list(range(nd_))
        ax[d1], ax[d2] = ax[d2], ax[d1]
        axes = tuple(ax)
    return _Op("transpose", n["name"], [builder.ref(src)], shp, axes=axes)


def _pool(builder, n, a, shp):
    name = n["name"]
    ptype = a.get("pool_type", "max")
    if ptype not in ("max", "avg"):
        raise ConversionError(f"pooling {ptype!r} ({name!r}) is not supported")
    if a.get("layout") not in (None, "NCHW"):
        raise ConversionError(f"pooling {name!r}: layout {a.get('layout')} not supported")
    ishape = builder.g.shape(*n["inputs"][0][:2])
    glob = bool(a.get("global_pool", False))
    kernel = _pair(a.get("kernel"), (1, 1))
    stride = _pair(a.get("stride"), (1, 1))
    pad = _pair(a.get("pad"), (0, 0))
    if glob:
        kernel, stride, pad = tuple(ishape[2:]), (1, 1), (0, 0)
    ceil_mode = False
    if not glob:
        ceil_mode = _pool_ceil_mode(name, a, ishape, shp, kernel, stride, pad)
    return _Op("pool", name, [builder.ref(n["inputs"][0])], shp, type=ptype, kernel=kernel,
               stride=stride, pad=pad, glob=glob, ceil_mode=ceil_mode,
               count_include_pad=bool(a.get("count_include_pad", True)))


def _pool_ceil_mode(name, a, ishape, shp, kernel, stride, pad):
    """Whether a windowed pooling needs ceil mode for its output size ('full' convention
    with partial windows at the bottom/right border); refuses sizes neither gives."""
    conv = a.get("pooling_convention", "valid")
    size = [ishape[2 + d] + 2 * pad[d] - kernel[d] for d in (0, 1)]
    valid = tuple(size[d] // stride[d] + 1 for d in (0, 1))
    full = tuple(-(-size[d] // stride[d]) + 1 for d in (0, 1))
    if conv not in ("valid", "full"):
        raise ConversionError(f"pooling {name!r}: pooling_convention={conv!r} is not "
                              "supported (only 'valid' and 'full')")
    ceil_mode = False
    if tuple(shp[2:]) != valid:
        if conv != "full" or tuple(shp[2:]) != full or any(
                (shp[2 + d] - 1) * stride[d] - pad[d] >= ishape[2 + d] for d in (0, 1)):
            raise ConversionError(f"pooling {name!r}: output size {shp[2:]} for input "
                                  f"{ishape[2:]} is not representable")
        ceil_mode = True
    if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
        raise ConversionError(f"pooling {name!r}: padding {pad} must be smaller than "
                              f"the kernel {kernel}")
    return ceil_mode


def _table(lowering, *ops):
    return {op: lowering for op in ops}


#: MXNet operator name -> lowering ``(builder, node, attrs, shape) -> _Op``
OP_LOWERING = {
    **_table(_alias, "Dropout", "_copy", "identity", "BlockGrad", "stop_gradient"),
    "Convolution": _conv,
    "BatchNorm": _batchnorm,
    **_table(_relu, "Activation", "relu"),
    "Pooling": _pool,
    **_table(_concat, "Concat", "concat"),
    **_table(_add, "elemwise_add", "_plus", "_Plus", "broadcast_add", "_add", "broadcast_plus"),
    "add_n": _add_n,
    "FullyConnected": _dense,
    **_table(_flatten, "Flatten", "flatten"),
    "slice_axis": _slice_axis,
    **_table(_reshape, "Reshape", "reshape"),
    **_table(_transpose, "transpose", "SwapAxis", "swapaxes"),
}
