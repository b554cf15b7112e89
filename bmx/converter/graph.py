"""The captured MXNet symbol graph: json nodes, parameter values and inferred shapes.

:class:`_Graph` is what the capture stage (:mod:`.capture`) hands to the build stage
(:mod:`.build`); it can also evaluate a subgraph in MXNet, which the build stage uses to
check what a quantized block computes instead of guessing from its op sequence.
"""
import ast
import json
import re

from .._cli import first_line as _first_line
from .errors import ConversionError


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


class _Graph:
    """The symbol graph as plain json nodes plus parameter values and inferred shapes."""

    def __init__(self, sym, params, input_shape, blocks=None):
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
        self.shapes = self._infer_shapes(sym, params)
        self.consumers = {i: [] for i in range(len(self.nodes))}
        for i, n in enumerate(self.nodes):
            for src in n["inputs"]:
                self.consumers[src[0]].append(i)

    def _infer_shapes(self, sym, params):
        """``(node id, output index) -> shape`` of every node output, for the input shape."""
        from .._mxnet import mx
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
        shapes = {}
        for i, n in enumerate(self.nodes):
            for k in range(4):
                if (n["name"], k) in by_name:
                    shapes[(i, k)] = by_name[(n["name"], k)]
        return shapes

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
        from .._mxnet import mx
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
