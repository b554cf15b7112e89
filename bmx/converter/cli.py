"""The ``bmx-convert`` command: a bmx-train run directory, a model zoo name or an exported
``-symbol.json`` + ``.params`` pair -> a ``.bmx`` file, with the size report."""
import json
import os
import sys

from .. import __version__
from .._cli import ArgumentParser as _Parser
from .._cli import UsageError as _UsageError
from .._cli import first_line as _first_line
from .._mxnet import MXNetMissingError, param_arrays
from .capture import _symbol_graph
from .errors import ConversionError
from .pipeline import convert, convert_symbol, float_size_bytes


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


def _parser():
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
    return p


def _run(argv):
    args = _parser().parse_args(argv)
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
        params, data = _convert_symbol_args(args, shp, norm)
    else:
        params, data = _convert_zoo_args(args, shp, norm)
    if args.symbol is None and args.params is None:
        print(f"note: no --params given: converted freshly initialized {args.model} weights")
    _report(params, data, args.output)
    return 0


def _convert_symbol_args(args, shp, norm):
    """``--symbol S --params P``: returns (parameters, file bytes)."""
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
    return params, data


def _convert_zoo_args(args, shp, norm):
    """A model zoo name, with ``--params`` or freshly initialized: returns (parameters,
    file bytes)."""
    if args.model is None:
        raise _UsageError("give a model zoo name or --symbol")
    if args.params is not None and not os.path.isfile(args.params):
        raise _UsageError(f"file not found: {args.params}")
    if args.classes is not None and args.classes < 1:
        raise _UsageError(f"--classes must be >= 1, got {args.classes}")
    from .. import model_zoo
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
        from ..model_zoo.common import default_initializer
        net.initialize(default_initializer())
    data = convert(net, shp, args.output, **norm)
    return param_arrays(net.collect_params()), data


def _param_mismatch(net, path):
    """Say how the arrays of ``path`` differ from ``net``'s parameters (the first shape that
    differs, with the option that sets it), or None when that is not the problem."""
    from .._mxnet import mx
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
        net = run_net(run_dir, run, targs)
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


def run_net(run_dir, run, targs):
    """The network of a bmx-train run with its best.params loaded, hybridized.

    Parameters
    ----------
    run_dir : str
        The run directory.
    run : dict
        Its ``run.json``.
    targs : dict
        The training arguments recorded there (``run["args"]``).

    Returns
    -------
    mxnet.gluon.HybridBlock

    Raises
    ------
    bmx._cli.UsageError
        When best.params is missing or does not fit the recorded model.
    """
    from ..train import UsageError as TrainUsage
    from ..train import build_model
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
