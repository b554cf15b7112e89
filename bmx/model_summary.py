"""Model summary: parameters, model size and operations by the BNN papers' rule.

Bethge et al., "Back to Simplicity" (2019) / "MeliusNet" (2020), after Rastegari et al.
(XNOR-Net, 2016) and Liu et al. (Bi-Real Net, 2018):

* model size: binary (quantized) convolution / dense weights at their bit width (1 bit),
  everything else at 32 bits: full-precision conv weights, Dense weights and bias,
  BatchNorm gamma and beta; BatchNorm running statistics (and any other parameter that is
  not trained, ``grad_req == 'null'``) are excluded. Reported in MiB (2**20 bytes);
* FLOPs: multiply-accumulates of full-precision convolutions (and of full-precision
  Dense layers other than the final classifier, which is not counted);
* BOPs: multiply-accumulates of binary (quantized) convolutions and dense layers, times
  ``bits_w * bits_a`` for k-bit layers (Zhou et al., DoReFa-Net, 2016: a k-bit product is
  computed from ``bits_w * bits_a`` binary bit-plane products; 1 for binary layers).
  ``bits_a`` is read from the layer's traced input: +-1 values are 1 bit, values on the
  ``2^k`` levels ``i / (2^k - 1)`` of [0, 1] are k bits; an XNOR-Net conv binarizes its
  real input itself (1 bit); any other input is counted as 1 bit and flagged
  (``LayerRow.act_bits`` is None);
* OPs = FLOPs + BOPs / 64.

:func:`summary` traces a real forward pass with forward hooks on every block that owns
parameters or has no children; layers are recognised by their class
(``nn.Conv2D`` / :class:`bmx.nn.QConv2D`, ``nn.Dense`` / :class:`bmx.nn.QDense`), never by
their names. Counts are per sample (independent of the batch size of ``input_shape``).
"""
from ._mxnet import mx
import numpy as np
from mxnet.gluon import nn

from .nn.layers import QConv2D, QDense

__all__ = ["summary", "ModelSummary", "LayerRow"]

MIB = 2 ** 20


class LayerRow:
    """One traced layer call.

    Attributes
    ----------
    name, kind : str
        Gluon block name and class name.
    output_shape : tuple
    weight_bits : int or None
        Bits of the weight (1 for binary convs, 32 for float layers, None without weight).
    params : int
        Trained parameters owned by the layer (0 on repeated calls of a shared block).
    binary_params, fp_params : int
        Of ``params``: those stored below 32 bits, those stored at 32 bits.
    size_bits : int
        Storage of ``params`` in bits.
    macs : int
        Multiply-accumulates per sample (conv / dense only).
    binary : bool
        The MACs are binary operations (quantized weights).
    act_bits : int or None
        Activation bits of a quantized layer, read from its traced input (None: not a
        quantized layer, or an input on no k-bit grid).
    counted_flops, counted_bops : int
        What this row contributes to the totals (the classifier's MACs are not counted).
    """

    __slots__ = ("name", "kind", "output_shape", "weight_bits", "params", "binary_params",
                 "fp_params", "size_bits", "macs", "binary", "act_bits", "counted_flops",
                 "counted_bops")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k, 0))

    def as_dict(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __repr__(self):
        return f"LayerRow({self.name}, {self.kind}, out={self.output_shape}, macs={self.macs})"


class ModelSummary:
    """Result of :func:`summary`; ``str()`` renders a Larq-style table.

    Attributes
    ----------
    rows : list of LayerRow
    input_shape : tuple
    binary_params, fp_params, total_params : int
    model_size_bytes : float
    model_size_mib : float
    flops, bops : int
        Per sample, by the papers' rule (see module docstring).
    ops : float
        ``flops + bops / 64``.
    classifier_macs : int
        MACs of the final Dense (reported, not counted).
    """

    def __init__(self, rows, input_shape, name="", prefix=""):
        self.rows = rows
        self.prefix = prefix
        self.input_shape = tuple(input_shape)
        self.name = name
        self.binary_params = sum(r.binary_params for r in rows)
        self.fp_params = sum(r.fp_params for r in rows)
        self.total_params = self.binary_params + self.fp_params
        size_bits = sum(r.size_bits for r in rows)
        self.model_size_bytes = size_bits / 8
        self.model_size_mib = size_bits / 8 / MIB
        self.flops = int(sum(r.counted_flops for r in rows))
        self.bops = int(sum(r.counted_bops for r in rows))
        self.ops = self.flops + self.bops / 64
        self.classifier_macs = int(sum(r.macs for r in rows
                                       if r.macs and not r.counted_flops and not r.counted_bops))

    def as_dict(self):
        return {"name": self.name, "input_shape": self.input_shape,
                "binary_params": self.binary_params, "fp_params": self.fp_params,
                "total_params": self.total_params, "model_size_mib": self.model_size_mib,
                "flops": self.flops, "bops": self.bops, "ops": self.ops}

    def __repr__(self):
        return (f"ModelSummary({self.name or 'net'}: {self.model_size_mib:.2f} MiB, "
                f"{self.flops:.3g} FLOPs, {self.bops:.3g} BOPs, {self.ops:.3g} OPs)")

    def __str__(self):
        head = ("Layer", "Output shape", "W bits", "Params", "Binary MACs", "FP MACs")
        body = []
        root = self.prefix
        for r in self.rows:
            name = r.name[len(root):] if root and r.name.startswith(root) else r.name
            body.append((f"{name} ({r.kind})", "x".join(str(d) for d in r.output_shape[1:]) or "-",
                         "-" if r.weight_bits is None else str(r.weight_bits),
                         f"{r.params:,}" if r.params else "0",
                         _fmt_macs(r) if r.binary else "0",
                         "0" if r.binary else _fmt_macs(r)))
        widths = [max(len(head[i]), *(len(b[i]) for b in body)) if body else len(head[i])
                  for i in range(len(head))]

        def line(cells):
            return "| " + " | ".join(c.ljust(w) if i < 2 else c.rjust(w)
                                     for i, (c, w) in enumerate(zip(cells, widths))) + " |"
        sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
        out = [f"{self.name or 'model'} summary, input {self.input_shape}", sep, line(head),
               sep.replace("-", "=")]
        out += [line(b) for b in body]
        out.append(sep)
        out += [
            f"Total params:       {self.total_params:,}",
            f"  binary params:    {self.binary_params:,} "
            f"({self.model_size_mib - self.fp_params * 4 / MIB:.2f} MiB)",
            f"  fp params:        {self.fp_params:,} "
            f"({self.fp_params * 4 / MIB:.2f} MiB at 32 bit)",
            f"Model size:         {self.model_size_mib:.2f} MiB "
            f"({self.model_size_bytes:,.0f} bytes)",
            f"FLOPs (fp MACs):    {self.flops:.3e}",
            f"BOPs (binary MACs x bits_w x bits_a): {self.bops:.3e}",
            f"OPs = FLOPs + BOPs/64: {self.ops:.3e}",
            f"(MACs in parentheses, the classifier's {self.classifier_macs:,}, are not "
            "counted; BN running statistics are excluded from the size)",
        ]
        return "\n".join(out)


def _fmt_macs(r):
    if not r.macs:
        return "0"
    counted = r.counted_flops or r.counted_bops
    return f"{r.macs:,}" if counted else f"({r.macs:,})"


def _walk(block):
    yield block
    for c in block._children.values():
        yield from _walk(c)


def _first_array(out):
    while isinstance(out, (list, tuple)):
        if not out:
            return None
        out = out[0]
    return out


def _activation_bits(x, max_bits=8):
    """Bits of a quantized layer's input: 1 for +-1 values, k for values on the 2^k levels
    i / (2^k - 1) of [0, 1] (the smallest such k), None for anything else."""
    v = np.unique(x.asnumpy())
    if v.size and np.isin(v, (-1.0, 1.0)).all():
        return 1
    if v.size == 0 or v.min() < 0 or v.max() > 1:
        return None
    for k in range(1, max_bits + 1):
        n = 2 ** k - 1
        if np.abs(v * n - np.round(v * n)).max() <= 1e-4:  # float32 levels: ~1e-7 off
            return k
    return None


def _param_counts(block, wbits):
    """(params, binary params, fp params, storage bits) of the block's trained parameters:
    the weight at ``wbits``, everything else at 32 bits; BN running statistics excluded."""
    params = binp = fpp = size = 0
    for pname, p in block._reg_params.items():
        if p.grad_req == "null":
            continue  # BN running statistics, fixed gamma: not stored weights
        n = int(np.prod(p.shape))
        bits = wbits if (pname == "weight" and wbits is not None) else 32
        params += n
        size += n * bits
        if bits < 32:
            binp += n
        else:
            fpp += n
    return params, binp, fpp, size


def _layer_row(b, y, x_in, first, counted):
    """The :class:`LayerRow` of one traced call: ``first`` call of the block (its
    parameters count), ``counted``: its MACs count (False for the final classifier)."""
    shape = tuple(y.shape) if y is not None and hasattr(y, "shape") else ()
    wbits = _weight_bits(b) if "weight" in b._reg_params else None
    params, binp, fpp, size = _param_counts(b, wbits) if first else (0, 0, 0, 0)
    macs = 0
    if isinstance(b, nn.Conv2D) and shape:
        w = b.weight.shape  # (O, C/groups, kh, kw)
        macs = int(np.prod(shape[1:])) * int(np.prod(w[1:]))
    elif isinstance(b, nn.Dense) and shape:
        w = b.weight.shape  # (units, in_units)
        macs = int(np.prod(shape[1:])) * int(w[1])
    binary = bool(macs) and wbits is not None and wbits < 32
    abits = None
    if binary:
        abits = 1 if getattr(b, "scaling", None) == "xnor" else _activation_bits(x_in)
    flops = bops = 0
    if macs and counted:
        if binary:
            bops = macs * wbits * (abits or 1)
        else:
            flops = macs
    return LayerRow(name=b.name, kind=type(b).__name__, output_shape=shape, weight_bits=wbits,
                    params=params, binary_params=binp, fp_params=fpp, size_bits=size, macs=macs,
                    binary=binary, act_bits=abits, counted_flops=flops, counted_bops=bops)


def _weight_bits(block):
    if isinstance(block, (QConv2D, QDense)):
        return int(block.bits)
    return 32


def _ensure_initialized(net, ctx):
    from .model_zoo.common import default_initializer
    for p in net.collect_params().values():
        if p._data is None and not p._deferred_init:
            p.initialize(default_init=default_initializer(), ctx=ctx)


def summary(net, input_shape=(1, 3, 224, 224), ctx=None, dtype="float32"):
    """Trace ``net`` on a random input and count parameters, size and operations.

    Bethge et al., "Back to Simplicity" (2019): binary weights count 1 bit (k-bit weights k
    bits), everything else 32 bits (BN gamma/beta included, running statistics excluded);
    FLOPs = full-precision conv MACs (final Dense not counted), BOPs = binary MACs (times
    bits_w * bits_a for k-bit layers, see the module docstring), OPs = FLOPs + BOPs / 64.

    Parameters
    ----------
    net : mxnet.gluon.Block
        Any Gluon network. Parameters that were never initialized are initialized with
        He-normal (the zoo's default); initialized ones are left alone. A hybridized net
        is traced imperatively (its cached graph is kept).
    input_shape : tuple
        Shape of the traced input (counts are per sample).
    ctx : mxnet.Context, optional
    dtype : str

    Returns
    -------
    ModelSummary
    """
    ctx = ctx or mx.cpu()
    _ensure_initialized(net, ctx)
    blocks = list(_walk(net))
    calls = []
    handles = []
    for b in blocks:
        if b._reg_params or not b._children:
            handles.append(b.register_forward_hook(
                lambda blk, inp, out: calls.append((blk, _first_array(out), _first_array(inp)))))
    active = {id(b): b._active for b in blocks if isinstance(b, nn.HybridBlock)}
    try:
        for b in blocks:
            if isinstance(b, nn.HybridBlock):
                b._active = False  # run imperatively so that the children's hooks fire
        x = mx.nd.random.normal(shape=tuple(input_shape), ctx=ctx, dtype=dtype)
        with mx.autograd.pause():
            out = net(x)
        mx.nd.waitall()
    finally:
        for h in handles:
            h.detach()
        for b in blocks:
            if id(b) in active:
                b._active = active[id(b)]
    del out

    dense_calls = [i for i, (b, _, _) in enumerate(calls) if isinstance(b, nn.Dense)]
    classifier = dense_calls[-1] if dense_calls else None
    seen = set()
    rows = []
    for i, (b, y, x_in) in enumerate(calls):
        rows.append(_layer_row(b, y, x_in, first=id(b) not in seen, counted=i != classifier))
        seen.add(id(b))  # a shared block's parameters count once
    return ModelSummary(rows, input_shape, name=getattr(net, "model_name", "") or net.name,
                        prefix=net.prefix)
