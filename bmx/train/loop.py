"""The training loop of ``bmx-train`` (Bethge et al., "Back to Simplicity", 2019): set up
data, network, teacher and optimizer (or resume them from a checkpoint), then epoch by
epoch train, validate and checkpoint; at the end score the test set once and export.

Every step of a run reads and updates one :class:`_Job`.
"""
import math
import os
import random
import sys
import time

import numpy as np

from .._cli import read_json as _read_json
from .checkpoint import (_check_resume_args, _export_atomic, _find_checkpoint, _init_from,
                         _load_checkpoint_files, _save_checkpoint, _save_params,
                         _write_rank_params)
from .cli import PROG, _Hooks
from .dist import _contexts, _DistSync, _join_workers
from .losses import build_teacher, soft_ce, teacher_targets, training_loss
from .model import _default_stem, build_model, check_model_name
from .report import (_cpu_seconds, _print_epoch, _summary, _write_log, _write_run_info,
                     _write_summary)


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


def _seed_all(seed):
    import mxnet as mx
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    mx.random.seed(seed % (2 ** 31))


def _sub_seed(*xs):
    return int(np.random.SeedSequence([int(x) for x in xs]).generate_state(1)[0] % (2 ** 31))


class _Job:
    """What the steps of one run share: the options and hooks, this worker's place in the
    job (``kv``, ``rank``, ``num_workers``), the data (``ds``, ``stem``, ``nb`` batches per
    epoch), the network, its devices, teacher, trainer and ``sync``, and the progress
    (``start_epoch``, ``history``, ``best``, ``t_train``).

    Construction joins a ``dist_sync`` job (waiting for the scheduler) and creates the
    save directory.
    """

    def __init__(self, args, hooks=None):
        self.args, self.hooks = args, hooks or _Hooks()
        self.dist = args.kvstore == "dist_sync"
        self.kv, self.rank, self.num_workers = _join_workers(self.dist)
        self.rank0 = self.rank == 0
        self.out = args.save_dir
        os.makedirs(self.out, exist_ok=True)
        # the bar only on a terminal; plain epoch lines otherwise (logs, CI)
        self.show_bar = self.rank0 and not args.quiet and sys.stderr.isatty()
        self.plain = self.rank0 and not args.quiet and not self.show_bar
        self.ds = self.stem = self.nb = None
        self.net = self.ctxs = self.teacher = self.trainer = self.sync = None
        self.start_epoch, self.history, self.t_train = 0, [], 0.0
        # the selected epoch: best validation accuracy, or the last epoch without a val split
        self.best = {"val_acc": None, "epoch": None, "score": -math.inf}


def train(args, hooks=None):
    """Train as described by ``args`` (see :func:`bmx.train.build_parser`).

    Parameters
    ----------
    args : argparse.Namespace
        From :func:`bmx.train.parse_args`.
    hooks : _Hooks, optional
        ``on_batch(epoch, batch)`` before every step.

    Returns
    -------
    dict
        The summary (``summary.json``) plus ``"net"``, the trained network; for a resumed
        run that had already finished, the saved summary.
    """
    from .._mxnet import mx  # noqa: F401 - MXNetMissingError (exit code 2) without MXNet
    from .. import optim  # noqa: F401 - registers 'radam' with MXNet

    # An unknown model fails before any data is read or any process waits for a server.
    check_model_name(args.model)
    job = _Job(args, hooks)
    _load_data(job)
    ckpt = _find_checkpoint(args.resume, job.out) if args.resume else None
    if ckpt is not None:
        _check_resume_args(ckpt, args)
        if int(ckpt["epoch"]) + 1 >= args.epochs:
            return _already_finished(job, int(ckpt["epoch"]) + 1)
    _seed_all(args.seed)
    _setup_model(job, init_from=args.init_from if ckpt is None else None)
    if ckpt is not None:
        _restore(job, ckpt)
    job.sync = _DistSync(job.kv, job.net, job.ctxs[0]) if job.dist else None
    if job.rank0:
        _write_run_info(job.out, args, job.ds, job.num_workers, job.stem)
    for epoch in range(job.start_epoch, args.epochs):
        stats = _train_epoch(job, epoch)
        _end_epoch(job, epoch, stats)
    return _finish(job)


def _load_data(job):
    """The dataset (validation split held out, training images limited), its default stem
    and the batches per epoch of one worker."""
    from ..data import get_dataset
    args = job.args
    augment = None if args.augment == "none" else args.augment
    ds = get_dataset(args.dataset, args.data_dir, image_size=args.image_size,
                     num_workers=args.num_workers, classes=args.classes,
                     val_split=args.val_split, augment=augment)
    if args.train_images is not None:
        ds.limit_train(args.train_images)
    job.ds = ds
    job.stem = args.stem or _default_stem(args.model, ds.image_shape)
    job.nb = ds.num_batches(args.batch_size, job.num_workers)


def _already_finished(job, done):
    """``--resume`` of a run that has its epochs: nothing to train; the saved summary."""
    if job.rank0:
        print(f"{PROG}: {job.out} already finished {done} of --epochs {job.args.epochs}; "
              f"nothing to do (to train longer, add --epochs N with N > {done})",
              file=sys.stderr)
    return _read_json(os.path.join(job.out, "summary.json")) or {"finished": True}


def _setup_model(job, init_from=None):
    """Build and initialise the network (He-normal; or ``init_from``'s arrays), the teacher
    and the trainer (binary weights and BatchNorm without weight decay)."""
    import mxnet as mx
    from mxnet import gluon, nd
    from ..nn import set_binary_wd_mult
    args, ds = job.args, job.ds
    twin = {"binary": False} if args.float_twin else {}
    net = build_model(args.model, ds.num_classes, stem=job.stem,
                      clip_threshold=args.clip_threshold, bits=args.bits, bits_a=args.bits_a,
                      scaling=args.scaling, **twin)
    ctxs = _contexts(args.ctx)
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2), ctx=ctxs)
    net(nd.zeros((1,) + ds.image_shape, ctx=ctxs[0]))  # finish deferred shape inference
    if init_from:
        _init_from(net, init_from, ctxs)
    set_binary_wd_mult(net)
    net.hybridize(static_alloc=True)
    job.net, job.ctxs = net, ctxs

    job.teacher = (build_teacher(args.teacher, args.teacher_params, ds.num_classes,
                                 ds.image_shape, stem=job.stem, ctxs=ctxs)
                   if args.teacher else None)
    opt_params = {"learning_rate": args.lr, "wd": args.wd}
    if args.optimizer == "sgd":
        opt_params["momentum"] = args.momentum
    # dist_sync: the optimizer runs on every worker (identical updates from identical
    # summed gradients); bmx does the all-reduce itself through the kvstore (see _DistSync),
    # which keeps trainer states local (checkpointable) and the key protocol explicit.
    job.trainer = gluon.Trainer(net.collect_params(), args.optimizer, opt_params,
                                kvstore=None if job.dist else args.kvstore)


def _restore(job, ckpt):
    """Continue from ``ckpt``: parameters, trainer and RNG states, history, best epoch."""
    _load_checkpoint_files(ckpt, job.net, job.trainer, job.ctxs)
    job.start_epoch = int(ckpt["epoch"]) + 1
    job.history = ckpt.get("history", [])
    job.best = ckpt.get("best", job.best)
    if job.rank0:
        print(f"{PROG}: resumed from {ckpt['params']}, continuing with epoch "
              f"{job.start_epoch + 1} of {job.args.epochs}",
              file=sys.stderr)


class _Meter:
    """Running loss, correct predictions and images of one epoch; the sums stay on the
    device (reading them waits for the queued steps, so only at log intervals)."""

    def __init__(self, ctx):
        from mxnet import nd
        self.t0, self.cpu0 = time.time(), _cpu_seconds()
        self.loss, self.correct = nd.zeros((1,), ctx=ctx), nd.zeros((1,), ctx=ctx)
        self.ctx, self.n = ctx, 0

    def add(self, outputs, images):
        """Add the ``(loss, logits, labels)`` of each device from a step on ``images``."""
        for loss, logits, labels in outputs:
            self.loss += loss.sum().as_in_context(self.ctx)
            self.correct += (logits.argmax(axis=1) == labels).sum().as_in_context(self.ctx)
        self.n += images

    def totals(self):
        """(summed loss, correct predictions) so far."""
        return float(self.loss.asscalar()), float(self.correct.asscalar())


def _train_epoch(job, epoch):
    """One pass over this worker's share of the training split.

    Returns
    -------
    dict
        ``loss`` (summed), ``correct``, ``n`` (images), ``time_s`` and ``busy`` (cores).
    """
    import mxnet as mx
    from tqdm import tqdm
    args, nb = job.args, job.nb
    mx.random.seed(_sub_seed(args.seed, epoch, job.rank, 7))
    mix_rng = np.random.RandomState(_sub_seed(args.seed, epoch, job.rank, 11))
    meter = _Meter(job.ctxs[0])
    bar = tqdm(total=nb, desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch",
               disable=not job.show_bar, leave=True, dynamic_ncols=True, file=sys.stderr)
    for i, (xb, yb) in enumerate(job.ds.train_batches(epoch, args.batch_size, args.seed,
                                                      job.rank, job.num_workers)):
        if job.hooks.on_batch is not None:
            job.hooks.on_batch(epoch, i)
        step = epoch * nb + i
        job.trainer.set_learning_rate(lr_at(step, nb, args))
        if len(yb) < len(job.ctxs):
            continue  # a last partial batch too small to give every device a slice
        meter.add(_step(job, xb, yb, mix_rng), len(yb))
        _show_progress(job, bar, meter, epoch, i)
    loss, correct = meter.totals()
    bar.close()
    if job.sync is not None:
        job.sync.average_aux()
    el = time.time() - meter.t0
    busy = (_cpu_seconds() - meter.cpu0) / max(el, 1e-9)
    job.t_train += el
    return {"loss": loss, "correct": correct, "n": meter.n, "time_s": el, "busy": busy}


def _step(job, xb, yb, mix_rng):
    """One update on the batch ``(xb, yb)``: soft targets (label smoothing, mixup), the
    split over the devices, forward (distilled when there is a teacher) and backward, the
    all-reduce of a dist_sync job, the optimizer step.

    Returns
    -------
    list of (loss, logits, labels)
        One per device.
    """
    from mxnet import autograd, gluon, nd
    args, ctx, ctxs = job.args, job.ctxs[0], job.ctxs
    classes, ls = job.ds.num_classes, args.label_smoothing
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
    T = args.distill_temperature
    alpha = args.distill_alpha if job.teacher is not None else 0.0
    soft = [teacher_targets(job.teacher, xp, T) if job.teacher is not None else None
            for xp, _, _ in parts]
    losses, outs = [], []
    with autograd.record():
        for (xp, _, tp), st in zip(parts, soft):
            logits = job.net(xp)
            losses.append(training_loss(logits, tp, st, alpha, T))
            outs.append(logits)
    autograd.backward(losses)
    if job.sync is not None:
        job.sync.allreduce_grads()
    job.trainer.step(len(yb) * job.num_workers)
    return [(loss, logits, yp) for loss, logits, (_, yp, _) in zip(losses, outs, parts)]


def _show_progress(job, bar, meter, epoch, i):
    """After batch ``i``: the bar's figures every ``--log-interval`` batches; without a
    terminal, a plain line per quarter epoch instead."""
    args, nb, n = job.args, job.nb, meter.n
    if (i + 1) % args.log_interval == 0 or i + 1 == nb:
        loss, correct = meter.totals()
        el = time.time() - meter.t0
        bar.set_postfix(loss=f"{loss / n:.4f}", acc=f"{correct / n:.4f}",
                        img_s=f"{n * job.num_workers / max(el, 1e-9):.0f}",
                        lr=f"{lr_at(epoch * nb + i, nb, args):.2e}", refresh=False)
    bar.update(1)
    if job.plain and (i + 1) % max(1, nb // 4) == 0 and i + 1 < nb:
        print(f"[epoch {epoch + 1}/{args.epochs}] {i + 1}/{nb} batches, "
              f"{n * job.num_workers / max(time.time() - meter.t0, 1e-9):.0f} img/s",
              file=sys.stderr, flush=True)


def _evaluate(job, batches):
    """(accuracy, mean cross-entropy) of the network on ``batches``; (None, None) when
    there are none."""
    from mxnet import nd
    net, ctx, classes = job.net, job.ctxs[0], job.ds.num_classes
    correct, loss_sum, n = 0, 0.0, 0
    for x, y in batches:
        k = len(y)
        logits = net(nd.array(x, ctx=ctx))
        yy = nd.array(y, ctx=ctx)
        loss_sum += float(soft_ce(logits, nd.one_hot(yy, classes)).sum().asscalar())
        correct += int((logits.argmax(axis=1).asnumpy().astype(np.int64) == y).sum())
        n += k
    return (correct / n, loss_sum / n) if n else (None, None)


def _end_epoch(job, epoch, stats):
    """Validate, record the epoch (history, ``log.csv``), keep the best parameters and
    checkpoint (rank 0 writes)."""
    args, nb, n, el = job.args, job.nb, stats["n"], stats["time_s"]
    val_acc, val_loss = _evaluate(job, job.ds.val_batches(args.val_batch_size))
    rec = {"epoch": epoch + 1, "lr": lr_at((epoch + 1) * nb - 1, nb, args),
           "train_loss": stats["loss"] / max(n, 1), "train_acc": stats["correct"] / max(n, 1),
           "val_loss": val_loss, "val_acc": val_acc, "epoch_time_s": el,
           "images_per_s": n * job.num_workers / max(el, 1e-9), "cpu_busy": stats["busy"]}
    job.history.append(rec)
    # no validation split: the last epoch is the selected one
    score = val_acc if val_acc is not None else float(epoch)
    if score > job.best.get("score", -math.inf):
        job.best = {"val_acc": val_acc, "epoch": epoch + 1, "score": score}
        if job.rank0:
            _save_params(os.path.join(job.out, "best.params"), job.net)
    if job.rank0 and not args.quiet:
        _print_epoch(args, rec)
    if job.rank0:
        _write_log(job.out, job.history)
        _save_checkpoint(job.out, job.net, job.trainer, epoch, args, job.history, job.best)


def _finish(job):
    """After the last epoch: per-rank parameters (dist_sync), the test set scored once with
    the final parameters, the export and the summary; returns the summary with ``"net"``."""
    args = job.args
    if job.dist:
        _write_rank_params(job.out, job.net, job.rank)
    # the test set, scored once, with the final (exported) parameters
    test = ((None, None) if args.no_test else
            _evaluate(job, job.ds.test_batches(args.val_batch_size)))
    summary = _summary(args, job.ds, job.num_workers, job.stem, job.history, job.best, test,
                       job.t_train)
    if job.rank0:
        _export_atomic(job.net, job.out)
        _write_summary(job.out, args, summary, job.history)
    summary["net"] = job.net
    return summary
