"""Convert a Gluon binary network into a packed bmx model file (``docs/model-format.md``).

Bethge et al., "BMXNet 2" (2019): binary layers run as xnor-popcount on bit-packed
weights and activations. The converter reads the MXNet symbol graph of a HybridBlock (or
of an exported ``-symbol.json`` + ``.params`` pair), collapses the nodes of every
:mod:`bmx.nn` quantized block into one operation, checks what each block computes on its
real weights and on probe inputs (so it never trusts an op-sequence guess), folds
BatchNorm where it is exact and writes the FlatBuffers file of ``src/schema/bmx_model.fbs``.

Anything it does not understand fails with a :class:`ConversionError` (a ValueError)
naming the layer or operator.
"""
import ast
import json
import os
import re
import sys

import numpy as np

os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")  # quiet the probe evaluations

from . import __version__
from ._cli import ArgumentParser as _Parser
from ._cli import UsageError as _UsageError
from ._cli import first_line as _first_line
from ._cli import write_bytes_atomic as _write_atomic
from ._mxnet import MXNetMissingError, param_arrays
from .convention import pack_bits

__all__ = ["FORMAT_VERSION", "FILE_IDENTIFIER", "ConversionError", "convert",
           "convert_symbol", "float_size_bytes", "main"]

#: format version written into every file (``Model.version``); bump on incompatible change
from ._engine import FORMAT_VERSION, LIMITS  # defined once, in the C++ loader
#: FlatBuffers file identifier (bytes 4..8 of every file)
FILE_IDENTIFIER = b"BMX1"
#: byte alignment of weight vectors inside the file (uint64 words, SIMD loads)
WEIGHT_ALIGN = 16


class ConversionError(ValueError):
    """The network cannot be converted (unsupported layer or operator, k-bit layer, ...)."""


# ----------------------------------------------------------------------------------------
# Loading the graph
# ----------------------------------------------------------------------------------------

def _parse_attr(v):
    if not isinstance(v, str):
        return v
    if v in ("True", "true"):
        return True
    if v in ("False", "false"):
        return False
    if v == "None":
        return None
    try:
        return ast.literal_eval(v)
    except (ValueError, SyntaxError):
        return v


def _node_attrs(node):
    raw = node.get("attrs") or node.get("attr") or node.get("param") or {}
    return {k: _parse_attr(v) for k, v in raw.items() if not k.startswith("__")}


class _Graph:
    """The symbol graph as plain json nodes plus parameter values and inferred shapes."""

    def __init__(self, sym, params, input_shape, blocks=None):
        from ._mxnet import mx
        self.sym = sym
        self.json = json.loads(sym.tojson())
        self.nodes = self.json["nodes"]
        self.heads = self.json["heads"]
        self.params = params
        self.blocks = blocks  # prefix -> bmx.nn block (net mode) or None (symbol mode)
        self.input_shape = tuple(int(d) for d in input_shape)
        data_nodes = [i for i, n in enumerate(self.nodes)
                      if n["op"] == "null" and n["name"] not in params]
        if len(data_nodes) != 1:
            names = [self.nodes[i]["name"] for i in data_nodes]
            raise ConversionError(f"the graph must have exactly one input without a value "
                                  f"(the image); found {names} (missing parameters?)")
        self.data_id = data_nodes[0]
        if len(self.heads) != 1:
            raise ConversionError(f"the network must have one output, it has {len(self.heads)}")
        internals = sym.get_internals()
        try:
            # the stored parameter shapes take part, so a mismatching input is caught
            known = dict((k, params[k].shape) for k in
                         sym.list_arguments() + sym.list_auxiliary_states() if k in params)
            known[self.nodes[self.data_id]["name"]] = self.input_shape
            # _infer_shape_impl: Symbol.infer_shape prints every argument on failure
            infer = getattr(internals, "_infer_shape_impl", None)
            _, out_shapes, _ = (infer(False, **known) if infer is not None
                                else internals.infer_shape(**known))
        except mx.base.MXNetError as e:
            raise ConversionError(f"shape inference failed for input shape {self.input_shape} "
                                  f"(is it the network's input shape?): {_first_line(e)}") from None
        if out_shapes is None:
            raise ConversionError(f"shape inference failed for input shape {self.input_shape}")
        by_name = {}
        for name, shp in zip(internals.list_outputs(), out_shapes):
            m = re.match(r"^(.*)_output(\d*)$", name)
            if m:
                by_name[(m.group(1), int(m.group(2) or 0))] = tuple(shp)
            else:
                by_name[(name, 0)] = tuple(shp)
        self.shapes = {}
        for i, n in enumerate(self.nodes):
            for k in range(4):
                if (n["name"], k) in by_name:
                    self.shapes[(i, k)] = by_name[(n["name"], k)]
        self.consumers = {i: [] for i in range(len(self.nodes))}
        for i, n in enumerate(self.nodes):
            for src in n["inputs"]:
                self.consumers[src[0]].append(i)

    def shape(self, nid, idx=0):
        try:
            return self.shapes[(nid, idx)]
        except KeyError:
            raise ConversionError(f"no inferred shape for {self.nodes[nid]['name']!r}") from None

    def is_param(self, nid):
        n = self.nodes[nid]
        return n["op"] == "null" and n["name"] in self.params

    def eval_subgraph(self, members, feeds, out):
        """Evaluate the member nodes with the given external inputs.

        ``feeds`` maps ``(nid, idx)`` of every external input to a numpy array; ``out`` is
        the ``(nid, idx)`` to return. Used to check what a quantizer subgraph computes.
        """
        from ._mxnet import mx
        new_nodes, remap, args = [], {}, {}
        for k, (key, val) in enumerate(feeds.items()):
            remap[key] = len(new_nodes)
            new_nodes.append({"op": "null", "name": f"__in{k}", "inputs": []})
            args[f"__in{k}"] = mx.nd.array(val, dtype="float32")
        for nid in sorted(members):
            n = self.nodes[nid]
            ins = []
            for src in n["inputs"]:
                key = (src[0], src[1])
                if src[0] in members:
                    ins.append([remap[(src[0], 0)], src[1], 0])
                elif key in remap:
                    ins.append([remap[key], 0, 0])
                else:
                    raise ConversionError(f"internal: unfed input {self.nodes[src[0]]['name']!r} "
                                          f"of {n['name']!r}")
            nn_ = dict(n)
            nn_["inputs"] = ins
            remap[(nid, 0)] = len(new_nodes)
            new_nodes.append(nn_)
        g = {"nodes": new_nodes,
             "arg_nodes": [i for i, n in enumerate(new_nodes) if n["op"] == "null"],
             "heads": [[remap[(out[0], 0)], out[1], 0]],
             "attrs": self.json.get("attrs", {"mxnet_version": ["int", 10901]})}
        g["node_row_ptr"] = list(range(len(new_nodes) + 1))
        sym = mx.sym.load_json(json.dumps(g))
        return sym.eval(ctx=mx.cpu(), **args)[0].asnumpy()


def _net_graph(net, input_shape):
    from ._mxnet import mx
    from mxnet.gluon import HybridBlock
    from mxnet.gluon.parameter import DeferredInitializationError
    if not isinstance(net, HybridBlock):
        raise ConversionError(f"convert() needs a Gluon HybridBlock, got {type(net).__name__}")
    params = net.collect_params()
    try:
        for p in params.values():
            p.data()
    except DeferredInitializationError:
        try:
            net(mx.nd.zeros(input_shape))  # finishes deferred shape inference (inference mode)
        except Exception as e:
            raise ConversionError(f"forward pass with input shape {tuple(input_shape)} failed: "
                                  f"{_first_line(e)}") from None
    except RuntimeError as e:
        raise ConversionError(f"parameters of the network are not initialized: "
                              f"{_first_line(e)}") from None
    # ParameterDict keys are the parameters' full names
    values = {k: v.astype(np.float32) for k, v in param_arrays(params).items()}
    out = net(mx.sym.var("data"))
    if isinstance(out, (list, tuple)):
        if len(out) != 1:
            raise ConversionError(f"the network must have one output, it has {len(out)}")
        out = out[0]
    return _Graph(out, values, input_shape, blocks=_quantized_blocks(net))


def _quantized_blocks(net):
    from .nn.layers import QActivation, QConv2D, QDense
    blocks = {}

    def walk(b):
        if isinstance(b, (QActivation, QConv2D, QDense)):
            blocks[b.prefix] = b
        for c in b._children.values():
            walk(c)
    walk(net)
    return blocks


def _check_symbol_json(path):
    """Structural checks of an exported ``-symbol.json`` before MXNet parses it (MXNet's
    own errors on hostile files are cryptic, e.g. ``_Map_base::at`` for a cycle): JSON with
    ``nodes``, ``arg_nodes`` and ``heads``, every node input defined before the node (the
    topological order ``net.export`` writes), every index in range."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as e:
        raise ConversionError(f"cannot read symbol file {path}: {e.strerror or e}") from None
    if not text.strip():
        raise ConversionError(f"symbol file {path} is empty")
    try:
        doc = json.loads(text)
    except ValueError as e:  # also UnicodeDecodeError
        raise ConversionError(f"symbol file {path} is not JSON ({_first_line(e)})") from None
    nodes = doc.get("nodes") if isinstance(doc, dict) else None
    if not isinstance(nodes, list) or not isinstance(doc.get("heads"), list) or \
            not isinstance(doc.get("arg_nodes"), list):
        raise ConversionError(f"symbol file {path} is not an MXNet symbol (expected an object with "
                              "'nodes', 'arg_nodes' and 'heads'; use the file net.export wrote)")

    def entry(e, where):
        if not (isinstance(e, list) and e and all(isinstance(v, int) and not isinstance(v, bool) for v in e)):
            raise ConversionError(f"symbol file {path}: {where} has a malformed node reference {e!r}")
        return e[0]

    for i, n in enumerate(nodes):
        if not isinstance(n, dict) or not isinstance(n.get("op"), str):
            raise ConversionError(f"symbol file {path}: node {i} is not an operator node")
        inputs = n.get("inputs", [])
        if not isinstance(inputs, list):
            raise ConversionError(f"symbol file {path}: node {i} {n.get('name')!r} has malformed inputs")
        for e in inputs:
            j = entry(e, f"node {i} {n.get('name')!r}")
            if not 0 <= j < i:
                raise ConversionError(
                    f"symbol file {path}: node {i} {n.get('name')!r} reads node {j}, which is not defined "
                    "before it (a cycle or a bad index: not a graph net.export writes)")
    for e in doc["heads"]:
        j = entry(e, "an output")
        if not 0 <= j < len(nodes):
            raise ConversionError(f"symbol file {path}: output node {j} out of range")
    for j in doc["arg_nodes"]:
        if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < len(nodes):
            raise ConversionError(f"symbol file {path}: argument node {j!r} out of range")


def _symbol_graph(symbol_file, params_file, input_shape):
    from ._mxnet import mx
    for f in (symbol_file, params_file):
        if not os.path.isfile(f):
            raise ConversionError(f"file not found: {f}")
    _check_symbol_json(symbol_file)
    try:
        sym = mx.sym.load(symbol_file)
    except Exception as e:  # MXNetError or json errors
        raise ConversionError(f"cannot read symbol file {symbol_file}: "
                              f"{_first_line(e)}") from None
    try:
        raw = mx.nd.load(params_file)
    except Exception as e:
        raise ConversionError(f"cannot read parameter file {params_file}: "
                              f"{_first_line(e)}") from None
    if not isinstance(raw, dict):
        raise ConversionError(f"parameter file {params_file} holds no named arrays")
    values = {}
    for k, v in raw.items():
        name = k.split(":", 1)[1] if k.startswith(("arg:", "aux:")) else k
        values[name] = v.asnumpy().astype(np.float32)
    names = {n for n in sym.list_arguments() + sym.list_auxiliary_states()}
    missing = sorted(n for n in names if n not in values)
    if len(missing) > 1:
        raise ConversionError(f"parameter file {params_file} lacks {len(missing)} parameters of "
                              f"the symbol, e.g. {missing[:3]} (use the pair net.export wrote)")
    return _Graph(sym, values, input_shape, blocks=None)


# ----------------------------------------------------------------------------------------
# IR
# ----------------------------------------------------------------------------------------

class _Op:
    """One node of the converter's IR: ``kind`` with attributes, inputs are IR node ids."""

    def __init__(self, kind, name, inputs, shape, **attrs):
        self.kind = kind
        self.name = name
        self.inputs = list(inputs)
        self.shape = tuple(shape)
        self.attrs = attrs

    def __repr__(self):
        return f"_Op({self.kind}, {self.name!r}, {self.inputs}, {self.shape})"


def _pair(v, default):
    if v is None or v == ():
        return tuple(default)
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(i) for i in v)
    if len(v) == 1:
        return (v[0], v[0])
    if len(v) != 2:
        raise ConversionError(f"only 2-D operators are supported, got {v}")
    return v


def _sign_np(x):
    return np.where(x < 0, -1.0, 1.0).astype(np.float32)


class _Builder:
    """Turns the json graph into the IR, one :mod:`bmx.nn` block at a time."""

    def __init__(self, g):
        self.g = g
        self.ops = {}       # IR id (json node id of the op's output) -> _Op
        self.order = []
        self.output = None

    # -- grouping nodes by the bmx.nn block that owns them --------------------------------

    def _groups(self):
        g = self.g
        prefixes = {}
        if g.blocks is not None:
            from .nn.layers import QActivation
            for p, b in g.blocks.items():
                prefixes[p] = ("qact" if isinstance(b, QActivation) else
                               "qdense" if type(b).__name__ == "QDense" else "qconv", b)
        else:
            # Exported graph: no block objects. A Convolution/FullyConnected whose weight is
            # computed (not a stored parameter) is a quantized layer; the nodes named after a
            # QActivation block belong to it. What each group computes is checked below.
            for i, n in enumerate(g.nodes):
                if n["op"] in ("Convolution", "FullyConnected") and n["name"].endswith("fwd"):
                    w = n["inputs"][1][0] if len(n["inputs"]) > 1 else None
                    if w is not None and g.nodes[w]["op"] != "null":
                        kind = "qconv" if n["op"] == "Convolution" else "qdense"
                        prefixes[n["name"][:-3]] = (kind, None)
            for n in g.nodes:
                m = re.match(r"^(.*?qactivation\d*_)", n["name"])
                if m and n["op"] != "null":
                    prefixes.setdefault(m.group(1), ("qact", None))
        owner = {}
        plist = sorted(prefixes, key=len, reverse=True)
        for i, n in enumerate(g.nodes):
            if n["op"] == "null":
                continue
            for p in plist:
                if n["name"].startswith(p):
                    owner[i] = p
                    break
        by_prefix = {}
        for i, p in owner.items():
            by_prefix.setdefault(p, set()).add(i)
        # A block called more than once (shared weights) leaves one connected set of nodes
        # per call: each becomes its own operation.
        groups = {}
        for p, members in by_prefix.items():
            comps = self._components(members)
            for k, comp in enumerate(comps):
                key = p if len(comps) == 1 else f"{p}call{k}_"
                groups[key] = (prefixes[p][0], prefixes[p][1], comp)
        return groups

    def _components(self, members):
        g = self.g
        parent = {i: i for i in members}

        def find(i):
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i
        for i in members:
            for s in g.nodes[i]["inputs"]:
                if s[0] in members:
                    parent[find(s[0])] = find(i)
        comps = {}
        for i in sorted(members):
            comps.setdefault(find(i), set()).add(i)
        return sorted(comps.values(), key=min)

    def _group_io(self, prefix, members):
        g = self.g
        ext = []
        for i in sorted(members):
            for src in g.nodes[i]["inputs"]:
                if src[0] not in members and (src[0], src[1]) not in ext:
                    ext.append((src[0], src[1]))
        outs = [i for i in members
                if any(c not in members for c in g.consumers[i]) or
                any(h[0] == i for h in g.heads)]
        if len(outs) != 1:
            raise ConversionError(f"quantized block {prefix!r}: expected one output, found "
                                  f"{[g.nodes[i]['name'] for i in outs]}")
        return ext, outs[0]

    # -- building ---------------------------------------------------------------------------

    def build(self):
        g = self.g
        groups = self._groups()
        self.owner = {}
        for p, (kind, block, members) in groups.items():
            for i in members:
                self.owner[i] = p
        group_io = {p: self._group_io(p, members) for p, (_, _, members) in groups.items()}
        for i, n in enumerate(g.nodes):
            if n["op"] == "null":
                if i == g.data_id:
                    self._add(i, _Op("input", n["name"], [], g.shape(i)))
                continue
            p = self.owner.get(i)
            if p is not None:
                ext, out = group_io[p]
                if i != out:
                    continue  # converted as a whole at the block's output node
                kind, block, members = groups[p]
                self._add(out, getattr(self, "_group_" + kind)(p, block, members, ext, out))
                continue
            self._add(i, self._translate(i, n))
        h = g.heads[0]
        if h[1] != 0:
            raise ConversionError("the network output must be the first output of its node")
        self.output = self._ref((h[0], h[1]))
        return self

    def _add(self, nid, op):
        self.ops[nid] = op
        self.order.append(nid)

    def _ref(self, src):
        nid, idx = src[0], src[1]
        n = self.g.nodes[nid]
        if n["op"] == "null" and nid != self.g.data_id:
            raise ConversionError(f"parameter {n['name']!r} is used as data")
        if idx != 0:
            raise ConversionError(f"output {idx} of {n['name']!r} ({n['op']}) is used; "
                                  "only the first output of an operator is supported")
        op = self.ops.get(nid)
        if op is None:
            raise ConversionError(f"internal: {n['name']!r} used before it was converted")
        while op.kind == "alias":
            nid = op.inputs[0]
            op = self.ops[nid]
        return nid

    def _param(self, node, k, what):
        g = self.g
        src = node["inputs"][k]
        if not g.is_param(src[0]):
            raise ConversionError(f"{node['name']!r}: its {what} is computed, not a stored "
                                  f"parameter ({g.nodes[src[0]]['op']}); cannot convert")
        return g.params[g.nodes[src[0]]["name"]]

    # -- bmx.nn blocks ---------------------------------------------------------------------

    def _group_qact(self, prefix, block, members, ext, out):
        g = self.g
        name = prefix.rstrip("_")
        if block is not None and block.bits != 1:
            raise ConversionError(f"QActivation {name!r} has {block.bits}-bit activations: only "
                                  "1-bit activations can be bit-packed")
        data = [e for e in ext if not g.is_param(e[0])]
        if len(data) != 1 or len(ext) != 1:
            raise ConversionError(f"QActivation {name!r}: expected one input, found "
                                  f"{[g.nodes[e[0]]['name'] for e in ext]}")
        shp = g.shape(*data[0])
        # elementwise: a small spatial probe suffices
        pshape = (1,) + tuple(shp[1:2]) + tuple(min(d, 3) for d in shp[2:])
        probe = np.random.RandomState(0).randn(*pshape).astype(np.float32)
        flat = probe.reshape(-1)
        special = np.array([0.0, -0.0, 1e-38, -1e-38, 1e-45, -1e-45, 0.5, -0.5, 3, -3],
                           np.float32)
        flat[:min(flat.size, special.size)] = special[:flat.size]
        got = g.eval_subgraph(members, {data[0]: probe}, (out, 0))
        if not np.array_equal(got, _sign_np(probe)):
            raise ConversionError(f"QActivation {name!r} does not compute sign(x) with "
                                  "sign(0)=+1 (k-bit activation?): only 1-bit activations "
                                  "can be bit-packed")
        return _Op("sign", name, [self._ref(data[0])], g.shape(out), scale=None, shift=None)

    def _group_qdense(self, prefix, block, members, ext, out):
        name = prefix.rstrip("_")
        bits = getattr(block, "bits", None)
        raise ConversionError(f"QDense {name!r}" + (f" ({bits}-bit)" if bits else "") +
                              ": quantized dense layers are not supported by the model format "
                              "(the zoo keeps the classifier full precision)")

    def _group_qconv(self, prefix, block, members, ext, out):
        g = self.g
        name = prefix.rstrip("_")
        if block is not None:
            if block.bits != 1:
                raise ConversionError(f"QConv2D {name!r} has {block.bits}-bit weights: only "
                                      "1-bit weights can be bit-packed")
            if block.scaling == "xnor":
                raise ConversionError(f"QConv2D {name!r} uses XNOR-Net input scaling "
                                      "(scaling='xnor'), which the model format does not support")
        convs = [i for i in members if g.nodes[i]["op"] == "Convolution"]
        if len(convs) != 1:
            raise ConversionError(f"QConv2D {name!r}: expected one Convolution, found {len(convs)}")
        ci = convs[0]
        cn = g.nodes[ci]
        a = _node_attrs(cn)
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
        conv_bias = self._qconv_offset(name, cn, members, cout)
        # data path: [Pad(-1)] -> Convolution
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
                                      f"{g.nodes[src[0]]['op']}")
        data = src
        if g.is_param(data[0]):
            raise ConversionError(f"binary conv {name!r}: its input is a parameter")
        # weight path: must compute exactly sign(W) from a stored parameter
        wsrc = cn["inputs"][1]
        wparams = [e for e in ext if g.is_param(e[0])]
        if len(wparams) != 1:
            raise ConversionError(f"binary conv {name!r}: expected one weight parameter, found "
                                  f"{[g.nodes[e[0]]['name'] for e in wparams]}")
        W = g.params[g.nodes[wparams[0][0]]["name"]]
        if W.ndim != 4 or W.shape[0] != cout:
            raise ConversionError(f"binary conv {name!r}: weight shape {W.shape} does not match")
        if wsrc[0] in members:
            wmembers = self._ancestors(wsrc[0], members)
            wq = g.eval_subgraph(wmembers, {wparams[0]: W}, (wsrc[0], wsrc[1]))
        else:
            wq = W
        # sign(W) times one positive constant (QConv2D convolves with sign(W) / 2)
        w_scale = float(wq.flat[0] * _sign_np(W).flat[0]) if wq.size else 1.0
        if not (w_scale > 0 and np.array_equal(wq, np.float32(w_scale) * _sign_np(W))):
            raise ConversionError(f"QConv2D {name!r} does not binarize its weights with "
                                  "sign(w) (k-bit weights?): only 1-bit weights can be packed")
        # output path: an affine map of the conv result (offset form, no_offset, 'weight'
        # scaling), optionally followed by ReLU.
        activation = None
        post_out = out
        on = g.nodes[out]
        if on["op"] in ("Activation", "relu") and out != ci:
            if on["op"] == "Activation" and _node_attrs(on).get("act_type") != "relu":
                raise ConversionError(f"QConv2D {name!r}: activation "
                                      f"{_node_attrs(on).get('act_type')!r} is not supported")
            activation = "relu"
            post_out = on["inputs"][0][0]
        cshape = g.shape(ci)
        if post_out == ci:
            a_c = np.ones(cout, np.float32)
            b_c = np.zeros(cout, np.float32)
        else:
            # the nodes computing the output from the conv result, the traversal stopping at
            # the conv; they may read stored parameters (the weight for K or mean|W|) only
            post_all = self._ancestors_stop(post_out, members, stop=ci)
            feeds_extra = {}
            for i in sorted(post_all):
                for s in g.nodes[i]["inputs"]:
                    if s[0] in post_all or s[0] == ci:
                        continue
                    if g.is_param(s[0]):
                        feeds_extra[(s[0], s[1])] = g.params[g.nodes[s[0]]["name"]]
                        continue
                    raise ConversionError(f"QConv2D {name!r}: its output depends on the input "
                                          "other than through the convolution (XNOR-Net style "
                                          "input scaling is not supported)")

            def f(c):
                fd = dict(feeds_extra)
                fd[(ci, 0)] = c
                return g.eval_subgraph(post_all, fd, (post_out, 0))
            shp = (1, cout, 1, 1)
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
        cin = W.shape[1] * groups
        K = W.shape[1] * kernel[0] * kernel[1]
        # conv = w_scale*dot + conv_bias, y = a*conv + b, dot = 2*match - K
        #   ->  y = 2*a'*match + (b' - a'*K) with a' = a*w_scale, b' = a*conv_bias + b
        a64 = a_c.astype(np.float64)
        a_dot = a64 * w_scale
        b_dot = a64 * conv_bias + b_c.astype(np.float64)
        scale = 2.0 * a_dot
        shift = b_dot - a_dot * K
        return _Op("bconv", name, [self._ref(data)], g.shape(out), W=W, cin=cin, cout=cout,
                   kernel=kernel, stride=stride, pad=pad, dilation=dilation, groups=groups,
                   scale=scale, shift=shift, activation=activation, conv_shape=cshape)

    def _qconv_offset(self, name, cn, members, cout):
        """The bias input of a binary Convolution, as float64 (cout,): zeros when there is
        none; a vector computed inside the block from its weight only (QConv2D's ``K / 2``
        offset) is evaluated; a stored bias parameter is refused (binary convs have none)."""
        g = self.g
        if _node_attrs(cn).get("no_bias", False) or len(cn["inputs"]) < 3:
            return np.zeros(cout)
        bsrc = cn["inputs"][2]
        if bsrc[0] not in members:
            raise ConversionError(f"binary conv {name!r} has a bias: not supported")
        bmembers = self._ancestors(bsrc[0], members)
        feeds = {}
        for i in sorted(bmembers):
            for s in g.nodes[i]["inputs"]:
                if s[0] in bmembers:
                    continue
                if not g.is_param(s[0]):
                    raise ConversionError(f"binary conv {name!r}: its bias depends on the "
                                          "input; cannot convert")
                feeds[(s[0], s[1])] = g.params[g.nodes[s[0]]["name"]]
        b = np.asarray(g.eval_subgraph(bmembers, feeds, (bsrc[0], bsrc[1])), np.float64)
        if b.shape != (cout,):
            raise ConversionError(f"binary conv {name!r}: bias of shape {b.shape}")
        return b

    def _ancestors(self, nid, members, include_self=True):
        res, stack = set(), [nid]
        while stack:
            i = stack.pop()
            if i in res or i not in members:
                continue
            res.add(i)
            for s in self.g.nodes[i]["inputs"]:
                stack.append(s[0])
        if not include_self:
            res.discard(nid)
        return res

    def _ancestors_stop(self, nid, members, stop):
        res, stack = set(), [nid]
        while stack:
            i = stack.pop()
            if i in res or i not in members or i == stop:
                continue
            res.add(i)
            for s in self.g.nodes[i]["inputs"]:
                stack.append(s[0])
        return res

    # -- standard operators -----------------------------------------------------------------

    def _translate(self, i, n):
        g = self.g
        op = n["op"]
        a = _node_attrs(n)
        shp = g.shape(i)
        name = n["name"]
        ins = n["inputs"]
        if op in ("Dropout", "_copy", "identity", "BlockGrad", "stop_gradient"):
            return _Op("alias", name, [self._ref(ins[0])], shp)
        if op == "Convolution":
            if a.get("layout", "NCHW") not in (None, "NCHW"):
                raise ConversionError(f"{name!r}: layout {a.get('layout')} is not supported")
            if len(_pair(a.get("kernel"), (1, 1))) != 2:
                raise ConversionError(f"{name!r}: only 2-D convolutions are supported")
            W = self._param(n, 1, "weight")
            b = None if a.get("no_bias", False) else self._param(n, 2, "bias")
            return _Op("conv", name, [self._ref(ins[0])], shp, W=W.copy(),
                       b=None if b is None else b.copy(), cout=int(a["num_filter"]),
                       kernel=_pair(a.get("kernel"), (1, 1)), stride=_pair(a.get("stride"), (1, 1)),
                       pad=_pair(a.get("pad"), (0, 0)), dilation=_pair(a.get("dilate"), (1, 1)),
                       groups=int(a.get("num_group", 1)), activation=None)
        if op == "BatchNorm":
            if int(a.get("axis", 1)) != 1:
                raise ConversionError(f"BatchNorm {name!r} on axis {a.get('axis')}: only axis 1")
            gamma = self._param(n, 1, "gamma").astype(np.float64)
            beta = self._param(n, 2, "beta").astype(np.float64)
            mean = self._param(n, 3, "running mean").astype(np.float64)
            var = self._param(n, 4, "running var").astype(np.float64)
            if a.get("fix_gamma", True):  # MXNet's default is fix_gamma=True: gamma is 1
                gamma = np.ones_like(gamma)
            eps = float(a.get("eps", 1e-3))
            with np.errstate(invalid="ignore", divide="ignore"):  # checked before writing
                scale = gamma / np.sqrt(var + eps)
                shift = beta - mean * scale
            return _Op("affine", name, [self._ref(ins[0])], shp, scale=scale, shift=shift,
                       activation=None)
        if op in ("Activation", "relu"):
            act = a.get("act_type", "relu") if op == "Activation" else "relu"
            if act != "relu":
                raise ConversionError(f"activation {act!r} ({name!r}) is not supported "
                                      "(only relu)")
            return _Op("relu", name, [self._ref(ins[0])], shp)
        if op == "Pooling":
            return self._pool(i, n, a, shp)
        if op in ("Concat", "concat"):
            if int(a.get("dim", 1)) != 1:
                raise ConversionError(f"concat {name!r} along dim {a.get('dim')}: only channels")
            return _Op("concat", name, [self._ref(s) for s in ins], shp)
        if op in ("elemwise_add", "_plus", "_Plus", "broadcast_add", "_add", "broadcast_plus"):
            s0, s1 = g.shape(*ins[0][:2]), g.shape(*ins[1][:2])
            if s0 != s1:
                raise ConversionError(f"{op} {name!r} of shapes {s0} and {s1}: broadcasting "
                                      "additions are not supported")
            return _Op("add", name, [self._ref(s) for s in ins], shp)
        if op == "add_n" and len(ins) == 2:
            return _Op("add", name, [self._ref(s) for s in ins], shp)
        if op == "FullyConnected":
            W = self._param(n, 1, "weight")
            b = None if a.get("no_bias", False) else self._param(n, 2, "bias")
            ishape = g.shape(*ins[0][:2])
            if not a.get("flatten", True) and len(ishape) != 2:
                raise ConversionError(f"FullyConnected {name!r} with flatten=False on a "
                                      f"{len(ishape)}-D input is not supported")
            return _Op("dense", name, [self._ref(ins[0])], shp, W=W.reshape(W.shape[0], -1).copy(),
                       b=None if b is None else b.copy(), units=int(a["num_hidden"]))
        if op in ("Flatten", "flatten"):
            return _Op("flatten", name, [self._ref(ins[0])], shp)
        if op == "slice_axis":
            ishape = g.shape(*ins[0][:2])
            axis = int(a["axis"])
            axis = axis + len(ishape) if axis < 0 else axis
            begin, end = a.get("begin", 0), a.get("end")
            c = ishape[axis]
            begin = int(begin) + c if int(begin) < 0 else int(begin)
            end = c if end is None else (int(end) + c if int(end) < 0 else int(end))
            return _Op("slice", name, [self._ref(ins[0])], shp, axis=axis, begin=begin, end=end,
                       in_shape=ishape)
        if op in ("Reshape", "reshape"):
            return _Op("reshape", name, [self._ref(ins[0])], shp,
                       in_shape=g.shape(*ins[0][:2]))
        if op in ("transpose", "SwapAxis", "swapaxes"):
            nd_ = len(g.shape(*ins[0][:2]))
            if op == "transpose":
                axes = tuple(a.get("axes") or tuple(reversed(range(nd_))))
            else:
                d1, d2 = int(a.get("dim1", 0)), int(a.get("dim2", 0))
                ax = list(range(nd_))
                ax[d1], ax[d2] = ax[d2], ax[d1]
                axes = tuple(ax)
            return _Op("transpose", name, [self._ref(ins[0])], shp, axes=axes)
        raise ConversionError(f"unsupported operator {op!r} (node {name!r}); the converter "
                              "handles bmx.nn binary layers, Conv2D, BatchNorm, ReLU, pooling, "
                              "concat, add, channel shuffle, Dense and Flatten")

    def _pool(self, i, n, a, shp):
        g = self.g
        name = n["name"]
        ptype = a.get("pool_type", "max")
        if ptype not in ("max", "avg"):
            raise ConversionError(f"pooling {ptype!r} ({name!r}) is not supported")
        if a.get("layout") not in (None, "NCHW"):
            raise ConversionError(f"pooling {name!r}: layout {a.get('layout')} not supported")
        ishape = g.shape(*n["inputs"][0][:2])
        glob = bool(a.get("global_pool", False))
        kernel = _pair(a.get("kernel"), (1, 1))
        stride = _pair(a.get("stride"), (1, 1))
        pad = _pair(a.get("pad"), (0, 0))
        if glob:
            kernel, stride, pad = tuple(ishape[2:]), (1, 1), (0, 0)
        ceil_mode = False
        if not glob:
            conv = a.get("pooling_convention", "valid")
            size = [ishape[2 + d] + 2 * pad[d] - kernel[d] for d in (0, 1)]
            valid = tuple(size[d] // stride[d] + 1 for d in (0, 1))
            full = tuple(-(-size[d] // stride[d]) + 1 for d in (0, 1))
            if conv not in ("valid", "full"):
                raise ConversionError(f"pooling {name!r}: pooling_convention={conv!r} is not "
                                      "supported (only 'valid' and 'full')")
            if tuple(shp[2:]) != valid:
                # 'full' (ceil_mode) with partial windows at the bottom/right border
                if conv != "full" or tuple(shp[2:]) != full or any(
                        (shp[2 + d] - 1) * stride[d] - pad[d] >= ishape[2 + d] for d in (0, 1)):
                    raise ConversionError(f"pooling {name!r}: output size {shp[2:]} for input "
                                          f"{ishape[2:]} is not representable")
                ceil_mode = True
            if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
                raise ConversionError(f"pooling {name!r}: padding {pad} must be smaller than "
                                      f"the kernel {kernel}")
        return _Op("pool", name, [self._ref(n["inputs"][0])], shp, type=ptype, kernel=kernel,
                   stride=stride, pad=pad, glob=glob, ceil_mode=ceil_mode,
                   count_include_pad=bool(a.get("count_include_pad", True)))


# ----------------------------------------------------------------------------------------
# Rewrites and fusions on the IR
# ----------------------------------------------------------------------------------------

class _IR:
    def __init__(self, b):
        self.ops = {k: v for k, v in b.ops.items() if v.kind != "alias"}
        self.order = [k for k in b.order if k in self.ops]
        self.output = b.output
        self.input = [k for k in self.order if self.ops[k].kind == "input"][0]

    def consumers(self):
        c = {k: [] for k in self.ops}
        for k in self.order:
            for i in self.ops[k].inputs:
                c[i].append(k)
        return c

    def sole_consumer(self, k, cons):
        if k == self.output or len(cons[k]) != 1:
            return None
        return cons[k][0]

    def replace(self, old, new):
        """Make every user of ``old`` use ``new`` and drop ``old``."""
        for k in self.order:
            op = self.ops[k]
            op.inputs = [new if i == old else i for i in op.inputs]
        if self.output == old:
            self.output = new
        del self.ops[old]
        self.order.remove(old)

    def prune(self):
        live, stack = set(), [self.output]
        while stack:
            k = stack.pop()
            if k in live:
                continue
            live.add(k)
            stack.extend(self.ops[k].inputs)
        live.add(self.input)
        self.order = [k for k in self.order if k in live]
        self.ops = {k: self.ops[k] for k in self.order}

    def run(self):
        self.patterns()
        self.fuse()
        self.prune()
        self.check()
        return self

    def patterns(self):
        cons = self.consumers()
        # channel shuffle: reshape (N,C,H,W)->(N,g,C/g,H,W), swap axes 1,2, reshape back
        for k in list(self.order):
            op = self.ops.get(k)
            if op is None or op.kind != "reshape":
                continue
            src_shape = op.attrs["in_shape"]
            if len(op.shape) == 2 and len(src_shape) == 4 and src_shape[2:] == (1, 1) \
                    and op.shape[1] == src_shape[1]:
                op.kind = "flatten"
                continue
            t = self.sole_consumer(k, cons)
            if (len(src_shape) != 4 or len(op.shape) != 5 or t is None
                    or self.ops[t].kind != "transpose"
                    or self.ops[t].attrs["axes"] != (0, 2, 1, 3, 4)):
                continue
            r2 = self.sole_consumer(t, cons)
            if r2 is None or self.ops[r2].kind != "reshape" or self.ops[r2].shape != src_shape:
                continue
            n_, c, h, w = src_shape
            gsz = op.shape[1]
            if op.shape != (n_, gsz, c // gsz, h, w) or gsz * (c // gsz) != c:
                continue
            shuf = self.ops[r2]
            shuf.kind = "shuffle"
            shuf.attrs = {"groups": gsz}
            shuf.inputs = list(op.inputs)
            cons = self.consumers()
        cons = self.consumers()
        # MeliusNet: concat(slice(x, 0, C-k), slice(x, C-k, C) + y) -> AddToLastChannels(x, y)
        for k in list(self.order):
            op = self.ops.get(k)
            if op is None or op.kind != "concat" or len(op.inputs) != 2:
                continue
            s0, ad = self.ops[op.inputs[0]], self.ops[op.inputs[1]]
            if s0.kind != "slice" or ad.kind != "add" or s0.attrs["axis"] != 1:
                continue
            x = s0.inputs[0]
            C = s0.attrs["in_shape"][1]
            for j in (0, 1):
                s1, y = self.ops[ad.inputs[j]], ad.inputs[1 - j]
                if (s1.kind == "slice" and s1.inputs[0] == x and s1.attrs["axis"] == 1
                        and s0.attrs["begin"] == 0 and s0.attrs["end"] == s1.attrs["begin"]
                        and s1.attrs["end"] == C and self.ops[y].shape == s1.shape):
                    op.kind = "add_last"
                    op.inputs = [x, y]
                    break
        self.prune()
        for k in self.order:
            op = self.ops[k]
            if op.kind in ("slice", "reshape", "transpose"):
                raise ConversionError(f"unsupported use of {op.kind} ({op.name!r}): only channel "
                                      "shuffle, flatten and MeliusNet's add-to-last-channels "
                                      "patterns are supported")

    def fuse(self):
        changed = True
        while changed:
            changed = False
            cons = self.consumers()
            for k in list(self.order):
                op = self.ops.get(k)
                if op is None:
                    continue
                # BN + sign -> per-channel thresholds of the Sign op (exact up to rounding)
                if op.kind == "sign" and op.attrs["scale"] is None:
                    src = self.ops[op.inputs[0]]
                    if src.kind == "affine" and src.attrs["activation"] is None:
                        op.attrs["scale"] = src.attrs["scale"].copy()
                        op.attrs["shift"] = src.attrs["shift"].copy()
                        op.inputs = list(src.inputs)
                        changed = True
                        break
                nxt = self.sole_consumer(k, cons)
                if nxt is None:
                    continue
                nop = self.ops[nxt]
                if nop.kind == "affine" and op.kind in ("conv", "bconv") \
                        and op.attrs["activation"] is None and nop.attrs["activation"] is None:
                    s, t = nop.attrs["scale"], nop.attrs["shift"]
                    if op.kind == "conv":  # BN into float conv weights and bias
                        W = op.attrs["W"].astype(np.float64) * s.reshape(-1, 1, 1, 1)
                        b = op.attrs["b"].astype(np.float64) if op.attrs["b"] is not None else 0.0
                        op.attrs["W"] = W.astype(np.float32)
                        op.attrs["b"] = (b * s + t).astype(np.float32)
                    else:  # BN into binary conv scale/shift (with the (conv+K)/2 offset)
                        op.attrs["scale"] = op.attrs["scale"] * s
                        op.attrs["shift"] = op.attrs["shift"] * s + t
                    op.shape = nop.shape
                    self.replace(nxt, k)
                    changed = True
                    break
                if nop.kind == "relu" and op.kind in ("conv", "bconv", "affine") \
                        and op.attrs["activation"] is None:
                    op.attrs["activation"] = "relu"
                    self.replace(nxt, k)
                    changed = True
                    break

    def check(self):
        for k in self.order:
            op = self.ops[k]
            for i in op.inputs:
                src = self.ops[i]
                if op.kind == "bconv":
                    if src.kind != "sign":
                        raise ConversionError(f"binary conv {op.name!r} gets a real-valued input "
                                              f"from {src.name!r} ({src.kind}); it needs a sign "
                                              "(QActivation) before it")
                elif src.kind == "sign":
                    raise ConversionError(f"binarized value {src.name!r} feeds {op.name!r} "
                                          f"({op.kind}); only binary convolutions read bits")
            for key in ("W", "b", "scale", "shift"):
                v = op.attrs.get(key)
                if v is not None and not np.all(np.isfinite(np.asarray(v, np.float32))):
                    what = {"W": "weights", "b": "bias"}.get(key, key)
                    raise ConversionError(f"{op.name!r}: its {what} (after folding BatchNorm) "
                                          "contain NaN or infinity; is the model trained?")
        if self.ops[self.output].kind == "sign":
            raise ConversionError("the network output is a binarized value")


# ----------------------------------------------------------------------------------------
# Serialization
# ----------------------------------------------------------------------------------------

def _fvec(b, arr):
    return b.CreateNumpyVector(np.ascontiguousarray(arr, dtype="<f4").reshape(-1))


def _ivec(b, vals):
    return b.CreateNumpyVector(np.asarray(vals, dtype="<i4").reshape(-1))


def _bytes(b, data, align=WEIGHT_ALIGN):
    data = bytes(data)
    b.StartVector(1, len(data), align)
    b.head = b.head - len(data)
    b.Bytes[b.head:b.head + len(data)] = data
    b.vectorNumElems = len(data)
    return b.EndVector()


def pack_binary_weight(W, groups=1):
    """Bit-pack a binary conv weight [C_out, C_in/groups, KH, KW] into the file layout
    [C_out, KH, KW, words_for_bits(C_in/groups)] of little-endian uint64 words."""
    Wt = np.transpose(np.asarray(W), (0, 2, 3, 1))  # C_out, KH, KW, C_in/groups
    return pack_bits(Wt, axis=-1).astype("<u8")


def _serialize(ir, num_classes, producer, mean, std):
    import flatbuffers
    from .fb import (Add, AddToLastChannels, Affine, BinaryConv2D, ChannelShuffle, Concat,
                     Conv2D, Dense, Flatten, Model, Op, Pool2D, Relu, Sign, Value)
    from .fb.Activation import Activation as A
    from .fb.OpOptions import OpOptions as OO
    from .fb.PoolType import PoolType
    from .fb.ValueKind import ValueKind

    b = flatbuffers.Builder(1 << 20)
    vidx = {k: j for j, k in enumerate(ir.order)}
    act = {None: A.None_ if hasattr(A, "None_") else 0, "relu": A.Relu}

    op_offsets = []
    for k in ir.order:
        op = ir.ops[k]
        if op.kind == "input":
            continue
        at = op.attrs
        kind = op.kind
        if kind == "conv":
            w = _bytes(b, np.ascontiguousarray(at["W"], "<f4").tobytes())
            bias = _bytes(b, np.ascontiguousarray(at["b"], "<f4").tobytes()) \
                if at["b"] is not None else None
            kern, strd, pad, dil = (_ivec(b, at[x])
                                    for x in ("kernel", "stride", "pad", "dilation"))
            Conv2D.Start(b)
            Conv2D.AddOutChannels(b, at["cout"])
            Conv2D.AddKernel(b, kern)
            Conv2D.AddStride(b, strd)
            Conv2D.AddPad(b, pad)
            Conv2D.AddDilation(b, dil)
            Conv2D.AddGroups(b, at["groups"])
            Conv2D.AddWeight(b, w)
            if bias is not None:
                Conv2D.AddBias(b, bias)
            Conv2D.AddActivation(b, act[at["activation"]])
            opt, ot = Conv2D.End(b), OO.Conv2D
        elif kind == "bconv":
            w = _bytes(b, pack_binary_weight(at["W"], at["groups"]).tobytes())
            sc, sh = _fvec(b, at["scale"]), _fvec(b, at["shift"])
            kern, strd, pad, dil = (_ivec(b, at[x])
                                    for x in ("kernel", "stride", "pad", "dilation"))
            BinaryConv2D.Start(b)
            BinaryConv2D.AddOutChannels(b, at["cout"])
            BinaryConv2D.AddInChannels(b, at["cin"])
            BinaryConv2D.AddKernel(b, kern)
            BinaryConv2D.AddStride(b, strd)
            BinaryConv2D.AddPad(b, pad)
            BinaryConv2D.AddDilation(b, dil)
            BinaryConv2D.AddGroups(b, at["groups"])
            BinaryConv2D.AddWeightBits(b, w)
            BinaryConv2D.AddScale(b, sc)
            BinaryConv2D.AddShift(b, sh)
            BinaryConv2D.AddActivation(b, act[at["activation"]])
            opt, ot = BinaryConv2D.End(b), OO.BinaryConv2D
        elif kind == "sign":
            sc = _fvec(b, at["scale"]) if at["scale"] is not None else None
            sh = _fvec(b, at["shift"]) if at["shift"] is not None else None
            Sign.Start(b)
            if sc is not None:
                Sign.AddScale(b, sc)
                Sign.AddShift(b, sh)
            opt, ot = Sign.End(b), OO.Sign
        elif kind == "affine":
            sc, sh = _fvec(b, at["scale"]), _fvec(b, at["shift"])
            Affine.Start(b)
            Affine.AddScale(b, sc)
            Affine.AddShift(b, sh)
            Affine.AddActivation(b, act[at["activation"]])
            opt, ot = Affine.End(b), OO.Affine
        elif kind == "relu":
            Relu.Start(b)
            opt, ot = Relu.End(b), OO.Relu
        elif kind == "pool":
            kern, strd, pad = (_ivec(b, at[x]) for x in ("kernel", "stride", "pad"))
            Pool2D.Start(b)
            Pool2D.AddType(b, PoolType.Max if at["type"] == "max" else PoolType.Avg)
            Pool2D.AddKernel(b, kern)
            Pool2D.AddStride(b, strd)
            Pool2D.AddPad(b, pad)
            Pool2D.AddCountIncludePad(b, at["count_include_pad"])
            Pool2D.AddGlobal_(b, at["glob"])
            if at["ceil_mode"]:  # written only when used: older readers reject such files
                Pool2D.AddCeilMode(b, True)
            opt, ot = Pool2D.End(b), OO.Pool2D
        elif kind == "concat":
            Concat.Start(b)
            opt, ot = Concat.End(b), OO.Concat
        elif kind == "add":
            Add.Start(b)
            opt, ot = Add.End(b), OO.Add
        elif kind == "add_last":
            AddToLastChannels.Start(b)
            opt, ot = AddToLastChannels.End(b), OO.AddToLastChannels
        elif kind == "shuffle":
            ChannelShuffle.Start(b)
            ChannelShuffle.AddGroups(b, at["groups"])
            opt, ot = ChannelShuffle.End(b), OO.ChannelShuffle
        elif kind == "dense":
            w = _bytes(b, np.ascontiguousarray(at["W"], "<f4").tobytes())
            bias = _bytes(b, np.ascontiguousarray(at["b"], "<f4").tobytes()) \
                if at["b"] is not None else None
            Dense.Start(b)
            Dense.AddUnits(b, at["units"])
            Dense.AddWeight(b, w)
            if bias is not None:
                Dense.AddBias(b, bias)
            opt, ot = Dense.End(b), OO.Dense
        elif kind == "flatten":
            Flatten.Start(b)
            opt, ot = Flatten.End(b), OO.Flatten
        else:  # pragma: no cover - the IR only holds the kinds above
            raise ConversionError(f"internal: no serializer for {kind}")
        name = b.CreateString(op.name)
        ins = _ivec(b, [vidx[i] for i in op.inputs])
        outs = _ivec(b, [vidx[k]])
        Op.Start(b)
        Op.AddName(b, name)
        Op.AddOptionsType(b, ot)
        Op.AddOptions(b, opt)
        Op.AddInputs(b, ins)
        Op.AddOutputs(b, outs)
        op_offsets.append(Op.End(b))

    val_offsets = []
    for k in ir.order:
        op = ir.ops[k]
        name = b.CreateString(op.name)
        shp = _ivec(b, (1,) + tuple(op.shape[1:]))
        Value.Start(b)
        Value.AddName(b, name)
        Value.AddShape(b, shp)
        Value.AddKind(b, ValueKind.Bits if op.kind == "sign" else ValueKind.Float)
        val_offsets.append(Value.End(b))

    def table_vec(offsets, start):
        start(b, len(offsets))
        for o in reversed(offsets):
            b.PrependUOffsetTRelative(o)
        return b.EndVector()

    ops_vec = table_vec(op_offsets, Model.StartOpsVector)
    vals_vec = table_vec(val_offsets, Model.StartValuesVector)
    ins_vec = _ivec(b, [vidx[ir.input]])
    outs_vec = _ivec(b, [vidx[ir.output]])
    prod = b.CreateString(producer)
    mean_vec = _fvec(b, mean) if mean is not None else None
    std_vec = _fvec(b, std) if std is not None else None
    Model.Start(b)
    Model.AddVersion(b, FORMAT_VERSION)
    Model.AddProducer(b, prod)
    Model.AddValues(b, vals_vec)
    Model.AddInputs(b, ins_vec)
    Model.AddOutputs(b, outs_vec)
    Model.AddOps(b, ops_vec)
    Model.AddNumClasses(b, int(num_classes))
    if mean_vec is not None:
        Model.AddMean(b, mean_vec)
    if std_vec is not None:
        Model.AddStd(b, std_vec)
    root = Model.End(b)
    b.Finish(root, file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


# ----------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------

def _check_shape(input_shape):
    try:
        shp = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ConversionError(f"input_shape must be (N, C, H, W) integers, "
                              f"got {input_shape!r}") from None
    if len(shp) != 4 or any(d < 1 for d in shp):
        raise ConversionError(f"input_shape must be (N, C, H, W) with positive sizes, got {shp}")
    return shp


def _finish(g, input_shape, path, producer, mean, std):
    ir = _IR(_Builder(g).build()).run()
    out_shape = ir.ops[ir.output].shape
    num_classes = int(np.prod(out_shape[1:]))
    if len(out_shape) != 2:
        raise ConversionError(f"the network output has shape {out_shape}; expected "
                              "(N, classes) logits")
    mean, std = _check_contract(ir, input_shape, mean, std)
    data = _serialize(ir, num_classes, producer, mean, std)
    if path is not None:
        _write_atomic(path, data)
    return data


#: limits of the reader contract (src/schema/bmx_model.fbs), checked here so that the
#: converter fails with a clear message instead of writing a file the engine rejects
MAX_VALUES_OPS = min(LIMITS["max_ops"], LIMITS["max_values"])
MAX_DIM = LIMITS["max_dim"]
MAX_ELEMS = LIMITS["max_elems"]
MAX_WINDOW = LIMITS["max_window"]


def _check_contract(ir, input_shape, mean, std):
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
    channels = input_shape[1]
    out = []
    for what, v in (("mean", mean), ("std", std)):
        if v is None:
            out.append(None)
            continue
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
        out.append(arr.astype(np.float32))
    return out[0], out[1]


def convert(net=None, input_shape=(1, 3, 224, 224), path=None, *, symbol_file=None,
            params_file=None, producer=None, mean=None, std=None):
    """Convert a Gluon network into a bmx model file (Bethge et al., BMXNet 2, 2019).

    Parameters
    ----------
    net : mxnet.gluon.HybridBlock, optional
        A network of :mod:`bmx.nn` binary layers and the Gluon layers the zoo uses, with
        initialized (trained) parameters. Omit it to convert an exported pair instead.
    input_shape : tuple of int
        ``(N, C, H, W)`` used for shape inference; the file records ``(1, C, H, W)``.
    path : str or os.PathLike, optional
        Also write the file there (atomically: temp file + rename).
    symbol_file, params_file : str, optional
        The ``-symbol.json`` and ``-0000.params`` written by ``net.export``.
    producer : str, optional
        Producer string recorded in the file (default ``"bmx <version> (<model name>)"``).
    mean, std : sequence of float, optional
        Input normalisation recorded for users of the file (not applied by the engine).

    Returns
    -------
    bytes
        The FlatBuffers model (``docs/model-format.md``).

    Raises
    ------
    ConversionError
        (a ValueError) naming the layer or operator that cannot be converted.
    """
    shp = _check_shape(input_shape)
    if net is not None and (symbol_file is not None or params_file is not None):
        raise ConversionError("give either a network or symbol_file/params_file, not both")
    if net is None:
        if symbol_file is None or params_file is None:
            raise ConversionError("give a network, or both symbol_file and params_file")
        return convert_symbol(symbol_file, params_file, shp, path, producer=producer,
                              mean=mean, std=std)
    g = _net_graph(net, shp)
    name = getattr(net, "model_name", None) or net.name
    producer = producer or f"bmx {__version__} ({name})"
    return _finish(g, shp, path, producer, mean, std)


def convert_symbol(symbol_file, params_file, input_shape=(1, 3, 224, 224), path=None, *,
                   producer=None, mean=None, std=None):
    """Convert an exported ``-symbol.json`` + ``.params`` pair (see :func:`convert`)."""
    shp = _check_shape(input_shape)
    g = _symbol_graph(os.fspath(symbol_file), os.fspath(params_file), shp)
    base = os.path.basename(os.fspath(symbol_file))
    base = base[:-len("-symbol.json")] if base.endswith("-symbol.json") else base
    producer = producer or f"bmx {__version__} ({base})"
    return _finish(g, shp, path, producer, mean, std)


def float_size_bytes(params):
    """float32 size of the parameters a float deployment stores (BatchNorm running statistics
    excluded, as in the papers' size rule): ``4 * sum(sizes)``."""
    n = 0
    for name, arr in params.items():
        if name.endswith(("_running_mean", "_running_var")):
            continue
        n += int(np.prod(arr.shape))
    return 4 * n


# ----------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------

def _parse_shape(s):
    try:
        shp = tuple(int(x) for x in s.replace("x", ",").split(","))
    except ValueError:
        raise _UsageError(f"bad --input-shape {s!r}: expected N,C,H,W integers, "
                          "e.g. 1,3,224,224") from None
    if len(shp) != 4 or any(d < 1 for d in shp):
        raise _UsageError(f"bad --input-shape {s!r}: expected four positive integers N,C,H,W")
    return shp


def _parse_floats(what, s, channels):
    if s is None:
        return None
    try:
        vals = [float(x) for x in s.split(",")]
    except ValueError:
        raise _UsageError(f"bad --{what} {s!r}: expected comma-separated numbers") from None
    if len(vals) != channels:
        raise _UsageError(f"bad --{what} {s!r}: expected {channels} values (one per input "
                          "channel)")
    return vals


def _mib(n):
    return n / float(1 << 20)


def _run(argv):
    p = _Parser(prog="bmx-convert",
                description="Convert a bmx Gluon model into a packed .bmx file.")
    p.add_argument("--version", action="version", version=f"bmx-convert {__version__}")
    p.add_argument("model", nargs="?",
                   help="a bmx-train run directory (model, input shape, classes and mean/std "
                        "are read from its run.json), a model zoo name (binarydensenet28) "
                        "or a flex spec (binarydensenet_flex:block_config=(2,2,2),...)")
    p.add_argument("--best", action="store_true",
                   help="with a run directory: convert best.params (the best validation "
                        "epoch) instead of the exported last epoch")
    p.add_argument("--params", help="parameters (.params from save_parameters, or the "
                                    "exported -0000.params with --symbol)")
    p.add_argument("--symbol", help="exported -symbol.json (instead of a zoo name)")
    p.add_argument("-o", "--output", help="output .bmx file")
    p.add_argument("--input-shape", default=None, help="N,C,H,W (default 1,3,224,224)")
    p.add_argument("--classes", type=int, default=None, help="number of classes (zoo models)")
    p.add_argument("--stem", default=None, help="stem variant (zoo models)")
    p.add_argument("--mean", default=None, help="input mean per channel to record, e.g. "
                                                "123.68,116.779,103.939")
    p.add_argument("--std", default=None, help="input std per channel to record")
    args = p.parse_args(argv)
    if args.model is not None and os.path.isdir(args.model):
        return _convert_run_dir(args)
    if args.best:
        raise _UsageError("--best applies to a bmx-train run directory")
    shp = _parse_shape(args.input_shape) if args.input_shape else (1, 3, 224, 224)
    norm = {k: _parse_floats(k, getattr(args, k), shp[1]) for k in ("mean", "std")}
    if args.model is None and args.symbol is None:
        raise _UsageError("give a model zoo name or --symbol (see bmx-convert --help)")
    _check_output(args)
    if args.symbol is not None:
        if args.model is not None:
            raise _UsageError("give either a model name or --symbol, not both")
        if args.classes is not None or args.stem is not None:
            raise _UsageError("--classes and --stem apply to zoo models, not to --symbol")
        if args.params is None:
            raise _UsageError("--symbol needs --params (the exported -0000.params)")
        for f in (args.symbol, args.params):
            if not os.path.isfile(f):
                raise _UsageError(f"file not found: {f}")
        g = _symbol_graph(args.symbol, args.params, shp)
        params = g.params
        data = convert_symbol(args.symbol, args.params, shp, args.output, **norm)
    else:
        if args.model is None:
            raise _UsageError("give a model zoo name or --symbol")
        if args.params is not None and not os.path.isfile(args.params):
            raise _UsageError(f"file not found: {args.params}")
        if args.classes is not None and args.classes < 1:
            raise _UsageError(f"--classes must be >= 1, got {args.classes}")
        from . import model_zoo
        kw = {}
        if args.classes is not None:
            kw["classes"] = args.classes
        if args.stem is not None:
            kw["stem"] = args.stem
        try:
            net = model_zoo.get_model(args.model, **kw)
        except (ValueError, KeyError, TypeError) as e:
            raise _UsageError(f"cannot build model {args.model!r}: "
                              f"{_first_line(e)}") from None
        if args.params is not None:
            try:
                net.load_parameters(args.params)
            except Exception as e:
                raise _UsageError(f"cannot load {args.params} into {args.model}: "
                                  f"{_param_mismatch(net, args.params) or _first_line(e)}") from None
        else:
            from .model_zoo.common import default_initializer
            net.initialize(default_initializer())
        data = convert(net, shp, args.output, **norm)
        params = param_arrays(net.collect_params())
    if args.symbol is None and args.params is None:
        print(f"note: no --params given: converted freshly initialized {args.model} weights")
    _report(params, data, args.output)
    return 0


def _param_mismatch(net, path):
    """Say how the arrays of ``path`` differ from ``net``'s parameters (the first shape that
    differs, with the option that sets it), or None when that is not the problem."""
    from ._mxnet import mx
    try:
        saved = mx.nd.load(path)
    except Exception:  # noqa: BLE001 - not a params file: let the caller report MXNet's line
        return None
    if not isinstance(saved, dict):
        return None
    mine = {k: p.shape for k, p in net._collect_params_with_prefix().items()}
    missing = [k for k in mine if k not in saved]
    extra = [k for k in saved if k not in mine]
    if missing or extra:
        return (f"the file and the model have different layers ({len(missing)} of the model's "
                f"parameters are not in the file, e.g. {missing[:2]}; {len(extra)} of the "
                f"file's are not in the model, e.g. {extra[:2]}): another architecture, or "
                "another --stem (thumbnail for small inputs)?")
    for name, shape in mine.items():
        arr = saved.get(name)
        if arr is not None and arr.shape != shape and all(d > 0 for d in shape):
            hint = (" (the number of classes: pass --classes "
                    f"{arr.shape[0]})" if name.startswith("output") else
                    " (the stem: pass the --stem the model was trained with)"
                    if name.startswith(("stem", "features.0")) else "")
            return (f"{name} has shape {tuple(arr.shape)} in the file but {tuple(shape)} in the "
                    f"model{hint}")
    return None


def _check_output(args):
    if args.output is None:
        raise _UsageError("missing -o/--output")
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        raise _UsageError(f"output directory {out_dir} does not exist")


def _report(params, data, output):
    fsize = float_size_bytes(params)
    print(f"float32 size: {_mib(fsize):.3f} MiB; packed size: {_mib(len(data)):.3f} MiB "
          f"({len(data)} bytes); ratio {fsize / max(len(data), 1):.2f}x -> {output}")


def _convert_run_dir(args):
    """``bmx-convert RUN_DIR``: the exported last epoch (or ``--best``) of a bmx-train run,
    with the run's input shape and the mean/std that apply to raw pixels."""
    run_dir = args.model
    for flag in ("symbol", "params", "classes", "stem", "input_shape"):
        if getattr(args, flag) is not None:
            raise _UsageError(f"--{flag.replace('_', '-')} does not go with a run directory: "
                              "the run records it")
    try:
        with open(os.path.join(run_dir, "run.json")) as f:
            run = json.load(f)
        shp = (1,) + tuple(int(d) for d in run["image_shape"])
        targs = run["args"]
    except FileNotFoundError:
        raise _UsageError(f"{run_dir} is not a bmx-train run directory (no run.json)") from None
    except (ValueError, KeyError, TypeError) as e:
        raise _UsageError(f"{run_dir}/run.json is damaged: {_first_line(e)}") from None
    pre = run.get("preprocess") or {}
    norm = {k: (_parse_floats(k, getattr(args, k), shp[1]) if getattr(args, k) is not None
                else _as_float_list(pre.get(k), shp[1])) for k in ("mean", "std")}
    if args.output is None:
        args.output = os.path.join(run_dir, "model-best.bmx" if args.best else "model.bmx")
    _check_output(args)
    producer = f"bmx {__version__} (bmx-train run {os.path.basename(os.path.abspath(run_dir))}: " \
               f"{targs.get('model')}, {'best epoch' if args.best else 'last epoch'})"
    if args.best:
        net = _run_net(run_dir, run, targs)
        data = convert(net, shp, args.output, producer=producer, **norm)
        params = param_arrays(net.collect_params())
    else:
        sym, prm = (os.path.join(run_dir, f) for f in ("model-symbol.json", "model-0000.params"))
        for f in (sym, prm):
            if not os.path.isfile(f):
                raise _UsageError(f"{f} is missing: the run has not finished (convert "
                                  "best.params with --best, or finish it with --resume)")
        data = convert_symbol(sym, prm, shp, args.output, producer=producer, **norm)
        params = _symbol_graph(sym, prm, shp).params
    _report(params, data, args.output)
    return 0


def _as_float_list(v, channels):
    """A recorded mean/std (number or list) as ``channels`` floats, or None."""
    if v is None:
        return None
    vals = [float(x) for x in (v if isinstance(v, (list, tuple)) else [v])]
    return vals * channels if len(vals) == 1 and channels > 1 else vals


def _run_net(run_dir, run, targs):
    """The run's network with its best.params loaded."""
    from .train import UsageError as TrainUsage
    from .train import build_model
    path = os.path.join(run_dir, "best.params")
    if not os.path.isfile(path):
        raise _UsageError(f"{path} is missing (no epoch has finished)")
    try:
        net = build_model(targs["model"], int(run["classes"]), stem=run.get("stem"),
                          clip_threshold=targs.get("clip_threshold", 1.3),
                          bits=targs.get("bits", 1), bits_a=targs.get("bits_a", 1),
                          **({"binary": False} if targs.get("float_twin") else {}))
        net.load_parameters(path)
    except TrainUsage as e:
        raise _UsageError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - MXNetError, AssertionError from a foreign file
        raise _UsageError(f"cannot load {path} into {targs.get('model')}: "
                          f"{_first_line(e)}") from None
    net.hybridize()
    return net



def main(argv=None):
    """Entry point of ``bmx-convert``; returns 2 with a one-line reason on bad input."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _run(argv)
    except (_UsageError, ConversionError, OSError, MXNetMissingError) as e:
        print(f"bmx-convert: error: {_first_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # e.g. MXNetError from a model that cannot run this input
        if type(e).__name__ != "MXNetError":
            raise
        print(f"bmx-convert: error: MXNet: {_first_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
