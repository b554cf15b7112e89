"""IR passes: small named rewrites and checks of the :class:`~.ir._IR`, run in the order
of :data:`PASSES` (the style of the Larq Compute Engine converter: one list of passes).

Each rewrite replaces ops by ops that compute the same function (up to float rounding
where BatchNorm is folded); the checks refuse graphs the model format cannot express.
"""
import numpy as np

from .errors import ConversionError


def prune(ir):
    """Drop the ops the output does not depend on (the input always stays).

    Exact: an op from which no path leads to the output cannot change it. Needed after
    the rewrites below, which leave the ops they bypass behind.
    """
    live, stack = set(), [ir.output]
    while stack:
        k = stack.pop()
        if k in live:
            continue
        live.add(k)
        stack.extend(ir.ops[k].inputs)
    live.add(ir.input)
    ir.order = [k for k in ir.order if k in live]
    ir.ops = {k: ir.ops[k] for k in ir.order}


def reshape_to_flatten(ir):
    """reshape (N, C, 1, 1) -> (N, C)  ==>  flatten.

    Exact: with unit spatial dimensions the C order of both is the channel order.
    """
    for k in ir.order:
        op = ir.ops[k]
        if op.kind != "reshape":
            continue
        src_shape = op.attrs["in_shape"]
        if len(op.shape) == 2 and len(src_shape) == 4 and src_shape[2:] == (1, 1) \
                and op.shape[1] == src_shape[1]:
            op.kind = "flatten"


def fuse_channel_shuffle(ir):
    """reshape (N, C, H, W) -> (N, g, C/g, H, W), transpose (0, 2, 1, 3, 4), reshape back
    to (N, C, H, W)  ==>  ChannelShuffle(groups=g) on the first reshape's input.

    Exact: that sequence moves channel ``i * C/g + j`` to ``j * g + i``, which is the
    definition of the ChannelShuffle op; each step must be the only reader of the one
    before, so no intermediate value is needed elsewhere.
    """
    cons = ir.consumers()
    for k in list(ir.order):
        op = ir.ops.get(k)
        if op is None or op.kind != "reshape":
            continue
        src_shape = op.attrs["in_shape"]
        t = ir.sole_consumer(k, cons)
        if (len(src_shape) != 4 or len(op.shape) != 5 or t is None
                or ir.ops[t].kind != "transpose"
                or ir.ops[t].attrs["axes"] != (0, 2, 1, 3, 4)):
            continue
        r2 = ir.sole_consumer(t, cons)
        if r2 is None or ir.ops[r2].kind != "reshape" or ir.ops[r2].shape != src_shape:
            continue
        n_, c, h, w = src_shape
        gsz = op.shape[1]
        if op.shape != (n_, gsz, c // gsz, h, w) or gsz * (c // gsz) != c:
            continue
        shuf = ir.ops[r2]
        shuf.kind = "shuffle"
        shuf.attrs = {"groups": gsz}
        shuf.inputs = list(op.inputs)
        cons = ir.consumers()


def fuse_add_to_last_channels(ir):
    """MeliusNet's improvement block, concat(slice(x, 0, C-k), slice(x, C-k, C) + y)
    along channels  ==>  AddToLastChannels(x, y).

    Exact: both compute x with y added to its last k channels; the slices must cover x's
    channels in order and y must have the second slice's shape.
    """
    for k in list(ir.order):
        op = ir.ops.get(k)
        if op is None or op.kind != "concat" or len(op.inputs) != 2:
            continue
        s0, ad = ir.ops[op.inputs[0]], ir.ops[op.inputs[1]]
        if s0.kind != "slice" or ad.kind != "add" or s0.attrs["axis"] != 1:
            continue
        x = s0.inputs[0]
        C = s0.attrs["in_shape"][1]
        for j in (0, 1):
            s1, y = ir.ops[ad.inputs[j]], ad.inputs[1 - j]
            if (s1.kind == "slice" and s1.inputs[0] == x and s1.attrs["axis"] == 1
                    and s0.attrs["begin"] == 0 and s0.attrs["end"] == s1.attrs["begin"]
                    and s1.attrs["end"] == C and ir.ops[y].shape == s1.shape):
                op.kind = "add_last"
                op.inputs = [x, y]
                break



def reject_layout_ops(ir):
    """Refuse the slice, reshape and transpose ops no pattern above matched: the format
    has no general forms of them."""
    for k in ir.order:
        op = ir.ops[k]
        if op.kind in ("slice", "reshape", "transpose"):
            raise ConversionError(f"unsupported use of {op.kind} ({op.name!r}): only channel "
                                  "shuffle, flatten and MeliusNet's add-to-last-channels "
                                  "patterns are supported")


def fold_affine_and_relu(ir):
    """Fold BatchNorm (``affine``) and ReLU into their neighbours, to a fixed point.

    One pass, not three: the rules are tried op by op in topological order, the first
    that applies is taken and the scan restarts, so a BatchNorm between a conv and a
    sign goes into the conv (the earlier op) as it always has. The rules:
    :func:`_fold_affine_into_sign`, :func:`_fold_affine_into_conv`, :func:`_fuse_relu`.
    """
    while _fold_once(ir):
        pass


def _fold_once(ir):
    """Apply the first applicable fold rule; False when none applies."""
    cons = ir.consumers()
    for k in list(ir.order):
        op = ir.ops.get(k)
        if op is None:
            continue
        if _fold_affine_into_sign(ir, op):
            return True
        nxt = ir.sole_consumer(k, cons)
        if nxt is None:
            continue
        if _fold_affine_into_conv(ir, k, op, nxt) or _fuse_relu(ir, k, op, nxt):
            return True
    return False


def _fold_affine_into_sign(ir, op):
    """affine -> sign or quant  ==>  sign (quant) with per-channel scale and shift.

    Exact up to rounding: sign(scale * x + shift) and round(clip(scale * x + shift, 0, 1)
    * n) are what the Sign and Quantize ops compute with their own scale and shift, so the
    affine's values are copied. The affine stays for its other readers (:func:`prune`
    drops it when there are none).
    """
    if op.kind not in ("sign", "quant") or op.attrs["scale"] is not None:
        return False
    src = ir.ops[op.inputs[0]]
    if src.kind != "affine" or src.attrs["activation"] is not None:
        return False
    op.attrs["scale"] = src.attrs["scale"].copy()
    op.attrs["shift"] = src.attrs["shift"].copy()
    op.inputs = list(src.inputs)
    return True


def _fold_affine_into_conv(ir, k, op, nxt):
    """conv, bconv, kconv or bdense -> affine (its only reader)  ==>  the op with the affine
    folded in.

    Exact up to rounding: an affine map per output channel of a convolution is a
    convolution with scaled weights and an affine bias (float conv: W * s, b * s + t),
    and for a binary or k-bit conv or a dense layer composes with its scale/shift of the
    match count or dot product (s * scale, s * shift + t). None may carry a ReLU, which does not commute with the map.
    """
    nop = ir.ops[nxt]
    if not (nop.kind == "affine" and op.kind in ("conv", "bconv", "kconv", "bdense")
            and op.attrs["activation"] is None and nop.attrs["activation"] is None):
        return False
    s, t = nop.attrs["scale"], nop.attrs["shift"]
    if op.kind == "conv":  # BN into float conv weights and bias
        W = op.attrs["W"].astype(np.float64) * s.reshape(-1, 1, 1, 1)
        b = op.attrs["b"].astype(np.float64) if op.attrs["b"] is not None else 0.0
        op.attrs["W"] = W.astype(np.float32)
        op.attrs["b"] = (b * s + t).astype(np.float32)
    else:  # BN into binary conv / dense scale/shift (with the (conv+K)/2 offset)
        op.attrs["scale"] = op.attrs["scale"] * s
        op.attrs["shift"] = op.attrs["shift"] * s + t
    op.shape = nop.shape
    ir.replace(nxt, k)
    return True


def _fuse_relu(ir, k, op, nxt):
    """conv, bconv, kconv, bdense or affine -> relu (its only reader)  ==>  the op with
    activation relu.

    Exact: the op applies ReLU to its own result, which is what the relu op read.
    """
    nop = ir.ops[nxt]
    if not (nop.kind == "relu" and op.kind in ("conv", "bconv", "kconv", "bdense", "affine")
            and op.attrs["activation"] is None):
        return False
    op.attrs["activation"] = "relu"
    ir.replace(nxt, k)
    return True


def check(ir):
    """Refuse what the format cannot run: bits or k-bit levels read by anything but the
    ops that read them, those ops reading real values, non-finite weights or BatchNorm
    folds (an untrained or diverged model), a binarized or quantized network output."""
    for k in ir.order:
        op = ir.ops[k]
        _check_bit_inputs(ir, op)
        _check_finite(op)
    if ir.ops[ir.output].kind in ("sign", "quant"):
        raise ConversionError("the network output is a binarized or quantized value")


#: op kind -> the kinds of packed inputs it reads
_PACKED_READERS = {"bconv": ("sign",), "bdense": ("sign",), "kconv": ("sign", "quant")}


def _check_bit_inputs(ir, op):
    what = {"bconv": "binary conv", "bdense": "binary dense layer", "kconv": "k-bit conv"}
    for i in op.inputs:
        src = ir.ops[i]
        packed = src.kind in ("sign", "quant")
        if op.kind in _PACKED_READERS and src.kind not in _PACKED_READERS[op.kind]:
            if src.kind == "quant":
                raise ConversionError(f"k-bit activations {src.name!r} feed {what[op.kind]} "
                                      f"{op.name!r}: only k-bit convolutions read them (k-bit "
                                      "dense layers are not supported)")
            raise ConversionError(f"{what[op.kind]} {op.name!r} gets a real-valued input "
                                  f"from {src.name!r} ({src.kind}); it needs a sign "
                                  "(QActivation) before it")
        if packed and op.kind not in _PACKED_READERS:
            kind = "binarized" if src.kind == "sign" else "k-bit quantized"
            raise ConversionError(f"{kind} value {src.name!r} feeds {op.name!r} "
                                  f"({op.kind}); only binary and k-bit convolutions and "
                                  "binary dense layers read it")
        if src.kind == "quant" and len(src.shape) != 4:
            raise ConversionError(f"k-bit activations {src.name!r} of shape {src.shape}: "
                                  "only 4-D (N, C, H, W) values can be quantized")


def _check_finite(op):
    for key in ("W", "b", "scale", "shift"):
        v = op.attrs.get(key)
        if v is not None and not np.all(np.isfinite(np.asarray(v, np.float32))):
            what = {"W": "weights", "b": "bias"}.get(key, key)
            raise ConversionError(f"{op.name!r}: its {what} (after folding BatchNorm) "
                                  "contain NaN or infinity; is the model trained?")


#: the passes, in the order they run (rewrites first, then the checks)
PASSES = [
    reshape_to_flatten,
    fuse_channel_shuffle,
    fuse_add_to_last_channels,
    prune,
    reject_layout_ops,
    fold_affine_and_relu,
    prune,
    check,
]


def run_passes(ir):
    """Run :data:`PASSES` on ``ir`` in order; returns ``ir``."""
    for p in PASSES:
        p(ir)
    return ir
