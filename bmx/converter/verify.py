"""Verification stage: the checks between the passes and serialisation.

The input shape given to :func:`~bmx.converter.convert`, the network output (logits),
the reader contract's limits (``src/schema/bmx_model.fbs``, ``src/runtime/limits.h``) on
every value and window, and the recorded mean/std, so that the converter fails with a
clear message instead of writing a file the engine rejects.
"""
import numpy as np

from .._engine import LIMITS  # defined once, in the C++ loader
from .errors import ConversionError

#: limits of the reader contract, as the engine enforces them
MAX_VALUES_OPS = min(LIMITS["max_ops"], LIMITS["max_values"])
MAX_DIM = LIMITS["max_dim"]
MAX_ELEMS = LIMITS["max_elems"]
MAX_WINDOW = LIMITS["max_window"]


def _check_shape(input_shape):
    try:
        shp = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ConversionError(f"input_shape must be (N, C, H, W) integers, "
                              f"got {input_shape!r}") from None
    if len(shp) != 4 or any(d < 1 for d in shp):
        raise ConversionError(f"input_shape must be (N, C, H, W) with positive sizes, got {shp}")
    return shp


def _num_classes(ir):
    """The class count of the network output, which must be ``(N, classes)`` logits."""
    out_shape = ir.ops[ir.output].shape
    num_classes = int(np.prod(out_shape[1:]))
    if len(out_shape) != 2:
        raise ConversionError(f"the network output has shape {out_shape}; expected "
                              "(N, classes) logits")
    return num_classes


def _check_contract(ir, input_shape, mean, std):
    """Check the IR against the format's limits; returns mean and std as float32 arrays
    (or None)."""
    _check_limits(ir)
    channels = input_shape[1]
    return _norm("mean", mean, channels), _norm("std", std, channels)


def _check_limits(ir):
    if len(ir.order) > MAX_VALUES_OPS:
        raise ConversionError(f"the converted graph has {len(ir.order)} values; the format "
                              f"allows at most {MAX_VALUES_OPS}")
    for k in ir.order:
        op = ir.ops[k]
        dims = op.shape[1:]
        if any(d < 1 or d > MAX_DIM for d in dims) or int(np.prod(dims)) > MAX_ELEMS:
            raise ConversionError(f"{op.name!r}: value shape {(1,) + tuple(dims)} exceeds the "
                                  f"format's limits (dimensions <= {MAX_DIM}, <= {MAX_ELEMS} elements)")
        for key in ("kernel", "stride", "dilation", "pad"):
            v = op.attrs.get(key)
            if v is not None and any(int(d) > MAX_WINDOW for d in v):
                raise ConversionError(f"{op.name!r}: {key} {tuple(v)} exceeds {MAX_WINDOW}")


def _norm(what, v, channels):
    """A recorded mean or std: one finite (std: positive) float32 per input channel."""
    if v is None:
        return None
    try:
        arr = np.asarray(v, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ConversionError(f"{what} must be numbers, got {v!r}") from None
    bad = arr.size != channels or not np.all(np.isfinite(arr))
    if what == "std":
        bad = bad or bool(np.any(arr <= 0))
    if bad:
        kind = "finite positive" if what == "std" else "finite"
        raise ConversionError(f"{what} must have one {kind} entry per input channel "
                              f"({channels}), got {v!r}")
    return arr.astype(np.float32)
