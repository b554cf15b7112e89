"""Build stage: the json graph -> IR ops, one :mod:`bmx.nn` block or Gluon operator each.

:class:`_Builder` groups the nodes of every quantized block by the block that owns them
(:func:`_groups`) and lowers each group as a whole at its output node
(:mod:`.build_blocks`: what the block computes is checked on its real weights and probe
inputs); every other node is one standard operator (:mod:`.build_ops`).
"""
import re

from .build_blocks import GROUP_LOWERING
from .build_ops import _translate
from .errors import ConversionError
from .ir import _Op


class _Builder:
    """Turns the json graph into the IR, one :mod:`bmx.nn` block at a time."""

    def __init__(self, g):
        self.g = g
        self.ops = {}       # IR id (json node id of the op's output) -> _Op
        self.order = []
        self.output = None

    def build(self):
        g = self.g
        groups = _groups(g)
        self.owner = {}
        for p, (kind, block, members) in groups.items():
            for i in members:
                self.owner[i] = p
        group_io = {p: _group_io(g, p, members) for p, (_, _, members) in groups.items()}
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
                lowered = GROUP_LOWERING[kind](self, p, block, members, ext, out)
                # one op, or a list of (IR id, op) ending with the block's output op
                for key, op in (lowered if isinstance(lowered, list) else [(out, lowered)]):
                    self._add(key, op)
                continue
            self._add(i, _translate(self, i, n))
        h = g.heads[0]
        if h[1] != 0:
            raise ConversionError("the network output must be the first output of its node")
        self.output = self.ref((h[0], h[1]))
        return self

    def _add(self, nid, op):
        self.ops[nid] = op
        self.order.append(nid)

    def ref(self, src):
        """The IR id that the json input ``src`` (node id, output index) reads, through
        aliases; refuses parameters used as data and outputs other than the first."""
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

    def param(self, node, k, what):
        """The stored parameter value of input ``k`` of ``node`` (``what`` names it in
        the error when that input is computed)."""
        g = self.g
        src = node["inputs"][k]
        if not g.is_param(src[0]):
            raise ConversionError(f"{node['name']!r}: its {what} is computed, not a stored "
                                  f"parameter ({g.nodes[src[0]]['op']}); cannot convert")
        return g.params[g.nodes[src[0]]["name"]]


# -- grouping nodes by the bmx.nn block that owns them ----------------------------------

def _block_prefixes(g):
    """``prefix -> (kind, block or None)`` of every quantized block of the graph."""
    prefixes = {}
    if g.blocks is not None:
        from ..nn.layers import QActivation
        for p, b in g.blocks.items():
            prefixes[p] = ("qact" if isinstance(b, QActivation) else
                           "qdense" if type(b).__name__ == "QDense" else "qconv", b)
        return prefixes
    # Exported graph: no block objects. A Convolution/FullyConnected whose weight is
    # computed (not a stored parameter) is a quantized layer; the nodes named after a
    # QActivation block belong to it. What each group computes is checked when it is built.
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
    return prefixes


def _groups(g):
    """``key -> (kind, block or None, member node ids)``: the operator nodes of each
    quantized block, owned by the longest block prefix their name starts with."""
    prefixes = _block_prefixes(g)
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
        comps = _components(g, members)
        for k, comp in enumerate(comps):
            key = p if len(comps) == 1 else f"{p}call{k}_"
            groups[key] = (prefixes[p][0], prefixes[p][1], comp)
    return groups


def _components(g, members):
    """The connected components of the member nodes (union-find over their inputs)."""
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


def _group_io(g, prefix, members):
    """The external inputs ``(node id, output index)`` of a group and its one output node."""
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
