"""What a run reports: ``run.json`` (the setup), ``log.csv`` and ``curves.png`` (one row
per epoch), ``summary.json`` and the lines on the terminal."""
import csv
import os
import sys

from .._cli import atomic_write as _atomic_write
from .._cli import write_json as _write_json

_LOG_FIELDS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
               "epoch_time_s", "images_per_s", "cpu_busy")


def _cpu_seconds():
    """CPU time of this process (all threads), for the 'cores busy' figure."""
    t = os.times()
    return t.user + t.system


def _thread_report():
    """The threads MXNet's operators may use (OpenMP) and the cores this process may run on."""
    return {"omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "mxnet_cpu_worker_nthreads": os.environ.get("MXNET_CPU_WORKER_NTHREADS", "1"),
            "cores_available": len(os.sched_getaffinity(0))}


def _write_run_info(out, args, ds, num_workers, stem):
    """``run.json``: the command line and what the run derived from it (shape, classes,
    stem, preprocessing, split sizes, threads); bmx-convert RUN_DIR reads it."""
    _write_json(os.path.join(out, "run.json"), {
        "args": vars(args), "argv": sys.argv, "model": args.model, "dist_workers": num_workers,
        "image_shape": ds.image_shape, "classes": ds.num_classes, "class_names": ds.class_names,
        "stem": stem, "preprocess": ds.preprocess, "num_train": ds.num_train,
        "num_val": ds.num_val, "num_test": ds.num_test, "threads": _thread_report()})


def _print_epoch(args, rec):
    """The epoch's line on stderr: training and validation loss and accuracy, speed."""
    val = ("no val split" if rec["val_acc"] is None else
           f"val loss {rec['val_loss']:.4f} acc {rec['val_acc']:.4f}")
    print(f"[epoch {rec['epoch']}/{args.epochs}] train loss {rec['train_loss']:.4f} "
          f"acc {rec['train_acc']:.4f} | {val} | {rec['images_per_s']:.0f} img/s, "
          f"{rec['cpu_busy']:.2f} cores busy", file=sys.stderr, flush=True)


def _summary(args, ds, num_workers, stem, history, best, test, t_train):
    """The contents of ``summary.json``; ``test`` is (accuracy, loss) of the test set."""
    final = history[-1] if history else None
    test_acc, test_loss = test
    return {
        "model": args.model, "dataset": args.dataset, "epochs": args.epochs,
        "dist_workers": num_workers, "image_shape": list(ds.image_shape),
        "classes": ds.num_classes, "stem": stem, "bits": args.bits, "bits_a": args.bits_a,
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


def _write_summary(out, args, summary, history):
    """``summary.json``, ``curves.png`` (unless ``--no-plot``) and the result line (stdout)."""
    _write_json(os.path.join(out, "summary.json"), summary)
    if not args.no_plot:
        _plot(out, history)
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    print(f"final val acc {fmt(summary['final_val_acc'])} (epoch {args.epochs}), best "
          f"{fmt(summary['best_val_acc'])} (epoch {summary['best_epoch']}), test acc "
          f"{fmt(summary['test_acc'])}; exported {out}/model-symbol.json + model-0000.params")


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
