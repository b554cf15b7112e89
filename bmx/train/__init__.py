"""``bmx-train`` (Bethge et al., "BMXNet 2" / "Back to Simplicity", 2019): BNNs from scratch.

Bethge et al., "Back to Simplicity: How to Train Accurate BNNs from Scratch?" (2019):
Adam/RAdam, cosine decay, He-normal init, no weight decay on binary weights and
BatchNorm, gradient-cancelling threshold 1.3 (spec section 6). See docs/training.md.

Modules: :mod:`~bmx.train.cli` (options, entry points), :mod:`~bmx.train.loop` (the
training loop), :mod:`~bmx.train.model`, :mod:`~bmx.train.losses` (cross-entropy,
distillation, the teacher), :mod:`~bmx.train.checkpoint`, :mod:`~bmx.train.dist`
(devices, dist_sync), :mod:`~bmx.train.report` (run.json, log.csv, curves, summary).
Importing the package does not load MXNet.

Examples
--------
    bmx-train --model binarydensenet28 --dataset imagenet --data-dir /data/imagenet \\
        --epochs 120 --batch-size 256 --optimizer radam --lr 0.002
    bmx-train --model "binarydensenet_flex:block_config=(2,2,2),growth_rate=32,reduction=2" \\
        --dataset digits
    bmx-launch -n 2 -- bmx-train --kvstore dist_sync --dataset digits ...
"""
from .._cli import UsageError
from .cli import build_parser, main, parse_args, run
from .loop import lr_at, train
from .losses import build_teacher
from .model import build_model, check_model_name, parse_model_spec

__all__ = ["main", "run", "build_parser", "parse_args", "build_model", "build_teacher",
           "check_model_name", "parse_model_spec", "lr_at", "train", "UsageError"]
