"""``bmx-train``: train binary networks from scratch (no full-precision pretraining).

Bethge et al., "Back to Simplicity: How to Train Accurate BNNs from Scratch?" (2019):
Adam/RAdam, cosine decay, He-normal init, no weight decay on binary weights and
BatchNorm, gradient-cancelling threshold 1.3 (spec section 6). See docs/training.md.

Examples
--------
    bmx-train --model binarydensenet28 --dataset imagenet --data-dir /data/imagenet \\
        --epochs 120 --batch-size 256 --optimizer radam --lr 0.002
    bmx-train --model "binarydensenet_flex:block_config=(2,2,2),growth_rate=32,reduction=2" \\
        --dataset digits
    bmx-launch -n 2 -- bmx-train --kvstore dist_sync --dataset digits ...
"""
import argparse
import csv
import json
import math
import os
import pickle
import random
import shutil
import sys
import tempfile
import time

import numpy as np

from ._mxnet import MXNetMissingError, settle
from ._cli import ArgumentParser as _Parser
from ._cli import UsageError  # noqa: F401 - part of this module's API
from ._cli import atomic_write as _atomic_write
from ._cli import first_line as _first_line
from ._cli import read_json as _read_json
from ._cli import write_json as _write_json

__all__ = ["main", "run", "build_parser", "parse_args", "build_model", "UsageError",
           "lr_at"]

PROG = "bmx-train"
CHECKPOINT = "checkpoint.json"


def _positive_int(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _nonneg_int(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {s!r}")
    return v


def _float(lo=None, hi=None, lo_open=False, hi_open=False, allow_inf=False):
    def conv(s):
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
        if math.isnan(v) or (math.isinf(v) and not allow_inf):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {s!r}")
        if lo is not None and (v < lo or (lo_open and v == lo)):
            raise argparse.ArgumentTypeError(
                f"expected a number {'>' if lo_open else '>='} {lo}, got {s!r}")
        if hi is not None and (v > hi or (hi_open and v == hi)):
            raise argparse.ArgumentTypeError(
                f"expected a number {'<' if hi_open else '<='} {hi}, got {s!r}")
        return v
    return conv


def _int_list(s):
    try:
        v = [int(x) for x in s.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated epochs, got {s!r}") from None
    if not v:
        raise argparse.ArgumentTypeError(f"expected comma-separated epochs, got {s!r}")
    return v


def build_parser():
    from .data import DATASETS
    p = _Parser(prog=PROG, description="Train a binary neural network from scratch "
                "(bmx, BMXNet-v2 semantics). Outputs go to --save-dir: checkpoint.json "
                "(+ epoch files), log.csv, curves.png, summary.json, model-symbol.json / "
                "model-0000.params (for bmx-convert).",
                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    from . import __version__
    a("--version", action="version", version=f"{PROG} {__version__}")
    a("--model", default="binarydensenet_flex:block_config=(2,2,2),growth_rate=32,"
      "init_features=32,reduction=2",
      help="zoo name (e.g. binarydensenet28, meliusnet22, resnete18) or flex spec "
           "'constructor:key=value,...' (values are Python literals)")
    a("--dataset", default="digits", choices=DATASETS,
      help="digits and synthetic are built in; fashion-mnist is found where Debian's "
           "dataset-fashion-mnist package puts it; the others read --data-dir")
    a("--data-dir", default=None, help="where the dataset files are (nothing is downloaded)")
    a("--val-split", type=_nonneg_int, default=None,
      help="training images held out from the end as the validation split, which picks "
           "the best epoch (default min(5000, N/10)); the test set is scored once at the end")
    a("--train-images", type=_positive_int, default=None,
      help="train on the first N training images only (after the validation split)")
    a("--augment", default="default",
      help="training augmentation of the in-memory datasets: default (the dataset's own), "
           "none, cropP or cropP_flip (random crop after padding by P pixels, flip)")
    a("--classes", type=_positive_int, default=None,
      help="number of classes: synthetic (default 10) and ImageNet RecordIO (default 1000); "
           "the other datasets know theirs")
    a("--image-size", type=_positive_int, default=None,
      help="input side (default per dataset: digits 16, mnist 28, cifar10 32, imagenet 224)")
    a("--epochs", type=_positive_int, default=10, help="training epochs")
    a("--batch-size", type=_positive_int, default=64, help="per worker")
    a("--optimizer", default="adam", choices=("adam", "radam", "sgd"), help="optimizer")
    a("--lr", type=_float(0, lo_open=True), default=0.005,
      help="peak learning rate (spec: 0.002 per 256 images for ImageNet; scale linearly)")
    a("--lr-mode", default="cosine", choices=("cosine", "step"),
      help="cosine decay to 0 at the end, or steps at --lr-steps")
    a("--lr-steps", type=_int_list, default=None,
      help="epochs at which --lr-mode step multiplies the lr by --lr-factor, e.g. 34,37")
    a("--lr-factor", type=_float(0, 1, lo_open=True, hi_open=True), default=0.1,
      help="lr multiplier at each of --lr-steps")
    a("--warmup-epochs", type=_float(0), default=0.0, help="linear warm-up from 0")
    a("--wd", type=_float(0), default=0.0,
      help="weight decay of full-precision weights (binary weights and BN: always 0)")
    a("--momentum", type=_float(0, 1, hi_open=True), default=0.9, help="SGD momentum")
    a("--clip-threshold", type=_float(0, allow_inf=True), default=1.3,
      help="gradient-cancelling threshold t_clip of the sign STE")
    a("--float-twin", action="store_true",
      help="train the float twin: the same network with 32-bit layers where the binary "
           "ones are (the baseline of the binary model)")
    a("--scaling", default="none", choices=("none", "weight", "xnor"),
      help="scaling factors of the binary convolutions: none (the papers' choice from "
           "scratch), weight (per-channel mean|W|) or xnor (XNOR-Net: also the input magnitude)")
    a("--init-from", default=None, metavar="PARAMS",
      help="initialise from the parameters of a network of the same structure, e.g. the "
           "trained float twin's best.params (matched in order, shapes checked)")
    a("--bits", type=_positive_int, default=1, help="weight bits of the binary layers")
    a("--bits-a", type=_positive_int, default=1, help="activation bits of the binary layers")
    a("--stem", default=None, choices=("imagenet", "grouped", "thumbnail"),
      help="stem (default: thumbnail for inputs under 50 px, else the model's default)")
    a("--ctx", default="cpu", type=_ctx_spec,
      help="devices of this worker: cpu, gpu:0 or gpu:0,1,2,3 (the batch is split across "
           "them and gradients are summed by --kvstore local/device)")
    a("--kvstore", default="local", choices=("local", "device", "dist_sync"),
      help="dist_sync: data-parallel over MXNet's parameter server (start with bmx-launch)")
    a("--num-workers", type=_nonneg_int, default=0,
      help="data-loading worker processes (image folders / RecordIO)")
    a("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
      help="continue from --save-dir/checkpoint.json (or the given file/directory)")
    a("--save-dir", default="runs/bmx-train", help="logs, checkpoints, plot and exported model")
    a("--seed", type=_nonneg_int, default=0,
      help="seeds init, data order and augmentation (same seed: same run)")
    a("--log-interval", type=_positive_int, default=10, help="batches between bar updates")
    a("--label-smoothing", type=_float(0, 1, hi_open=True), default=0.0,
      help="label smoothing epsilon")
    a("--mixup", type=_float(0), default=0.0, help="mixup Beta(alpha, alpha); 0 = off")
    a("--teacher", default=None,
      help="float teacher for knowledge distillation: a zoo/flex spec, a gluon model_zoo "
           "name, or an exported NAME-symbol.json")
    a("--teacher-params", default=None, help="parameters of --teacher")
    a("--distill-alpha", type=_float(0, 1), default=0.5, help="weight of the teacher loss")
    a("--distill-temperature", type=_float(0, lo_open=True), default=2.0,
      help="softmax temperature of the distillation loss")
    a("--val-batch-size", type=_positive_int, default=64,
      help="evaluation batch size (64 measured faster than 256 on 2 cores)")
    a("--no-test", action="store_true",
      help="do not score the test set at the end (benchmarks, studies that score it later)")
    a("--no-plot", action="store_true", help="skip curves.png")
    a("--quiet", action="store_true", help="no progress bar")
    return p


def parse_args(argv=None):
    """Parse and cross-check the command line; raises :class:`UsageError`."""
    args = build_parser().parse_args(argv)
    if args.lr_mode == "step" and not args.lr_steps:
        raise UsageError("--lr-mode step needs --lr-steps (e.g. --lr-steps 34,37)")
    if args.lr_mode == "cosine" and args.lr_steps:
        raise UsageError("--lr-steps only applies to --lr-mode step")
    if args.lr_steps:
        if sorted(args.lr_steps) != args.lr_steps or len(set(args.lr_steps)) != len(args.lr_steps):
            raise UsageError(f"--lr-steps must be increasing, got {args.lr_steps}")
        if args.lr_steps[0] < 1 or args.lr_steps[-1] >= args.epochs:
            raise UsageError(f"--lr-steps must lie in 1..{args.epochs - 1} "
                             f"(--epochs {args.epochs})")
    if args.warmup_epochs >= args.epochs:
        raise UsageError(f"--warmup-epochs {args.warmup_epochs:g} must be below --epochs "
                         f"{args.epochs}")
    for name in ("bits", "bits_a"):
        if getattr(args, name) > 32:
            raise UsageError(f"--{name.replace('_', '-')} must be in 1..32")
    if (args.teacher is None) != (args.teacher_params is None):
        raise UsageError("--teacher and --teacher-params go together")
    if args.init_from is not None and not os.path.isfile(args.init_from):
        raise UsageError(f"--init-from {args.init_from}: no such file")
    if args.teacher_params is not None and not os.path.isfile(args.teacher_params):
        raise UsageError(f"--teacher-params {args.teacher_params}: no such file")
    if args.teacher and args.teacher.endswith("-symbol.json") and not os.path.isfile(args.teacher):
        raise UsageError(f"--teacher {args.teacher}: no such file")
    if args.classes is not None and args.dataset not in ("synthetic", "imagenet"):
        raise UsageError(f"--classes applies to synthetic and imagenet (RecordIO) only; "
                         f"{args.dataset} knows its classes")
    if args.dataset in ("digits", "synthetic") and args.data_dir:
        raise UsageError(f"--dataset {args.dataset} is built in; drop --data-dir")
    if args.augment != "default" and args.dataset in ("imagenet", "imagefolder"):
        raise UsageError("--augment applies to the in-memory datasets; imagenet and "
                         "imagefolder use the papers' random-resized-crop")
    kind, ids = args.ctx
    if kind == "gpu":
        import mxnet as mx
        n = mx.context.num_gpus()
        if max(ids) >= n:
            raise UsageError(f"--ctx gpu:{','.join(map(str, ids))}: this MXNet sees {n} GPU(s) "
                             "(the pip package mxnet is CPU-only; use an mxnet-cuXXX build)")
    if len(ids) > 1 and args.kvstore == "dist_sync":
        raise UsageError("--kvstore dist_sync uses one device per worker: start one worker per "
                         "device (bmx-launch -n N / MXNet's launcher) instead of --ctx with "
                         "several devices")
    if args.batch_size < len(ids):
        raise UsageError(f"--batch-size {args.batch_size} is smaller than the {len(ids)} devices "
                         "of --ctx")
    if args.kvstore == "dist_sync" and "DMLC_ROLE" not in os.environ:
        raise UsageError("--kvstore dist_sync needs a launcher: bmx-launch -n N -- bmx-train "
                         "... (or MXNet's tools/launch.py); DMLC_ROLE is not set")
    if args.kvstore != "dist_sync" and os.environ.get("DMLC_ROLE") in ("server", "scheduler"):
        raise UsageError("started as a parameter-server role but --kvstore is not dist_sync")
    return args


# --------------------------------------------------------------------------- models
def parse_model_spec(spec):
    """``'name'`` or ``'name:key=value,...'`` -> (name, kwargs) (values: Python literals);
    :func:`bmx.model_zoo.parse_model_spec` with bad specs as :class:`UsageError`."""
    from .model_zoo.spec import parse_model_spec as parse
    try:
        return parse(spec)
    except ValueError as e:
        raise UsageError(str(e)) from None


def check_model_name(spec):
    """Raise :class:`UsageError` unless ``spec`` names a zoo model or a flex constructor
    with options it has (checked before any data is read or any process waits)."""
    from . import model_zoo
    try:
        model_zoo.resolve_model_spec(spec)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return parse_model_spec(spec)


def build_model(spec, classes, stem=None, clip_threshold=1.3, bits=1, bits_a=1,
                scaling="none", **extra):
    """Build ``spec`` (zoo name or ``constructor:key=value,...``) with
    :func:`bmx.model_zoo.get_model`; raises :class:`UsageError` for an unknown model or
    bad arguments."""
    import mxnet as mx
    from . import model_zoo
    from .nn import set_binary_layer_config
    check_model_name(spec)
    common = dict(classes=classes, clip_threshold=clip_threshold, bits=bits, bits_a=bits_a)
    if stem is not None:
        common["stem"] = stem
    common.update(extra)
    approx = None if scaling in (None, "none") else scaling
    with set_binary_layer_config(bits=bits, bits_a=bits_a, grad_cancel=clip_threshold,
                                 approximation=approx):
        try:
            return model_zoo.get_model(spec, **common)
        except (TypeError, ValueError, KeyError, mx.base.MXNetError) as e:
            raise UsageError(f"cannot build model {spec!r}: {_first_line(e)}") from None


def build_teacher(spec, params, classes, image_shape, stem=None, ctxs=None):
    """A float teacher: exported ``*-symbol.json``, a bmx zoo / flex spec (built with
    32-bit layers), or a :mod:`mxnet.gluon.model_zoo.vision` name."""
    import mxnet as mx
    from mxnet import gluon
    ctxs = ctxs or [mx.cpu()]
    if spec.endswith("-symbol.json"):
        with _quiet_warnings():  # SymbolBlock warns about its input name
            net = gluon.SymbolBlock.imports(spec, ["data"], params, ctx=ctxs)
    else:
        name, kwargs = parse_model_spec(spec)
        try:
            net = build_model(spec, classes, stem=stem, binary=False)
        except UsageError:
            try:
                net = gluon.model_zoo.vision.get_model(name, classes=classes, **kwargs)
            except (ValueError, TypeError) as e:
                raise UsageError(f"unknown teacher {spec!r}: not a bmx zoo model, not a gluon "
                                 f"model_zoo.vision model, not a -symbol.json ({e})") from None
        try:
            net.load_parameters(params, ctx=ctxs)
        except (AssertionError, mx.base.MXNetError, ValueError) as e:
            raise UsageError(f"--teacher-params {params} does not fit {spec!r}: "
                             f"{_first_line(e)}") from None
    net.hybridize(static_alloc=True)
    try:
        out = net(mx.nd.zeros((1,) + tuple(image_shape), ctx=ctxs[0]))
    except mx.base.MXNetError as e:
        raise UsageError(f"teacher {spec!r} cannot run on {image_shape} inputs: "
                         f"{_first_line(e)}") from None
    if out.shape[-1] != classes:
        raise UsageError(f"teacher {spec!r} has {out.shape[-1]} outputs, the data has "
                         f"{classes} classes")
    for p in net.collect_params().values():
        p.grad_req = "null"
    return net


class _quiet_warnings:
    def __enter__(self):
        import warnings
        self._c = warnings.catch_warnings()
        self._c.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._c.__exit__(*exc)


# --------------------------------------------------------------------------- schedule
def lr_at(step, steps_per_epoch, args):
    """Learning rate of global step ``step`` (0-based): linear warm-up, then cosine decay
    to 0 at the end of the last epoch, or ``--lr-factor`` at each of ``--lr-steps``."""
    total = args.epochs * steps_per_epoch
    warm = int(round(args.warmup_epochs * steps_per_epoch))
    if step < warm:
        return args.lr * (step + 1) / warm
    if args.lr_mode == "cosine":
        return args.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
    epoch = step // steps_per_epoch
    return args.lr * args.lr_factor ** sum(1 for s in args.lr_steps if epoch >= s)


# --------------------------------------------------------------------------- files
def _export_atomic(net, out):
    """``net.export`` to ``out/model-symbol.json`` + ``model-0000.params`` through a temp
    directory and renames: a failure leaves the previous export intact (params renamed
    first; the symbol of one run never changes)."""
    settle()
    tmpdir = tempfile.mkdtemp(prefix=".tmp-export-", dir=out)
    try:
        net.export(os.path.join(tmpdir, "model"), epoch=0)
        for name in ("model-0000.params", "model-symbol.json"):
            with open(os.path.join(tmpdir, name), "rb") as f:
                os.fsync(f.fileno())
            os.replace(os.path.join(tmpdir, name), os.path.join(out, name))
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _init_from(net, path, ctxs):
    """Copy the arrays of ``path`` into ``net`` in order (a float twin and its binary network
    have the same parameters in the same order, under other names); shapes must agree."""
    import mxnet as mx
    try:
        saved = list(mx.nd.load(path).items())
    except Exception as e:  # noqa: BLE001 - MXNetError for a foreign file
        raise UsageError(f"--init-from {path}: cannot read it ({_first_line(e)})") from None
    mine = list(net._collect_params_with_prefix().items())
    if len(saved) != len(mine):
        raise UsageError(f"--init-from {path}: {len(saved)} arrays, the model has {len(mine)} "
                         "parameters (not the same structure)")
    for (sname, arr), (name, p) in zip(saved, mine):
        if arr.shape != p.shape:
            raise UsageError(f"--init-from {path}: {sname} has shape {arr.shape}, the model's "
                             f"{name} {p.shape} (not the same structure)")
        p.set_data(arr.as_in_context(ctxs[0]))


_RESUME_MUST_MATCH = ("model", "float_twin", "scaling", "init_from", "dataset", "image_size",
                      "bits", "bits_a", "stem", "optimizer",
                      "clip_threshold", "batch_size", "kvstore", "val_split", "train_images",
                      "augment")


def _find_checkpoint(resume, save_dir):
    path = os.path.join(save_dir, CHECKPOINT) if resume == "auto" else resume
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT)
    if not os.path.isfile(path):
        raise UsageError(f"--resume: no checkpoint at {path} (run without --resume first)")
    try:
        with open(path) as f:
            ck = json.load(f)
        base = os.path.dirname(os.path.abspath(path))
        for k in ("params", "states", "rng"):
            ck[k] = os.path.join(base, ck[k])
            if not os.path.isfile(ck[k]):
                raise UsageError(f"--resume: {path} names {ck[k]}, which is missing")
        int(ck["epoch"])
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"--resume: {path} is not a bmx-train checkpoint ({e})") from None
    return ck


def _load_checkpoint_files(ckpt, net, trainer, ctxs):
    """Restore parameters, trainer states and RNG states; a damaged or foreign file is a
    :class:`UsageError` naming it (not a traceback)."""
    def fail(path, e):
        raise UsageError(f"--resume: cannot load {path} (damaged or not from this run?): "
                         f"{_first_line(e)}") from None
    try:
        net.load_parameters(ckpt["params"], ctx=ctxs)
    except Exception as e:  # MXNetError, AssertionError (names/shapes), OSError
        fail(ckpt["params"], e)
    try:
        trainer.load_states(ckpt["states"])
    except Exception as e:  # pickle errors, MXNetError
        fail(ckpt["states"], e)
    try:
        with open(ckpt["rng"], "rb") as f:
            rng = pickle.load(f)
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
    except Exception as e:
        fail(ckpt["rng"], e)


# --------------------------------------------------------------------------- training
class _Hooks:
    """Test/extension hooks: ``on_batch(epoch, batch)`` is called before every step."""

    def __init__(self, on_batch=None):
        self.on_batch = on_batch


def main(argv=None):
    """Console entry point: returns the exit code (0 ok, 2 bad input, 130 interrupted)."""
    return run(argv)


def run(argv=None, hooks=None):
    from .data import DataError
    try:
        args = parse_args(argv)
        summary = train(args, hooks)
    except (UsageError, DataError, MXNetMissingError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; the last finished epoch is checkpointed, continue with "
              "the same command plus --resume", file=sys.stderr)
        return 130
    return 0 if summary is not None else 1


def _ctx_spec(s):
    """``cpu``, ``cpu:0,1``, ``gpu:0`` or ``gpu:0,1,2,3`` -> (kind, [ids])."""
    kind, _, ids = s.strip().partition(":")
    if kind not in ("cpu", "gpu"):
        raise argparse.ArgumentTypeError(f"expected cpu or gpu:IDS, got {s!r}")
    try:
        idx = [int(i) for i in ids.split(",")] if ids else [0]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected device numbers like gpu:0,1, got {s!r}") from None
    if any(i < 0 for i in idx) or len(set(idx)) != len(idx):
        raise argparse.ArgumentTypeError(f"device numbers must be distinct and >= 0: {s!r}")
    return kind, idx


def _contexts(spec):
    import mxnet as mx
    kind, ids = spec
    return [(mx.gpu if kind == "gpu" else mx.cpu)(i) for i in ids]


def _seed_all(seed):
    import mxnet as mx
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    mx.random.seed(seed % (2 ** 31))


def _sub_seed(*xs):
    return int(np.random.SeedSequence([int(x) for x in xs]).generate_state(1)[0] % (2 ** 31))


def _default_stem(model_spec, image_shape):
    return "thumbnail" if max(image_shape[1:]) < 50 else None


def train(args, hooks=None):
    """Train as described by ``args`` (see :func:`build_parser`); returns the summary dict."""
    from ._mxnet import mx
    from mxnet import autograd, gluon, nd

    from . import optim  # noqa: F401 - registers 'radam' with MXNet
    from .data import get_dataset
    from .nn import set_binary_wd_mult

    hooks = hooks or _Hooks()
    dist = args.kvstore == "dist_sync"
    # An unknown model fails before any data is read or any process waits for a server.
    check_model_name(args.model)

    kv = None
    rank, num_workers = 0, 1
    if dist:
        kv = mx.kv.create("dist_sync")
        rank, num_workers = kv.rank, kv.num_workers
    rank0 = rank == 0
    out = args.save_dir
    os.makedirs(out, exist_ok=True)

    augment = None if args.augment == "none" else args.augment
    ds = get_dataset(args.dataset, args.data_dir, image_size=args.image_size,
                     num_workers=args.num_workers, classes=args.classes,
                     val_split=args.val_split, augment=augment)
    if args.train_images is not None:
        ds.limit_train(args.train_images)
    image_shape = ds.image_shape
    stem = args.stem or _default_stem(args.model, image_shape)

    ckpt = _find_checkpoint(args.resume, out) if args.resume else None
    if ckpt is not None:
        old = ckpt.get("args", {})
        for k in _RESUME_MUST_MATCH:
            if k in old and old[k] != getattr(args, k):
                raise UsageError(f"--resume: the checkpoint was made with --{k.replace('_', '-')} "
                                 f"{old[k]}, this run has {getattr(args, k)}")
        done = int(ckpt["epoch"]) + 1
        if done >= args.epochs:
            if rank0:
                print(f"{PROG}: {out} already finished {done} of --epochs {args.epochs}; nothing "
                      f"to do (to train longer, add --epochs N with N > {done})", file=sys.stderr)
            return _read_json(os.path.join(out, "summary.json")) or {"finished": True}

    _seed_all(args.seed)
    twin = {"binary": False} if args.float_twin else {}
    net = build_model(args.model, ds.num_classes, stem=stem, clip_threshold=args.clip_threshold,
                      bits=args.bits, bits_a=args.bits_a, scaling=args.scaling, **twin)
    ctxs = _contexts(args.ctx)
    ctx = ctxs[0]
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2), ctx=ctxs)
    net(nd.zeros((1,) + image_shape, ctx=ctx))  # finish deferred shape inference
    if args.init_from and ckpt is None:
        _init_from(net, args.init_from, ctxs)
    set_binary_wd_mult(net)
    net.hybridize(static_alloc=True)

    teacher = (build_teacher(args.teacher, args.teacher_params, ds.num_classes, image_shape,
                             stem=stem, ctxs=ctxs)
               if args.teacher else None)

    opt_params = {"learning_rate": args.lr, "wd": args.wd}
    if args.optimizer == "sgd":
        opt_params["momentum"] = args.momentum
    # dist_sync: the optimizer runs on every worker (identical updates from identical
    # summed gradients); bmx does the all-reduce itself through the kvstore (see _DistSync),
    # which keeps trainer states local (checkpointable) and the key protocol explicit.
    trainer = gluon.Trainer(net.collect_params(), args.optimizer, opt_params,
                            kvstore=None if dist else args.kvstore)

    start_epoch = 0
    history = []
    # the selected epoch: best validation accuracy, or the last epoch without a val split
    best = {"val_acc": None, "epoch": None, "score": -math.inf}
    if ckpt is not None:
        _load_checkpoint_files(ckpt, net, trainer, ctxs)
        start_epoch = int(ckpt["epoch"]) + 1
        history = ckpt.get("history", [])
        best = ckpt.get("best", best)
        if rank0:
            print(f"{PROG}: resumed from {ckpt['params']}, continuing with epoch "
                  f"{start_epoch + 1} of {args.epochs}",
                  file=sys.stderr)
    sync = _DistSync(kv, net, ctx) if dist else None

    nb = ds.num_batches(args.batch_size, num_workers)
    classes = ds.num_classes
    ls = args.label_smoothing
    T = args.distill_temperature
    alpha = args.distill_alpha if teacher is not None else 0.0

    def soft_ce(logits, target):
        return -(nd.log_softmax(logits, axis=-1) * target).sum(axis=-1)

    def evaluate(batches):
        correct, loss_sum, n = 0, 0.0, 0
        for x, y in batches:
            k = len(y)
            logits = net(nd.array(x, ctx=ctx))
            yy = nd.array(y, ctx=ctx)
            loss_sum += float(soft_ce(logits, nd.one_hot(yy, classes)).sum().asscalar())
            correct += int((logits.argmax(axis=1).asnumpy().astype(np.int64) == y).sum())
            n += k
        return (correct / n, loss_sum / n) if n else (None, None)

    if rank0:
        _write_json(os.path.join(out, "run.json"), {
            "args": vars(args), "argv": sys.argv, "model": args.model, "dist_workers": num_workers,
            "image_shape": image_shape, "classes": classes, "class_names": ds.class_names,
            "stem": stem, "preprocess": ds.preprocess, "num_train": ds.num_train,
            "num_val": ds.num_val, "num_test": ds.num_test, "threads": _thread_report()})
    # the bar only on a terminal; plain epoch lines otherwise (logs, CI)
    show_bar = rank0 and not args.quiet and sys.stderr.isatty()
    plain = rank0 and not args.quiet and not show_bar
    from tqdm import tqdm

    t_train = 0.0
    for epoch in range(start_epoch, args.epochs):
        mx.random.seed(_sub_seed(args.seed, epoch, rank, 7))
        mix_rng = np.random.RandomState(_sub_seed(args.seed, epoch, rank, 11))
        t0, cpu0 = time.time(), _cpu_seconds()
        tot_loss, tot_correct, tot_n = 0.0, 0, 0
        loss_acc, correct_acc = nd.zeros((1,), ctx=ctx), nd.zeros((1,), ctx=ctx)
        bar = tqdm(total=nb, desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch",
                   disable=not show_bar, leave=True, dynamic_ncols=True, file=sys.stderr)
        for i, (xb, yb) in enumerate(ds.train_batches(epoch, args.batch_size, args.seed,
                                                      rank, num_workers)):
            if hooks.on_batch is not None:
                hooks.on_batch(epoch, i)
            step = epoch * nb + i
            trainer.set_learning_rate(lr_at(step, nb, args))
            if len(yb) < len(ctxs):
                continue  # a last partial batch too small to give every device a slice
            y = nd.array(yb, ctx=ctx)
            x = nd.array(xb, ctx=ctx)
            target = nd.one_hot(y, classes) * (1 - ls) + ls / classes
            if args.mixup > 0:
                lam = float(mix_rng.beta(args.mixup, args.mixup))
                perm = nd.array(mix_rng.permutation(len(yb)), ctx=ctx)
                x = lam * x + (1 - lam) * x.take(perm)
                target = lam * target + (1 - lam) * target.take(perm)
            parts = [(x, y, target)] if len(ctxs) == 1 else list(zip(*(
                gluon.utils.split_and_load(a, ctxs, even_split=False) for a in (x, y, target))))
            losses, outs = [], []
            soft = [nd.softmax(teacher(xp) / T, axis=-1) if teacher is not None else None
                    for xp, _, _ in parts]
            with autograd.record():
                for (xp, _, tp), st in zip(parts, soft):
                    logits = net(xp)
                    loss = soft_ce(logits, tp)
                    if st is not None:
                        loss = (1 - alpha) * loss + alpha * soft_ce(logits / T, st) * (T * T)
                    losses.append(loss)
                    outs.append(logits)
            autograd.backward(losses)
            if sync is not None:
                sync.allreduce_grads()
            trainer.step(len(yb) * num_workers)
            for loss, logits, (_, yp, _) in zip(losses, outs, parts):
                loss_acc += loss.sum().as_in_context(ctx)
                correct_acc += (logits.argmax(axis=1) == yp).sum().as_in_context(ctx)
            tot_n += len(yb)
            if (i + 1) % args.log_interval == 0 or i + 1 == nb:
                tot_loss = float(loss_acc.asscalar())
                tot_correct = float(correct_acc.asscalar())
                el = time.time() - t0
                bar.set_postfix(loss=f"{tot_loss / tot_n:.4f}", acc=f"{tot_correct / tot_n:.4f}",
                                img_s=f"{tot_n * num_workers / max(el, 1e-9):.0f}",
                                lr=f"{lr_at(step, nb, args):.2e}", refresh=False)
            bar.update(1)
            if plain and (i + 1) % max(1, nb // 4) == 0 and i + 1 < nb:
                # no terminal: a plain line per quarter epoch instead of a bar
                print(f"[epoch {epoch + 1}/{args.epochs}] {i + 1}/{nb} batches, "
                      f"{tot_n * num_workers / max(time.time() - t0, 1e-9):.0f} img/s",
                      file=sys.stderr, flush=True)
        tot_loss = float(loss_acc.asscalar())
        tot_correct = float(correct_acc.asscalar())
        bar.close()
        if sync is not None:
            sync.average_aux()
        el = time.time() - t0
        busy = (_cpu_seconds() - cpu0) / max(el, 1e-9)
        t_train += el
        val_acc, val_loss = evaluate(ds.val_batches(args.val_batch_size))
        rec = {"epoch": epoch + 1, "lr": lr_at((epoch + 1) * nb - 1, nb, args),
               "train_loss": tot_loss / max(tot_n, 1), "train_acc": tot_correct / max(tot_n, 1),
               "val_loss": val_loss, "val_acc": val_acc, "epoch_time_s": el,
               "images_per_s": tot_n * num_workers / max(el, 1e-9), "cpu_busy": busy}
        history.append(rec)
        # no validation split: the last epoch is the selected one
        score = val_acc if val_acc is not None else float(epoch)
        if score > best.get("score", -math.inf):
            best = {"val_acc": val_acc, "epoch": epoch + 1, "score": score}
            if rank0:
                _save_params(os.path.join(out, "best.params"), net)
        if rank0 and not args.quiet:
            val = ("no val split" if val_acc is None else
                   f"val loss {val_loss:.4f} acc {val_acc:.4f}")
            print(f"[epoch {epoch + 1}/{args.epochs}] train loss {rec['train_loss']:.4f} "
                  f"acc {rec['train_acc']:.4f} | {val} | {rec['images_per_s']:.0f} img/s, "
                  f"{busy:.2f} cores busy", file=sys.stderr, flush=True)
        if rank0:
            _write_log(out, history)
            _save_checkpoint(out, net, trainer, epoch, args, history, best)
    if dist:
        _write_rank_params(out, net, rank)

    final = history[-1] if history else None
    # the test set, scored once, with the final (exported) parameters
    test_acc, test_loss = ((None, None) if args.no_test else
                           evaluate(ds.test_batches(args.val_batch_size)))
    summary = {
        "model": args.model, "dataset": args.dataset, "epochs": args.epochs,
        "dist_workers": num_workers, "image_shape": list(image_shape), "classes": classes,
        "stem": stem, "bits": args.bits, "bits_a": args.bits_a,
        "num_train": ds.num_train, "num_val": ds.num_val, "num_test": ds.num_test,
        "best_val_acc": best["val_acc"], "best_epoch": best["epoch"],
        "final_val_acc": final["val_acc"] if final else None,
        "test_acc": test_acc, "test_loss": test_loss,
        "reported": "val: the held-out end of the training images (curves, best epoch); "
                    "final_val_acc is the last epoch (the exported model), best_val_acc the "
                    "best epoch (best.params); test_acc: the test set, scored once at the end "
                    "with the exported (last-epoch) model",
        "train_time_s": sum(h["epoch_time_s"] for h in history),
        "train_time_this_run_s": t_train,
        "threads": _thread_report(),
        "export": {"symbol": "model-symbol.json", "params": "model-0000.params"},
    }
    if rank0:
        _export_atomic(net, out)
        _write_json(os.path.join(out, "summary.json"), summary)
        if not args.no_plot:
            _plot(out, history)
        fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
        print(f"final val acc {fmt(summary['final_val_acc'])} (epoch {args.epochs}), best "
              f"{fmt(best['val_acc'])} (epoch {best['epoch']}), test acc {fmt(test_acc)}; "
              f"exported {out}/model-symbol.json + model-0000.params")
    summary["net"] = net
    return summary


def _cpu_seconds():
    """CPU time of this process (all threads), for the 'cores busy' figure."""
    t = os.times()
    return t.user + t.system


def _thread_report():
    """The threads MXNet's operators may use (OpenMP) and the cores this process may run on."""
    return {"omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "mxnet_cpu_worker_nthreads": os.environ.get("MXNET_CPU_WORKER_NTHREADS", "1"),
            "cores_available": len(os.sched_getaffinity(0))}


def _plain(arr):
    """A copy of ``arr`` in MXNet's default (row-major) layout."""
    import mxnet as mx
    return mx.nd.array(arr.asnumpy(), ctx=arr.context, dtype=arr.dtype)


class _DistSync:
    """Synchronous data parallelism over MXNet's ``dist_sync`` parameter server.

    One kvstore key per parameter. Without an optimizer on the servers, a ``dist_sync``
    server stores the sum of one push per worker, so push + pull is an all-reduce.
    Construction copies rank 0's parameters to every worker. MXNet's ``Init`` passes its
    barrier before the rank-0 push is acknowledged (so another worker's pull can reach the
    server first: "init K first"): every phase here ends with ``waitall`` and a barrier.
    """

    def __init__(self, kv, net, ctx):
        import mxnet as mx
        self.mx, self.kv, self.ctx = mx, kv, ctx
        self.n = kv.num_workers
        self.params = list(net.collect_params().values())
        self.grad_keys = [i for i, p in enumerate(self.params) if p.grad_req != "null"]
        self.aux_keys = [i for i, p in enumerate(self.params) if p.grad_req == "null"]
        mx.nd.waitall()
        keys = list(range(len(self.params)))
        # Plain copies: after a forward pass oneDNN may hold conv weights in its own
        # layout, and MXNet's dist push silently skips such arrays.
        kv.init(keys, [_plain(p.data(ctx)) for p in self.params])
        self._fence()
        for i in keys:
            buf = mx.nd.zeros(self.params[i].shape, ctx=ctx, dtype=self.params[i].dtype)
            kv.pull(i, out=buf)
            self.params[i].set_data(buf)
        self._fence()

    def _fence(self):
        self.mx.nd.waitall()
        self.kv._barrier()

    def allreduce_grads(self):
        for i in self.grad_keys:
            g = self.params[i].grad(self.ctx)
            self.kv.push(i, _plain(g), priority=-i)
            self.kv.pull(i, out=g, priority=-i)

    def average_aux(self):
        """Average the BatchNorm running statistics over the workers."""
        for i in self.aux_keys:
            a = self.params[i].data(self.ctx)
            self.kv.push(i, _plain(a), priority=-i)
            self.kv.pull(i, out=a, priority=-i)
        self.mx.nd.waitall()
        for i in self.aux_keys:
            a = self.params[i].data(self.ctx)
            a /= self.n
        self._fence()


def _save_params(path, net):
    """``net.save_parameters`` to ``path``, atomically, once queued weight reorders from
    an inference pass have finished (see :func:`bmx._mxnet.settle`)."""
    settle()
    _atomic_write(path, net.save_parameters)


def _write_rank_params(out, net, rank):
    _save_params(os.path.join(out, f"final-rank{rank}.params"), net)


def _save_checkpoint(out, net, trainer, epoch, args, history, best):
    """Epoch files first (each atomic), then checkpoint.json, the commit point; then the
    previous epoch's files are removed. A crash at any moment leaves a usable checkpoint."""
    tag = f"epoch{epoch + 1:04d}"
    files = {"params": f"ckpt-{tag}.params", "states": f"ckpt-{tag}.states",
             "rng": f"ckpt-{tag}.rng"}
    _save_params(os.path.join(out, files["params"]), net)
    _atomic_write(os.path.join(out, files["states"]), trainer.save_states)

    def w_rng(tmp):
        with open(tmp, "wb") as f:
            pickle.dump({"python": random.getstate(), "numpy": np.random.get_state()}, f)
    _atomic_write(os.path.join(out, files["rng"]), w_rng)
    prev = None
    cpath = os.path.join(out, CHECKPOINT)
    if os.path.isfile(cpath):
        try:
            with open(cpath) as f:
                prev = json.load(f)
        except ValueError:
            prev = None
    _write_json(cpath, dict(files, epoch=epoch, epochs=args.epochs, args=vars(args),
                            history=history, best=best, time=time.time()))
    if prev:
        for k in ("params", "states", "rng"):
            old = prev.get(k)
            if old and old != files[k] and os.path.isfile(os.path.join(out, old)):
                os.remove(os.path.join(out, old))


_LOG_FIELDS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
               "epoch_time_s", "images_per_s", "cpu_busy")


def _write_log(out, history):
    def w(tmp):
        with open(tmp, "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=_LOG_FIELDS)
            wr.writeheader()
            for h in history:
                wr.writerow({k: h.get(k) for k in _LOG_FIELDS})
    _atomic_write(os.path.join(out, "log.csv"), w)


def _nan(v):
    return float("nan") if v is None else v


def _plot(out, history):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    a1.plot(ep, [_nan(h["val_loss"]) for h in history], "s-", label="validation")
    a1.set_xlabel("epoch")
    a1.set_ylabel("cross-entropy")
    a1.legend()
    a1.grid(alpha=0.3)
    a2.plot(ep, [h["train_acc"] for h in history], "o-", label="train")
    a2.plot(ep, [_nan(h["val_acc"]) for h in history], "s-", label="validation")
    a2.set_xlabel("epoch")
    a2.set_ylabel("accuracy")
    a2.legend()
    a2.grid(alpha=0.3)
    fig.suptitle(os.path.basename(os.path.abspath(out)))
    fig.tight_layout()
    _atomic_write(os.path.join(out, "curves.png"), lambda tmp: fig.savefig(tmp, format="png",
                                                                           dpi=100))
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
