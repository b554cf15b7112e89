"""Capture stage: the MXNet symbol graph of a network, with parameter values and shapes.

Two sources give the same :class:`~.graph._Graph`: a Gluon HybridBlock
(:func:`_net_graph`, which also records the :mod:`bmx.nn` quantized blocks by prefix so
the build stage knows their bits and scaling) and an exported ``-symbol.json`` +
``.params`` pair (:func:`_symbol_graph`, after the structural checks of
:func:`_check_symbol_json`).
"""
import json
import os

import numpy as np

from .._cli import first_line as _first_line
from .._mxnet import param_arrays
from .errors import ConversionError
from .graph import _Graph


def _net_graph(net, input_shape):
    from .._mxnet import mx
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
    from ..nn.layers import QActivation, QConv2D, QDense
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
    from .._mxnet import mx
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
