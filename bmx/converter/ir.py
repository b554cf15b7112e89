"""The converter's IR: :class:`_Op` nodes built from the graph, held in an :class:`_IR`.

An op's id is the json node id of its output; ``inputs`` are op ids. The build stage
(:mod:`.build`) creates the ops, the passes (:mod:`.passes`) rewrite the :class:`_IR`,
the serialisation stage (:mod:`.serialize`) writes one value per op in ``order``.
"""


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


class _IR:
    """The built ops in topological ``order``, without aliases, with the graph's input and
    output op ids."""

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
