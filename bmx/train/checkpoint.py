"""The files of a run that must survive a crash: checkpoints (written epoch files first,
then ``checkpoint.json``, the commit point), the best and per-rank parameters, the
exported model, and reading them back for ``--resume`` and ``--init-from``.

Every save waits for queued oneDNN weight reorders first (:func:`bmx._mxnet.settle`).
"""
import json
import os
import pickle
import random
import shutil
import tempfile
import time

import numpy as np

from .._cli import UsageError
from .._cli import atomic_write as _atomic_write
from .._cli import first_line as _first_line
from .._cli import write_json as _write_json
from .._mxnet import settle

CHECKPOINT = "checkpoint.json"

#: options a resumed run must share with the checkpoint (the others may change)
_RESUME_MUST_MATCH = ("model", "float_twin", "scaling", "init_from", "dataset", "image_size",
                      "bits", "bits_a", "stem", "optimizer",
                      "clip_threshold", "batch_size", "kvstore", "val_split", "train_images",
                      "augment")


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


def _find_checkpoint(resume, save_dir):
    """The checkpoint ``--resume`` names (``auto``: the one in ``save_dir``), its file names
    made absolute; a missing or foreign one is a :class:`UsageError`."""
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


def _check_resume_args(ckpt, args):
    """Raise :class:`UsageError` when ``args`` differs from the checkpoint's run in an
    option of :data:`_RESUME_MUST_MATCH`."""
    old = ckpt.get("args", {})
    for k in _RESUME_MUST_MATCH:
        if k in old and old[k] != getattr(args, k):
            raise UsageError(f"--resume: the checkpoint was made with --{k.replace('_', '-')} "
                             f"{old[k]}, this run has {getattr(args, k)}")


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
