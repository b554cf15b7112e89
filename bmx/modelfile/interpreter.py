"""A plain-numpy reference interpreter of bmx model files.

Bethge et al., "BMXNet 2" (2019). Slow and simple on purpose: it follows the op semantics
of ``src/schema/bmx_model.fbs`` literally (binary convolutions as integer match counts of
unpacked +-1 values with -1 padding), so it is an oracle for the converter tests and for
debugging the C++ engine.
"""
import numpy as np

from ..convention import round_half_away, unpack_bits, unpack_levels
from .reader import read_model

__all__ = ["run_model"]


def _pad(x, ph, pw, value):
    if not ph and not pw:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _conv(x, w, stride, dil, groups):
    """Plain grouped convolution of an already padded x (float64 accumulate)."""
    n, c, h, wd = x.shape
    co, cig, kh, kw = w.shape
    sh, sw = stride
    dh, dw = dil
    oh = (h - dh * (kh - 1) - 1) // sh + 1
    ow = (wd - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, co, oh, ow), np.float64)
    cog = co // groups
    for gi in range(groups):
        xs = x[:, gi * cig:(gi + 1) * cig]
        ws = w[gi * cog:(gi + 1) * cog].astype(np.float64)
        cols = np.empty((n, cig, kh, kw, oh, ow), np.float64)
        for i in range(kh):
            for j in range(kw):
                cols[:, :, i, j] = xs[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                                      j * dw:j * dw + sw * (ow - 1) + 1:sw]
        out[:, gi * cog:(gi + 1) * cog] = np.einsum("nckluv,ockl->nouv", cols, ws, optimize=True)
    return out


def _pool(x, o):
    """Pool2D as the schema defines it: windows clipped at the padded border."""
    n, c, h, w = x.shape
    if o["global"]:
        return (x.max(axis=(2, 3), keepdims=True) if o["type"] == "max"
                else x.mean(axis=(2, 3), keepdims=True, dtype=np.float64).astype(np.float32))
    kh, kw = o["kernel"]
    sh, sw = o["stride"]
    ph, pw = o["pad"]
    rnd = (lambda a, b: -(-a // b)) if o.get("ceil_mode") else (lambda a, b: a // b)
    oh = rnd(h + 2 * ph - kh, sh) + 1
    ow = rnd(w + 2 * pw - kw, sw) + 1
    out = np.empty((n, c, oh, ow), np.float32)
    for i in range(oh):
        hs = i * sh - ph
        he = min(hs + kh, h + ph)
        for j in range(ow):
            ws = j * sw - pw
            we = min(ws + kw, w + pw)
            win = x[:, :, max(hs, 0):min(he, h), max(ws, 0):min(we, w)]
            if o["type"] == "max":
                out[:, :, i, j] = win.max(axis=(2, 3))
            else:
                area = (he - hs) * (we - ws) if o["count_include_pad"] else win.shape[2] * win.shape[3]
                out[:, :, i, j] = win.sum(axis=(2, 3), dtype=np.float64) / area
    return out


def _per_channel(v, a):
    """Per-channel vector ``v`` shaped to broadcast over ``a`` (N, C[, H, W])."""
    return v.reshape((1, -1) + (1,) * (a.ndim - 2))


def _act(y, a):
    return np.maximum(y, 0) if a == "relu" else y


def _binary_conv(a, o):
    """BinaryConv2D: match counts of +-1 values padded with -1, times scale plus shift."""
    kh, kw = o["kernel"]
    cig = o["inchannels"] // o["groups"]
    w = np.transpose(unpack_bits(o["weight_bits"], cig), (0, 3, 1, 2))  # C_out, C_in/g, KH, KW
    dot = _conv(_pad(a, *o["pad"], -1.0), w, o["stride"], o["dilation"], o["groups"])
    match = (dot + cig * kh * kw) / 2                                    # exact integers
    return (o["scale"].reshape(1, -1, 1, 1) * match.astype(np.float32)
            + o["shift"].reshape(1, -1, 1, 1)).astype(np.float32)


def _binary_dense(a, o):
    """BinaryDense: match counts over the input flattened in NCHW order."""
    w = unpack_bits(o["weight_bits"], a.shape[1])                       # units, H, W, C
    w = np.transpose(w, (0, 3, 1, 2)).reshape(w.shape[0], -1)           # NCHW flatten order
    dot = a.reshape(a.shape[0], -1).astype(np.float64) @ w.T.astype(np.float64)
    match = (dot + w.shape[1]) / 2                                      # exact integers
    return (o["scale"] * match.astype(np.float32) + o["shift"]).astype(np.float32)


def _kbit_conv(a, o):
    """KbitConv2D as the schema defines it: the activation values (+-1 or L / n) padded
    with -1, the weight values (1 plane: +-1; p planes: 2 L / (2^p - 1) - 1)."""
    p = o["weightplanes"]
    L = unpack_levels(o["weight_bits"].transpose(0, 2, 3, 1, 4), o["inchannels"])
    w = (1 - 2 * L) if p == 1 else 2 * L / (2 ** p - 1) - 1   # C_out, KH, KW, C_in
    dot = _conv(_pad(a, *o["pad"], -1.0), np.transpose(w, (0, 3, 1, 2)), o["stride"],
                o["dilation"], 1)
    return (o["scale"].reshape(1, -1, 1, 1) * dot + o["shift"].reshape(1, -1, 1, 1)).astype(np.float32)


def _quantize(a, o, planes):
    """Quantize: the level L / n as a float (the value a Levels value encodes)."""
    z = a
    if o["scale"] is not None:
        z = _per_channel(o["scale"], a) * a + _per_channel(o["shift"], a)
    n = np.float32(2 ** planes - 1)
    return (round_half_away(np.clip(z, 0, 1) * n) / n).astype(np.float32)


def run_model(model, x, return_values=False):
    """Run a model file (bytes, path or :func:`read_model` dict) on NCHW float32 ``x``.

    Returns the logits, or with ``return_values`` also the list of all values: Float
    values as float32 arrays, Bits values as the +-1 float32 arrays they encode, Levels
    values as their L / (2^k - 1).
    Binary convolutions return exact integers times scale plus shift.
    """
    m = model if isinstance(model, dict) else read_model(model)
    x = np.asarray(x, np.float32)
    vals = [None] * len(m["values"])
    exp = m["values"][m["inputs"][0]]["shape"]
    if list(x.shape[1:]) != list(exp[1:]):
        raise ValueError(f"input shape {x.shape} does not match the model's {exp}")
    vals[m["inputs"][0]] = x
    for op in m["ops"]:
        t, o = op["type"], op["options"]
        ins = [vals[i] for i in op["inputs"]]
        a = ins[0] if ins else None
        if t == "Conv2D":
            y = _conv(_pad(a, *o["pad"], 0.0), o["weight"], o["stride"], o["dilation"], o["groups"])
            if o["bias"] is not None:
                y = y + o["bias"].reshape(1, -1, 1, 1)
            y = _act(y.astype(np.float32), o["activation"])
        elif t == "BinaryConv2D":
            y = _act(_binary_conv(a, o), o["activation"])
        elif t == "KbitConv2D":
            y = _act(_kbit_conv(a, o), o["activation"])
        elif t == "Quantize":
            y = _quantize(a, o, m["values"][op["outputs"][0]]["planes"])
        elif t == "BinaryDense":
            y = _act(_binary_dense(a, o), o["activation"])
        elif t == "Sign":
            z = a
            if o["scale"] is not None:
                z = _per_channel(o["scale"], a) * a + _per_channel(o["shift"], a)
            y = np.where(z < 0, -1.0, 1.0).astype(np.float32)
        elif t == "Affine":
            y = _act(_per_channel(o["scale"], a) * a + _per_channel(o["shift"], a),
                     o["activation"]).astype(np.float32)
        elif t == "Relu":
            y = np.maximum(a, 0)
        elif t == "Pool2D":
            y = _pool(a, o)
        elif t == "Concat":
            y = np.concatenate(ins, axis=1)
        elif t == "Add":
            y = ins[0] + ins[1]
        elif t == "AddToLastChannels":
            y = ins[0].copy()
            k = ins[1].shape[1]
            y[:, -k:] += ins[1]
        elif t == "ChannelShuffle":
            n, c, h, w_ = a.shape
            g = o["groups"]
            y = a.reshape(n, g, c // g, h, w_).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w_)
        elif t == "Dense":
            y = a.reshape(a.shape[0], -1).astype(np.float64) @ o["weight"].T.astype(np.float64)
            if o["bias"] is not None:
                y = y + o["bias"]
            y = y.astype(np.float32)
        elif t == "MeanAbsChannels":
            y = np.abs(a).mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
        elif t == "Mul":
            y = ins[0] * ins[1]
        elif t == "Flatten":
            y = a.reshape(a.shape[0], -1)
        else:
            raise ValueError(f"unknown op type {t}")
        vals[op["outputs"][0]] = y
    out = vals[m["outputs"][0]]
    return (out, vals) if return_values else out
