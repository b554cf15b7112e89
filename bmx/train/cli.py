"""The ``bmx-train`` command line: options, their cross-checks and the entry points.

No MXNet at import time: ``--help`` and ``--version`` answer without loading it.
"""
import argparse
import math
import os
import sys

from .._cli import ArgumentParser as _Parser
from .._cli import UsageError
from .._cli import int_at_least
from .._mxnet import MXNetMissingError

PROG = "bmx-train"


_positive_int = int_at_least(1)
_nonneg_int = int_at_least(0)


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


def _ctx_spec(s):
    """``cpu``, ``cpu:0,1``, ``gpu:0`` or ``gpu:0,1,2,3`` -> (kind, [ids])."""
    kind, _, ids = s.strip().partition(":")
    if kind not in ("cpu", "gpu"):
        raise argparse.ArgumentTypeError(f"expected cpu or gpu:IDS, got {s!r}")
    try:
        idx = [int(i) for i in ids.split(",")] if ids else [0]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected device numbers like gpu:0,1, got {s!r}") from None
    if any(i < 0 for i in idx) or len(set(idx)) != len(idx):
        raise argparse.ArgumentTypeError(f"device numbers must be distinct and >= 0: {s!r}")
    return kind, idx


def build_parser():
    """The ``bmx-train`` argument parser (options in the order ``--help`` lists them)."""
    p = _Parser(prog=PROG, description="Train a binary neural network from scratch "
                "(bmx, BMXNet-v2 semantics). Outputs go to --save-dir: checkpoint.json "
                "(+ epoch files), log.csv, curves.png, summary.json, model-symbol.json / "
                "model-0000.params (for bmx-convert).",
                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    from .. import __version__
    a("--version", action="version", version=f"{PROG} {__version__}")
    _model_data_options(a)
    _optimizer_options(a)
    _network_options(a)
    _run_options(a)
    return p


def _model_data_options(a):
    from ..data import DATASETS
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


def _optimizer_options(a):
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


def _network_options(a):
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


def _run_options(a):
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


def parse_args(argv=None):
    """Parse and cross-check the command line; raises :class:`UsageError`."""
    args = build_parser().parse_args(argv)
    _check_schedule(args)
    for name in ("bits", "bits_a"):
        if getattr(args, name) > 32:
            raise UsageError(f"--{name.replace('_', '-')} must be in 1..32")
    _check_files(args)
    if args.classes is not None and args.dataset not in ("synthetic", "imagenet"):
        raise UsageError(f"--classes applies to synthetic and imagenet (RecordIO) only; "
                         f"{args.dataset} knows its classes")
    if args.dataset in ("digits", "synthetic") and args.data_dir:
        raise UsageError(f"--dataset {args.dataset} is built in; drop --data-dir")
    if args.augment != "default" and args.dataset in ("imagenet", "imagefolder"):
        raise UsageError("--augment applies to the in-memory datasets; imagenet and "
                         "imagefolder use the papers' random-resized-crop")
    _check_devices(args)
    return args


def _check_schedule(args):
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


def _check_files(args):
    if (args.teacher is None) != (args.teacher_params is None):
        raise UsageError("--teacher and --teacher-params go together")
    if args.init_from is not None and not os.path.isfile(args.init_from):
        raise UsageError(f"--init-from {args.init_from}: no such file")
    if args.teacher_params is not None and not os.path.isfile(args.teacher_params):
        raise UsageError(f"--teacher-params {args.teacher_params}: no such file")
    if args.teacher and args.teacher.endswith("-symbol.json") and not os.path.isfile(args.teacher):
        raise UsageError(f"--teacher {args.teacher}: no such file")


def _check_devices(args):
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


class _Hooks:
    """Test/extension hooks: ``on_batch(epoch, batch)`` is called before every step."""

    def __init__(self, on_batch=None):
        self.on_batch = on_batch


def main(argv=None):
    """Console entry point: returns the exit code (0 ok, 2 bad input, 130 interrupted)."""
    return run(argv)


def run(argv=None, hooks=None):
    """Parse ``argv`` and train; returns the exit code, reporting bad input in one line.

    Parameters
    ----------
    argv : list of str, optional
        The command line without the program name (default ``sys.argv[1:]``).
    hooks : _Hooks, optional
        Called during training (tests, extensions).
    """
    from ..data import DataError
    from .loop import train  # here: loop imports this module (PROG, _Hooks)
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
