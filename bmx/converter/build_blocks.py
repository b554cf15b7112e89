"""Build stage, quantized blocks: one IR op per :mod:`bmx.nn` QActivation / QConv2D /
QDense group of nodes.

Nothing is inferred from the op sequence alone: each block's subgraph is run in MXNet
(:meth:`~.graph._Graph.eval_subgraph`) on probe inputs and on its real weights, and must
compute sign(x) (activations), sign(W) times one positive constant (weights) and an
affine map per channel of the convolution (outputs), or the block is refused.
"""
import numpy as np

from .._cli import first_line as _first_line
from .errors import ConversionError
from .graph import _node_attrs, _pair
from . import build_kbit as kbit
from .ir import _Op


def _sign_np(x):
    return np.where(x < 0, -1.0, 1.0).astype(np.float32)


def _ancestors(g, nid, members, include_self=True):
    """``nid`` and the members it depends on, within ``members``."""
    res, stack = set(), [nid]
    while stack:
        i = stack.pop()
        if i in res or i not in members:
            continue
        res.add(i)
        for s in g.nodes[i]["inputs"]:
            stack.append(s[0])
    if not include_self:
        res.discard(nid)
    return res


def _ancestors_stop(g, nid, members, stop):
    """As :func:`_ancestors`, the traversal stopping at (and excluding) ``stop``."""
    res, stack = set(), [nid]
    while stack:
        i = stack.pop()
        if i in res or i not in members or i == stop:
            continue
        res.add(i)
        for s in g.nodes[i]["inputs"]:
            stack.append(s[0])
    return res


def _param_feeds(g, members, fail, skip=()):
    """The stored parameters the members read from outside (other than from ``skip``), as
    eval feeds; ``fail()`` is the ConversionError to raise for any other outside input."""
    feeds = {}
    for i in sorted(members):
        for s in g.nodes[i]["inputs"]:
            if s[0] in members or s[0] in skip:
                continue
            if not g.is_param(s[0]):
                raise fail()
            feeds[(s[0], s[1])] = g.params[g.nodes[s[0]]["name"]]
    return feeds


# -- QActivation, QDense ------------------------------------------------------------------

def _group_qact(builder, prefix, block, members, ext, out):
    """sign(x) -> ``sign``; round(clip(x, 0, 1) * n) / n with n = 2^k - 1 -> ``quant``."""
    g = builder.g
    name = prefix.rstrip("_")
    data = [e for e in ext if not g.is_param(e[0])]
    if len(data) != 1 or len(ext) != 1:
        raise ConversionError(f"QActivation {name!r}: expected one input, found "
                              f"{[g.nodes[e[0]]['name'] for e in ext]}")
    shp = g.shape(*data[0])
    # elementwise: a small spatial probe suffices
    pshape = (1,) + tuple(shp[1:2]) + tuple(min(d, 3) for d in shp[2:])
    if block is None or block.bits == 1:
        probe = np.random.RandomState(0).randn(*pshape).astype(np.float32)
        flat = probe.reshape(-1)
        special = np.array([0.0, -0.0, 1e-38, -1e-38, 1e-45, -1e-45, 0.5, -0.5, 3, -3],
                           np.float32)
        flat[:min(flat.size, special.size)] = special[:flat.size]
        got = g.eval_subgraph(members, {data[0]: probe}, (out, 0))
        if np.array_equal(got, _sign_np(probe)):
            return _Op("sign", name, [builder.ref(data[0])], g.shape(out), scale=None, shift=None)
    probe = kbit.kbit_probe(pshape)
    got = g.eval_subgraph(members, {data[0]: probe}, (out, 0))
    options = (block.bits,) if block is not None else range(2, kbit.MAX_PLANES + 1)
    bits = kbit.match_activation_bits(got, probe, options)
    if bits is None:
        raise ConversionError(f"QActivation {name!r} computes neither sign(x) with sign(0)=+1 "
                              "nor the k-bit quantizer round(clip(x, 0, 1) * (2^k - 1)) / "
                              "(2^k - 1); cannot convert")
    return kbit.quant_op(builder, name, data[0], g.shape(out), bits)


def _group_qdense(builder, prefix, block, members, ext, out):
    """A binary dense layer -> ``bdense``: FullyConnected(sign(W)) -> affine per unit ->
    [ReLU], rewritten on the match count of the xnor-popcount over the flattened input."""
    g = builder.g
    name = prefix.rstrip("_")
    if block is not None and block.bits != 1:
        raise ConversionError(f"QDense {name!r} has {block.bits}-bit weights: only 1-bit "
                              "weights can be bit-packed")
    fcs = [i for i in members if g.nodes[i]["op"] == "FullyConnected"]
    if len(fcs) != 1:
        raise ConversionError(f"QDense {name!r}: expected one FullyConnected, found {len(fcs)}")
    fi = fcs[0]
    fn = g.nodes[fi]
    units = int(_node_attrs(fn)["num_hidden"])
    data = fn["inputs"][0]
    if data[0] in members or g.is_param(data[0]):
        raise ConversionError(f"QDense {name!r}: unsupported input transform")
    in_shape = tuple(g.shape(data[0], data[1]))
    flatten = str(_node_attrs(fn).get("flatten", True)) not in ("False", "0", "false")
    if len(in_shape) not in (2, 4) or (not flatten and len(in_shape) != 2):
        raise ConversionError(f"QDense {name!r}: input of shape {in_shape} (binary dense layers "
                              "read [N, C] or, flattened, [N, C, H, W])")
    offset = _qconv_offset(g, name, fn, members, units)
    W, w_scale = _qconv_weight(g, name, fn, members, ext, units, ndim=2)
    activation, post_out = _qconv_activation(g, name, fi, out)
    a_c, b_c = _qconv_affine(g, name, fi, post_out, members, units, shp=(1, units))
    K = int(np.prod(in_shape[1:]))
    if W.shape[1] != K:
        raise ConversionError(f"QDense {name!r}: weight {W.shape} for an input of {K} features")
    scale, shift = _match_scale_shift(a_c, b_c, w_scale, offset, K)
    in_chw = tuple(in_shape[1:]) + (1, 1) * (len(in_shape) == 2)
    return _Op("bdense", name, [builder.ref(data)], g.shape(out), W=W, units=units,
               in_chw=in_chw, scale=scale, shift=shift, activation=activation)


# -- QConv2D ------------------------------------------------------------------------------

def _group_qconv(builder, prefix, block, members, ext, out):
    """A binary convolution -> ``bconv``: [Pad(-1)] -> Convolution(sign(W)) -> affine per
    channel -> [ReLU], rewritten on the match count of the xnor-popcount. One that reads
    k-bit activations or has k-bit weights -> ``kconv`` (:func:`_lower_kconv`)."""
    g = builder.g
    name = prefix.rstrip("_")
    if block is not None and block.scaling == "xnor":
        _check_qconv_block(name, block)
        return _group_qconv_xnor(builder, name, block, members, ext, out)
    ci, kernel, stride, dilation, groups, cout = _qconv_geometry(g, name, members)
    cn = g.nodes[ci]
    data, pad = _qconv_input(g, name, cn, members)
    kbit_input = builder.ops[builder.ref(data)].kind == "quant"
    if kbit_input or (block is not None and block.bits != 1) or (
            block is None and not _is_sign_weight(g, name, cn, members, ext, cout)):
        return _lower_kconv(builder, name, block, members, ext, out, ci, data,
                            (kernel, stride, pad, dilation, groups, cout))
    conv_bias = _qconv_offset(g, name, cn, members, cout)
    W, w_scale = _qconv_weight(g, name, cn, members, ext, cout)
    activation, post_out = _qconv_activation(g, name, ci, out)
    cshape = g.shape(ci)
    a_c, b_c = _qconv_affine(g, name, ci, post_out, members, cout)
    cin = W.shape[1] * groups
    K = W.shape[1] * kernel[0] * kernel[1]
    scale, shift = _match_scale_shift(a_c, b_c, w_scale, conv_bias, K)
    return _Op("bconv", name, [builder.ref(data)], g.shape(out), W=W, cin=cin, cout=cout,
               kernel=kernel, stride=stride, pad=pad, dilation=dilation, groups=groups,
               scale=scale, shift=shift, activation=activation, conv_shape=cshape)


def _is_sign_weight(g, name, cn, members, ext, cout):
    """Whether the weight path computes c * sign(W) (an exported graph says no more)."""
    try:
        _qconv_weight(g, name, cn, members, ext, cout)
    except ConversionError:
        return False
    return True


def _lower_kconv(builder, name, block, members, ext, out, ci, data, geometry):
    """A k-bit convolution -> ``kconv``: y = scale * dot + shift per channel with dot the
    convolution of the activation values (+-1 or L / n, padded with -1) and the weight
    values (+-1 or DoReFa's 2 L / n - 1)."""
    g = builder.g
    cn = g.nodes[ci]
    cout = geometry[-1]
    bits = block.bits if block is not None else None
    if bits in (None, 1) and _is_sign_weight(g, name, cn, members, ext, cout):
        W, w_scale = _qconv_weight(g, name, cn, members, ext, cout)
        levels, planes = (W < 0).astype(np.int64), 1
    else:
        W, wq = _qconv_weight_values(g, name, cn, members, ext, cout)
        options = (bits,) if bits is not None else range(2, kbit.MAX_PLANES + 1)
        (levels, planes), w_scale = kbit.weight_levels(name, W, wq, options), 1.0
    conv_bias = _qconv_offset(g, name, cn, members, cout, stored_ok=planes > 1)
    activation, post_out = _qconv_activation(g, name, ci, out)
    a_c, b_c = _qconv_affine(g, name, ci, post_out, members, cout)
    a64 = a_c.astype(np.float64)
    scale, shift = a64 * w_scale, a64 * conv_bias + b_c.astype(np.float64)
    return kbit.kconv_op(builder, name, data, g.shape(out), geometry, levels, planes, scale,
                         shift, activation)


def _group_qconv_xnor(builder, name, block, members, ext, out):
    """An XNOR-Net convolution (``scaling='xnor'``; Rastegari et al., 2016) -> five ops:
    ``sign(x) -> bconv`` giving ``dot * alpha`` (alpha = mean|W| per output channel),
    ``meanabs(x) -> avg pool`` over the conv's windows giving the input scale K per
    position, and their product (``mul``), then the block's ReLU if any. What the block
    computes is checked against that decomposition on a probe input and the real weights.
    Returns ``[(IR id, op), ...]`` ending with the block's output."""
    g = builder.g
    ci, kernel, stride, _, groups, cout = _qconv_geometry(g, name, members)
    data = [e for e in ext if not g.is_param(e[0])]
    if len(data) != 1:
        raise ConversionError(f"XNOR conv {name!r}: expected one data input")
    x_shape = tuple(g.shape(*data[0]))
    W, _ = _qconv_weight(g, name, g.nodes[ci], members, ext, cout)
    activation, _ = _qconv_activation(g, name, ci, out)
    pad = block._qpad
    alpha = np.abs(W.astype(np.float64)).mean(axis=(1, 2, 3))
    K = W.shape[1] * kernel[0] * kernel[1]
    scale, shift = _match_scale_shift(alpha, np.zeros(cout), 1.0, np.zeros(cout), K)
    conv_shape, y_shape = tuple(g.shape(ci)), tuple(g.shape(out))
    k_shape = (x_shape[0], 1) + conv_shape[2:]
    _check_xnor(g, name, members, ext, data[0], W, out, pad, stride, groups, activation)
    xref = builder.ref(data[0])
    ids = [f"{out}:{s}" for s in ("sign", "bconv", "meanabs", "scale", "mul")]
    ops = [
        _Op("sign", f"{name}_sign", [xref], x_shape, scale=None, shift=None),
        _Op("bconv", name, [ids[0]], conv_shape, W=W, cin=x_shape[1], cout=cout, kernel=kernel,
            stride=stride, pad=pad, dilation=(1, 1), groups=groups, scale=scale, shift=shift,
            activation=None, conv_shape=conv_shape),
        _Op("meanabs", f"{name}_meanabs", [xref], (x_shape[0], 1) + x_shape[2:]),
        _Op("pool", f"{name}_input_scale", [ids[2]], k_shape, type="avg", kernel=kernel,
            stride=stride, pad=pad, count_include_pad=True, glob=False, ceil_mode=False),
        _Op("mul", f"{name}_mul", [ids[1], ids[3]], y_shape),
    ]
    if activation:
        ops.append(_Op("relu", f"{name}_relu", [ids[4]], y_shape))
        ids.append(out)
    else:
        ids[-1] = out
    return list(zip(ids, ops))


def _check_xnor(g, name, members, ext, data, W, out, pad, stride, groups, activation):
    """The block's output on a probe input equals the XNOR decomposition computed in numpy
    (the model file's semantics: :mod:`bmx.modelfile.interpreter`), to float rounding."""
    from ..modelfile import interpreter as fi
    shp = (1,) + tuple(g.shape(*data))[1:]
    probe = np.random.RandomState(2).randn(*shp).astype(np.float32)
    feeds = {e: (probe if e == data else g.params[g.nodes[e[0]]["name"]]) for e in ext}
    try:
        got = g.eval_subgraph(members, feeds, (out, 0)).astype(np.float64)
    except Exception as e:
        raise ConversionError(f"XNOR conv {name!r}: cannot evaluate it ({_first_line(e)})") from None
    xs = np.pad(_sign_np(probe), ((0, 0), (0, 0), (pad[0],) * 2, (pad[1],) * 2), constant_values=-1)
    dot = fi._conv(xs, _sign_np(W), stride, (1, 1), groups)
    a = np.abs(probe).mean(axis=1, keepdims=True)
    k = fi._pool(a, {"global": False, "type": "avg", "kernel": W.shape[2:], "stride": stride,
                     "pad": pad, "count_include_pad": True, "ceil_mode": False})
    want = dot * np.abs(W.astype(np.float64)).mean(axis=(1, 2, 3)).reshape(1, -1, 1, 1) * k
    if activation:
        want = np.maximum(want, 0)
    # float32 products and means in MXNet against float64 here: ~1e-7 relative
    if got.shape != want.shape or np.abs(got - want).max() > 1e-5 * max(np.abs(want).max(), 1e-30):
        raise ConversionError(f"XNOR conv {name!r} does not compute sign(x) * sign(W) * mean|W| "
                              "* K(x) as XNOR-Net defines it; cannot convert")


def _match_scale_shift(a_c, b_c, w_scale, conv_bias, K):
    """The per-channel scale and shift of the match count (float64).

    conv = w_scale*dot + conv_bias, y = a*conv + b, dot = 2*match - K
      ->  y = 2*a'*match + (b' - a'*K) with a' = a*w_scale, b' = a*conv_bias + b
    """
    a64 = a_c.astype(np.float64)
    a_dot = a64 * w_scale
    b_dot = a64 * conv_bias + b_c.astype(np.float64)
    scale = 2.0 * a_dot
    shift = b_dot - a_dot * K
    return scale, shift


def _check_qconv_block(name, block):
    """Refuse what the block object says cannot be packed (XNOR scaling of k-bit weights)."""
    if block is not None and block.bits != 1:
        raise ConversionError(f"QConv2D {name!r}: XNOR scaling of {block.bits}-bit weights "
                              "is not supported (1-bit weights only)")


def _qconv_geometry(g, name, members):
    """The group's one Convolution node and its kernel, stride, dilation, groups, C_out."""
    convs = [i for i in members if g.nodes[i]["op"] == "Convolution"]
    if len(convs) != 1:
        raise ConversionError(f"QConv2D {name!r}: expected one Convolution, found {len(convs)}")
    ci = convs[0]
    a = _node_attrs(g.nodes[ci])
    if a.get("layout", "NCHW") not in (None, "NCHW"):
        raise ConversionError(f"QConv2D {name!r}: layout {a.get('layout')} is not supported")
    if _pair(a.get("pad"), (0, 0)) != (0, 0):
        raise ConversionError(f"binary conv {name!r} uses zero padding inside Convolution; "
                              "binary convolutions must pad with -1 (QConv2D does)")
    kernel = _pair(a.get("kernel"), (1, 1))
    stride = _pair(a.get("stride"), (1, 1))
    dilation = _pair(a.get("dilate"), (1, 1))
    groups = int(a.get("num_group", 1))
    cout = int(a["num_filter"])
    return ci, kernel, stride, dilation, groups, cout


def _qconv_offset(g, name, cn, members, cout, stored_ok=False):
    """The bias input of a binary Convolution, as float64 (cout,): zeros when there is
    none; a vector computed inside the block from its weight only (QConv2D's ``K / 2``
    offset) is evaluated; a stored bias parameter is refused for 1-bit weights, as in
    BMXNet 2 (binary convs have none), and taken with ``stored_ok`` (k-bit weights)."""
    if _node_attrs(cn).get("no_bias", False) or len(cn["inputs"]) < 3:
        return np.zeros(cout)
    bsrc = cn["inputs"][2]
    if bsrc[0] not in members and stored_ok and g.is_param(bsrc[0]):
        b = np.asarray(g.params[g.nodes[bsrc[0]]["name"]], np.float64).reshape(-1)
        if b.shape != (cout,):
            raise ConversionError(f"k-bit conv {name!r}: bias of shape {b.shape}")
        return b
    if bsrc[0] not in members:
        raise ConversionError(f"binary conv {name!r} has a bias: not supported (a 1-bit "
                              "layer has no bias, as in BMXNet 2)")
    bmembers = _ancestors(g, bsrc[0], members)
    feeds = _param_feeds(g, bmembers, lambda: ConversionError(
        f"binary conv {name!r}: its bias depends on the input; cannot convert"))
    b = np.asarray(g.eval_subgraph(bmembers, feeds, (bsrc[0], bsrc[1])), np.float64)
    if b.shape != (cout,):
        raise ConversionError(f"binary conv {name!r}: bias of shape {b.shape}")
    return b


def _qconv_input(g, name, cn, members):
    """The data path [Pad(-1)] -> Convolution: the json input it reads and the padding."""
    src = cn["inputs"][0]
    pad = (0, 0)
    if src[0] in members:
        pn = g.nodes[src[0]]
        pa = _node_attrs(pn)
        pw = tuple(pa.get("pad_width", ()))
        if (pn["op"] != "Pad" or pa.get("mode", "constant") != "constant" or len(pw) != 8
                or any(pw[:4]) or pw[4] != pw[5] or pw[6] != pw[7]):
            raise ConversionError(f"binary conv {name!r}: unsupported input transform "
                                  f"{pn['op']} {pa}")
        if float(pa.get("constant_value", 0.0)) != -1.0:
            raise ConversionError(f"binary conv {name!r} pads with "
                                  f"{pa.get('constant_value', 0)}: only -1 padding is "
                                  "representable after bit-packing")
        pad = (int(pw[4]), int(pw[6]))
        src = pn["inputs"][0]
        if src[0] in members:
            raise ConversionError(f"binary conv {name!r}: unsupported input transform "
                                  f"{g.nodes[src[0]]['op']} inside the layer (an XNOR-Net "
                                  "conv converts from the Gluon net, whose block says what it "
                                  "is, not from an exported symbol)")
    if g.is_param(src[0]):
        raise ConversionError(f"binary conv {name!r}: its input is a parameter")
    return src, pad


def _qconv_weight(g, name, cn, members, ext, cout, ndim=4):
    """The stored weight W (``ndim``-D: 4 for a conv, 2 for a dense layer) and the positive
    constant c with weight path = c * sign(W) (QConv2D and QDense use sign(W) / 2);
    anything else is refused."""
    W, wq = _qconv_weight_values(g, name, cn, members, ext, cout, ndim)
    w_scale = float(wq.flat[0] * _sign_np(W).flat[0]) if wq.size else 1.0
    if not (w_scale > 0 and np.array_equal(wq, np.float32(w_scale) * _sign_np(W))):
        raise ConversionError(f"QConv2D {name!r} does not binarize its weights with "
                              "sign(w) (k-bit weights?): only 1-bit weights can be packed")
    return W, w_scale


def _qconv_weight_values(g, name, cn, members, ext, cout, ndim=4):
    """The stored weight W and what the block's weight path computes from it."""
    wsrc = cn["inputs"][1]
    # a stored bias (k-bit layers may have one) is not the weight
    bias = cn["inputs"][2][0] if len(cn["inputs"]) > 2 else None
    wparams = [e for e in ext if g.is_param(e[0]) and e[0] != bias]
    if len(wparams) != 1:
        raise ConversionError(f"binary conv {name!r}: expected one weight parameter, found "
                              f"{[g.nodes[e[0]]['name'] for e in wparams]}")
    W = g.params[g.nodes[wparams[0][0]]["name"]]
    if W.ndim != ndim or W.shape[0] != cout:
        raise ConversionError(f"binary conv {name!r}: weight shape {W.shape} does not match")
    if wsrc[0] in members:
        wmembers = _ancestors(g, wsrc[0], members)
        wq = g.eval_subgraph(wmembers, {wparams[0]: W}, (wsrc[0], wsrc[1]))
    else:
        wq = W
    return W, wq


def _qconv_activation(g, name, ci, out):
    """A trailing ReLU of the block: ``("relu" or None, the node before it)``."""
    on = g.nodes[out]
    if on["op"] in ("Activation", "relu") and out != ci:
        if on["op"] == "Activation" and _node_attrs(on).get("act_type") != "relu":
            raise ConversionError(f"QConv2D {name!r}: activation "
                                  f"{_node_attrs(on).get('act_type')!r} is not supported")
        return "relu", on["inputs"][0][0]
    return None, out


def _qconv_affine(g, name, ci, post_out, members, cout, shp=None):
    """``(a, b)`` per channel with output = a * conv + b (offset form, no_offset, 'weight'
    scaling), found from three probes of the output transform and checked on the third;
    ``shp``: the probe's shape, one pixel per channel ((1, C, 1, 1); dense: (1, C))."""
    if post_out == ci:
        return np.ones(cout, np.float32), np.zeros(cout, np.float32)
    # the nodes computing the output from the conv result, the traversal stopping at the
    # conv; they may read stored parameters (the weight for K or mean|W|) only
    post_all = _ancestors_stop(g, post_out, members, stop=ci)
    feeds_extra = _param_feeds(g, post_all, lambda: ConversionError(
        f"QConv2D {name!r}: its output depends on the input other than through the "
        "convolution (XNOR-Net style input scaling is not supported)"), skip=(ci,))

    def f(c):
        fd = dict(feeds_extra)
        fd[(ci, 0)] = c
        return g.eval_subgraph(post_all, fd, (post_out, 0))
    shp = (1, cout, 1, 1) if shp is None else shp
    try:
        y0 = f(np.zeros(shp, np.float32))
        y1 = f(np.ones(shp, np.float32))
        r = np.random.RandomState(1).randint(-50, 50, size=shp).astype(np.float32)
        yr = f(r)
    except ConversionError:
        raise
    except Exception as e:
        raise ConversionError(f"QConv2D {name!r}: cannot analyse its output transform "
                              f"({_first_line(e)})") from None
    if y0.shape != shp:
        raise ConversionError(f"QConv2D {name!r}: its output is not per channel")
    b_c = y0.reshape(-1)
    a_c = (y1 - y0).reshape(-1)
    if not np.allclose(yr.reshape(-1), a_c * r.reshape(-1) + b_c, rtol=1e-5, atol=1e-4):
        raise ConversionError(f"QConv2D {name!r}: its output is not an affine function of "
                              "the convolution; cannot convert")
    return a_c, b_c


#: group kind (see :func:`.build._groups`) -> lowering ``(builder, prefix, block, members,
#: ext, out) -> _Op``
GROUP_LOWERING = {"qact": _group_qact, "qdense": _group_qdense, "qconv": _group_qconv}
