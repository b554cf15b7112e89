"""Read a bmx model file (``docs/model-format.md``) into plain Python objects.

Bethge et al., "BMXNet 2" (2019). Uses the generated FlatBuffers code in :mod:`bmx.fb`.
"""
import numpy as np

__all__ = ["read_model", "describe"]

_OPTS = None


def _opt_classes():
    global _OPTS
    if _OPTS is None:
        import importlib
        from ..fb.OpOptions import OpOptions as OO
        _OPTS = {}
        for name, val in vars(OO).items():
            if name.startswith("_") or name == "NONE":
                continue
            mod = importlib.import_module(f"bmx.fb.{name}")
            _OPTS[val] = (name, getattr(mod, name))
    return _OPTS


def _ints(tab, name):
    if getattr(tab, name + "IsNone")():
        return None
    return [int(v) for v in getattr(tab, name + "AsNumpy")()]


def _floats(tab, name):
    if getattr(tab, name + "IsNone")():
        return None
    return np.asarray(getattr(tab, name + "AsNumpy")(), dtype=np.float32).copy()


def _raw(tab, name):
    if getattr(tab, name + "IsNone")():
        return None
    return np.asarray(getattr(tab, name + "AsNumpy")(), dtype=np.uint8).tobytes()


def _shape_weights(tname, o, in_shape):
    """The raw weight bytes of an op as numpy arrays of their documented shapes
    (``in_shape()``: the shape of the op's first input)."""
    if tname == "Conv2D":
        cin = in_shape()[1]
        kh, kw = o["kernel"]
        o["weight"] = np.frombuffer(o["weight_raw"], "<f4").reshape(
            o["outchannels"], cin // o["groups"], kh, kw)
        o["bias"] = None if not o["bias_raw"] else np.frombuffer(o["bias_raw"], "<f4")
    elif tname == "BinaryConv2D":
        kh, kw = o["kernel"]
        nw = (o["inchannels"] // o["groups"] + 63) // 64
        o["weight_bits"] = np.frombuffer(o["weightbits_raw"], "<u8").reshape(
            o["outchannels"], kh, kw, nw)
    elif tname == "KbitConv2D":
        kh, kw = o["kernel"]
        nw = (o["inchannels"] + 63) // 64
        o["weight_bits"] = np.frombuffer(o["weightbits_raw"], "<u8").reshape(
            o["outchannels"], o["weightplanes"], kh, kw, nw)
    elif tname == "BinaryDense":
        _, c, *hw = in_shape()
        h, w = hw if hw else (1, 1)
        o["weight_bits"] = np.frombuffer(o["weightbits_raw"], "<u8").reshape(
            o["units"], h, w, (c + 63) // 64)
    elif tname == "Dense":
        o["weight"] = np.frombuffer(o["weight_raw"], "<f4").reshape(o["units"], -1)
        o["bias"] = None if not o["bias_raw"] else np.frombuffer(o["bias_raw"], "<f4")


def read_model(data):
    """Parse a model file (bytes or path) into a dict: ``version``, ``producer``,
    ``values`` (name, shape, kind), ``inputs``, ``outputs``, ``num_classes``, ``mean``,
    ``std`` and ``ops`` (``type``, ``name``, ``inputs``, ``outputs``, ``options`` dict with
    weights as numpy arrays: float32 ``[C_out, C_in/g, KH, KW]`` for Conv2D, uint64
    ``[C_out, KH, KW, words]`` for BinaryConv2D, ``[C_out, planes, KH, KW, words]`` for
    KbitConv2D, ``[units, in]`` for Dense, uint64 ``[units, H, W, words]`` for
    BinaryDense); Levels values carry their ``planes``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        with open(data, "rb") as f:
            data = f.read()
    data = bytes(data)
    from ..fb.Model import Model
    from ..converter import FILE_IDENTIFIER
    if len(data) < 8 or not Model.ModelBufferHasIdentifier(data, 0):
        raise ValueError(f"not a bmx model file (identifier {data[4:8]!r}, expected "
                         f"{FILE_IDENTIFIER!r})")
    m = Model.GetRootAs(data, 0)
    out = {"version": m.Version(),
           "producer": (m.Producer() or b"").decode(),
           "num_classes": m.NumClasses(),
           "inputs": _ints(m, "Inputs"), "outputs": _ints(m, "Outputs"),
           "mean": _floats(m, "Mean"), "std": _floats(m, "Std"),
           "values": [], "ops": [], "size": len(data)}
    for i in range(m.ValuesLength()):
        v = m.Values(i)
        out["values"].append({"name": (v.Name() or b"").decode(), "shape": _ints(v, "Shape"),
                              "kind": {1: "Bits", 2: "Levels"}.get(v.Kind(), "Float"),
                              "planes": int(v.Planes())})
    opts = _opt_classes()
    for i in range(m.OpsLength()):
        op = m.Ops(i)
        tname, cls = opts[op.OptionsType()]
        t = cls()
        tab = op.Options()
        t.Init(tab.Bytes, tab.Pos)
        o = {}
        for f in ("Kernel", "Stride", "Pad", "Dilation"):
            if hasattr(t, f + "IsNone"):
                o[f.lower()] = _ints(t, f)
        for f in ("OutChannels", "InChannels", "Groups", "Units", "WeightPlanes"):
            if hasattr(t, f):
                o[f.lower()] = int(getattr(t, f)())
        for f in ("Scale", "Shift"):
            if hasattr(t, f + "IsNone"):
                o[f.lower()] = _floats(t, f)
        if hasattr(t, "Activation"):
            o["activation"] = "relu" if t.Activation() == 1 else None
        if tname == "Pool2D":
            o["type"] = "max" if t.Type() == 0 else "avg"
            o["count_include_pad"] = bool(t.CountIncludePad())
            o["global"] = bool(t.Global_())
            o["ceil_mode"] = bool(t.CeilMode())
        for f in ("Weight", "Bias", "WeightBits"):
            if hasattr(t, f + "IsNone"):
                o[f.lower() + "_raw"] = _raw(t, f)
        _shape_weights(tname, o, lambda: out["values"][_ints(op, "Inputs")[0]]["shape"])
        out["ops"].append({"type": tname, "name": (op.Name() or b"").decode(),
                           "inputs": _ints(op, "Inputs"), "outputs": _ints(op, "Outputs"),
                           "options": o})
    return out


def describe(data):
    """A human-readable summary of a model file (one line per op)."""
    m = read_model(data)
    lines = [f"bmx model: format version {m['version']}, producer {m['producer']!r}, "
             f"{m['size']} bytes, {len(m['ops'])} ops, {len(m['values'])} values, "
             f"classes {m['num_classes']}, input {m['values'][m['inputs'][0]]['shape']}"]
    for op in m["ops"]:
        o = op["options"]
        vout = m["values"][op["outputs"][0]]
        extra = []
        for k in ("kernel", "stride", "pad", "dilation", "groups", "activation", "type"):
            if o.get(k) not in (None, 1, [1, 1]) or k in ("kernel",) and o.get(k):
                extra.append(f"{k}={o[k]}")
        lines.append(f"  {op['type']:<17} {op['name']:<40} {op['inputs']} -> {op['outputs']} "
                     f"{vout['kind']}{vout['shape']} " + " ".join(extra))
    return "\n".join(lines)

