"""``bmx-info MODEL.bmx``: inspect a converted model file without MXNet.

Bethge et al., "BMXNet 2" (2019). Prints what the file holds (format version, producer,
input and output shapes, the recorded mean/std, one line per op with its output shape,
bit width, weight bytes and multiply-accumulates) and draws the network as a Graphviz
graph (``--dot FILE``, ``--svg FILE``). The file is validated by the C++ loader first
(:func:`bmx.engine.validate_model`), then decoded by :func:`bmx.modelfile.read_model`;
neither needs MXNet.
"""
import errno
import os
import shutil
import stat
import subprocess
import sys
from collections import Counter

from . import __version__

__all__ = ["load", "summarize", "format_summary", "to_dot", "write_svg", "main"]

PROG = "bmx-info"

#: what to run when Graphviz's ``dot`` is missing
GRAPHVIZ_HINT = ("install Graphviz: `apt-get install graphviz` (Debian/Ubuntu), "
                 "`brew install graphviz` (macOS), or write --dot FILE and render it elsewhere")


def load(path):
    """Read, validate and decode a model file.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.bmx`` file written by :func:`bmx.convert` or ``bmx-convert``.

    Returns
    -------
    dict
        :func:`bmx.modelfile.read_model`'s dict (``version``, ``producer``, ``values``,
        ``inputs``, ``outputs``, ``ops``, ``num_classes``, ``mean``, ``std``, ``size``).

    Raises
    ------
    OSError
        The path is missing, unreadable, a directory or not a regular file (a FIFO would
        block).
    bmx.engine.ModelError
        The file is not a valid bmx model (a ValueError; the message names the op).
    """
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "model path is a directory", os.fspath(path))
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "model path is not a regular file", os.fspath(path))
    with open(path, "rb") as f:
        data = f.read()
    from . import engine
    from .modelfile.reader import read_model
    engine.validate_model(data)  # the C++ verifier: the Python reader trusts the offsets
    return read_model(data)


def _out(model, op):
    return model["values"][op["outputs"][0]]


def _in(model, op, i=0):
    return model["values"][op["inputs"][i]]


def _prod(xs):
    n = 1
    for x in xs:
        n *= int(x)
    return n


def _op_stats(model, op):
    """Weight bytes/bits and MACs of one op (batch 1)."""
    o = op["options"]
    t = op["type"]
    out = _out(model, op)["shape"]
    weight_bytes = sum(len(o[k]) for k in ("weight_raw", "bias_raw", "weightbits_raw") if o.get(k))
    weight_bytes += sum(4 * len(o[k]) for k in ("scale", "shift") if o.get(k) is not None)
    binary_weights = float_weights = macs = 0
    weight_bits, bops = 1, 0  # bits per quantized weight; BOPs = MACs * bits_w * bits_a
    if t == "BinaryConv2D":
        kh, kw = o["kernel"]
        k = o["inchannels"] // o["groups"] * kh * kw
        binary_weights = o["outchannels"] * k
        macs = _prod(out) * k
        float_weights = 2 * o["outchannels"]  # folded scale and shift
    elif t == "KbitConv2D":
        kh, kw = o["kernel"]
        k = o["inchannels"] * kh * kw
        binary_weights, weight_bits = o["outchannels"] * k, o["weightplanes"]
        macs = _prod(out) * k
        bops = macs * weight_bits * max(_in(model, op)["planes"], 1)
        float_weights = 2 * o["outchannels"]  # folded scale and shift
    elif t == "Conv2D":
        kh, kw = o["kernel"]
        cin = _in(model, op)["shape"][1]
        k = cin // o["groups"] * kh * kw
        float_weights = o["outchannels"] * k + (o["outchannels"] if o["bias_raw"] else 0)
        macs = _prod(out) * k
    elif t == "BinaryDense":
        k = _prod(_in(model, op)["shape"][1:])
        binary_weights = o["units"] * k
        macs = o["units"] * k
        float_weights = 2 * o["units"]  # folded scale and shift
    elif t == "Dense":
        fin = _prod(_in(model, op)["shape"][1:])
        float_weights = o["units"] * fin + (o["units"] if o["bias_raw"] else 0)
        macs = o["units"] * fin
    elif t in ("Sign", "Affine", "Quantize"):
        float_weights = sum(len(o[k]) for k in ("scale", "shift") if o.get(k) is not None)
    if t in ("BinaryConv2D", "BinaryDense"):
        bops = macs
    return {"weight_bytes": weight_bytes, "binary_weights": binary_weights,
            "binary_weight_bits": binary_weights * weight_bits, "float_weights": float_weights,
            "macs": macs, "binary_macs": macs if bops else 0, "bops": bops}


def _attrs(op):
    o = op["options"]
    parts = []
    if o.get("kernel"):
        parts.append("k" + "x".join(map(str, o["kernel"])))
    for key, tag in (("stride", "s"), ("pad", "p"), ("dilation", "d")):
        v = o.get(key)
        if v and any(x != (0 if key == "pad" else 1) for x in v):
            parts.append(tag + "x".join(map(str, v)))
    if o.get("groups", 1) not in (None, 1):
        parts.append(f"g{o['groups']}")
    if op["type"] == "Pool2D":
        parts.insert(0, "global " + o["type"] if o["global"] else o["type"])
        if o["ceil_mode"]:
            parts.append("ceil")
    if o.get("activation"):
        parts.append("+" + o["activation"])
    if op["type"] == "Sign":
        parts.append("BN threshold" if o.get("scale") is not None else "plain sign")
    return " ".join(parts)


def summarize(model):
    """Per-op and total figures of a decoded model (see :func:`load`).

    Parameters
    ----------
    model : dict
        As returned by :func:`load` or :func:`bmx.modelfile.read_model`.

    Returns
    -------
    dict
        ``ops``: one dict per op (``index``, ``type``, ``name``, ``inputs``, ``output``,
        ``shape``, ``bits`` (1 for a bit-packed output, k for k-bit levels, else 32),
        ``attrs``, ``weight_bytes``, ``binary_weights``, ``binary_weight_bits``,
        ``float_weights``, ``macs``, ``binary_macs``, ``bops``); ``counts`` (ops per type);
        the totals ``weight_bytes``, ``binary_weights`` (quantized weights, any bit width),
        ``binary_weight_bits``, ``float_weights``, ``macs``, ``binary_macs`` (MACs of the
        binary and k-bit layers), ``bops`` (those MACs times bits_w * bits_a, the papers'
        rule for k-bit layers); and ``input_shape``, ``output_shape``.
    """
    ops, tot = [], Counter()
    for i, op in enumerate(model["ops"]):
        s = _op_stats(model, op)
        tot.update(s)
        out = _out(model, op)
        ops.append({"index": i, "type": op["type"], "name": op["name"], "inputs": op["inputs"],
                    "output": op["outputs"][0], "shape": out["shape"],
                    "bits": {"Bits": 1, "Levels": out["planes"]}.get(out["kind"], 32), "attrs": _attrs(op), **s})
    return {"ops": ops, "counts": dict(Counter(op["type"] for op in model["ops"])),
            "input_shape": model["values"][model["inputs"][0]]["shape"],
            "output_shape": model["values"][model["outputs"][0]]["shape"],
            **{k: int(tot[k]) for k in ("weight_bytes", "binary_weights", "binary_weight_bits",
                                        "float_weights", "macs", "binary_macs", "bops")}}


def _fmt_floats(v):
    return "[" + ", ".join(f"{float(x):.6g}" for x in v) + "]"


def _si(n):
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


def format_summary(model, path=None):
    """The text ``bmx-info`` prints for a decoded model.

    Parameters
    ----------
    model : dict
        As returned by :func:`load`.
    path : str, optional
        Shown in the first line.

    Returns
    -------
    str
        Header (format, size, producer, shapes, mean/std, totals) and one line per op.
    """
    s = summarize(model)
    fmacs = s["macs"] - s["binary_macs"]
    # The papers' rule (Bethge et al. 2019): OPs = FLOPs + BOPs / 64, one MAC = one op; a
    # k-bit MAC is bits_w * bits_a binary ones (Zhou et al., DoReFa-Net, 2016).
    ops_rule = fmacs + s["bops"] / 64
    kbit = s["binary_weight_bits"] != s["binary_weights"]
    w = max([4] + [len(op["name"]) for op in s["ops"]])  # names are whole: they key profiles
    lines = [
        f"model:      {path if path is not None else '<bytes>'}",
        f"format:     version {model['version']}, {model['size']} bytes "
        f"({model['size'] / 2 ** 20:.3f} MiB)",
        f"producer:   {model['producer'] or '(none)'}",
        f"input:      {s['input_shape']} float32 NCHW",
        f"output:     {s['output_shape']}, classes {model['num_classes']}",
        "mean:       " + (_fmt_floats(model["mean"]) if model["mean"] is not None and len(model["mean"])
                          else "(none recorded)"),
        "std:        " + (_fmt_floats(model["std"]) if model["std"] is not None and len(model["std"])
                          else "(none recorded)"),
        f"ops:        {len(s['ops'])} (" + ", ".join(f"{t} {n}" for t, n in sorted(s["counts"].items()))
        + f"), values {len(model['values'])}",
        f"weights:    {s['binary_weights']} binary ({'1 to 4 bits' if kbit else '1 bit'}, "
        f"{s['binary_weight_bits'] / 8 / 2 ** 20:.3f} MiB), "
        f"{s['float_weights']} float (32 bit, {s['float_weights'] * 4 / 2 ** 20:.3f} MiB)",
        f"MACs:       {_si(s['binary_macs'])} binary + {_si(fmacs)} float at batch 1; "
        + (f"BOPs (k-bit MACs x bits_w x bits_a) {_si(s['bops'])}; " if kbit or s['bops'] != s['binary_macs'] else "")
        + f"OPs (FLOPs + BOPs/64) {ops_rule:.3g}",
        "",
        f"{'#':>3}  {'op':<17} {'name':<{w}} {'inputs':<10} {'out':>4}  {'shape':<18} {'bits':>4} "
        f"{'weights':>10} {'MACs':>8}  attrs",
    ]
    for op in s["ops"]:
        ins = ",".join(map(str, op["inputs"]))
        lines.append(f"{op['index']:>3}  {op['type']:<17} {op['name']:<{w}} {ins:<10} {op['output']:>4}  "
                     f"{str(op['shape']):<18} {op['bits']:>4} {op['weight_bytes']:>10} "
                     f"{_si(op['macs']):>8}  {op['attrs']}")
    return "\n".join(lines)


def _q(s):
    """A Graphviz double-quoted string."""
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_COLORS = {"BinaryConv2D": "#f4b183", "BinaryDense": "#f4b183", "KbitConv2D": "#f4b183", "Sign": "#ffe699",
           "Quantize": "#ffe699", "Conv2D": "#9dc3e6", "Dense": "#9dc3e6",
           "Pool2D": "#c5e0b4", "Concat": "#d9d9d9", "Add": "#d9d9d9", "AddToLastChannels": "#d9d9d9"}


def to_dot(model, title=None):
    """The network as a Graphviz ``digraph``: one node per op, edges labelled with the
    value's shape (bold for bit-packed values).

    Parameters
    ----------
    model : dict
        As returned by :func:`load`.
    title : str, optional
        Graph label (default: the producer).

    Returns
    -------
    str
        DOT source; ``dot -Tsvg`` renders it.
    """
    s = summarize(model)
    producers = {op["output"]: f"op{op['index']}" for op in s["ops"]}
    inp = model["inputs"][0]
    producers[inp] = "input"
    lines = ["digraph bmx {", "  rankdir=TB;",
             f"  label={_q(title if title is not None else model['producer'])}; labelloc=t;",
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=9];',
             f"  input [label={_q('input ' + str(model['values'][inp]['shape']))}, "
             'shape=ellipse, fillcolor="#ffffff"];']
    for op in s["ops"]:
        label = f"{op['type']}\n{op['name']}"
        if op["attrs"]:
            label += f"\n{op['attrs']}"
        lines.append(f"  op{op['index']} [label={_q(label)}, "
                     f"fillcolor={_q(_COLORS.get(op['type'], '#ffffff'))}];")
    for op in s["ops"]:
        for v in op["inputs"]:
            val = model["values"][v]
            bits = val["kind"] == "Bits"
            lab = ("bits " if bits else "") + "x".join(map(str, val["shape"][1:]))
            lines.append(f"  {producers[v]} -> op{op['index']} [label={_q(lab)}"
                         + (", style=bold, color=\"#c55a11\"" if bits else "") + "];")
    out = model["outputs"][0]
    lines.append(f"  output [label={_q('logits ' + str(model['values'][out]['shape']))}, "
                 'shape=ellipse, fillcolor="#ffffff"];')
    lines.append(f"  {producers[out]} -> output;")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_svg(dot_source, path, dot_exe=None):
    """Render DOT source to an SVG file with Graphviz's ``dot``.

    Parameters
    ----------
    dot_source : str
        As returned by :func:`to_dot`.
    path : str or os.PathLike
        Output file.
    dot_exe : str, optional
        The ``dot`` program (default: found on PATH).

    Raises
    ------
    FileNotFoundError
        ``dot`` is not installed (the message says how to install it).
    RuntimeError
        ``dot`` failed (its stderr is in the message).
    """
    exe = dot_exe or shutil.which("dot")
    if exe is None:
        raise FileNotFoundError(errno.ENOENT, f"Graphviz's dot not found on PATH: {GRAPHVIZ_HINT}", "dot")
    r = subprocess.run([exe, "-Tsvg", "-o", os.fspath(path)], input=dot_source.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"dot -Tsvg failed ({r.returncode}): {r.stderr.decode(errors='replace').strip()}")


from ._cli import ArgumentParser as _Parser  # noqa: E402
from ._cli import UsageError as _UsageError  # noqa: E402


def _parser():
    p = _Parser(prog=PROG, description="Inspect a converted bmx model file (no MXNet needed): "
                                       "ops, shapes, sizes, bit widths, producer, recorded mean/std, "
                                       "and the network as a Graphviz graph.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    p.add_argument("model", help="a .bmx file written by bmx-convert / bmx.convert")
    p.add_argument("--dot", metavar="FILE", help="also write the network as Graphviz DOT source")
    p.add_argument("--svg", metavar="FILE", help="also render the network to SVG (needs Graphviz's dot)")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print the summary")
    return p


def _write_text(path, text):
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise _UsageError(f"output directory {d} does not exist")
    with open(path, "w") as f:
        f.write(text)


def main(argv=None):
    """Entry point of ``bmx-info``; returns 0, or 2 with a one-line reason on bad input."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = _parser().parse_args(argv)
        if args.svg and shutil.which("dot") is None:  # before the work, not after
            raise _UsageError(f"--svg needs Graphviz's dot, which is not on PATH: {GRAPHVIZ_HINT}")
        model = load(args.model)
        if not args.quiet:
            print(format_summary(model, args.model))
        if args.dot or args.svg:
            src = to_dot(model)
            if args.dot:
                _write_text(args.dot, src)
            if args.svg:
                write_svg(src, args.svg)
    except (_UsageError, OSError, ValueError, RuntimeError) as e:  # ModelError is a ValueError
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, OSError) and e.filename is not None and e.strerror:
            msg = f"{e.filename}: {e.strerror}"
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
