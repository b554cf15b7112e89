"""``bmx-eval``: score a converted model file on a dataset's test split with the engine.

Bethge et al., "Back to Simplicity" (2019): accuracy is reported for the deployed binary
network. This runs :class:`bmx.engine.Model` on the test images and reports top-1, the
accuracy per class and the confusion matrix (PNG); with ``--run RUN_DIR`` it also runs the
Gluon network the file was converted from (the run's exported last epoch, or ``--best``)
on the same inputs and counts the images where the two predictions differ (expected: 0).

For MNIST-format sets (fashion-mnist, mnist) the raw uint8 test images are read from the
IDX files and turned into inputs by :meth:`bmx.engine.Model.preprocess`, with the mean/std
recorded in the file: what a deployed model sees. Other datasets use ``bmx.data``'s
normalized test split.

Example
-------
    bmx-eval examples/fashion_mnist/model.bmx --dataset fashion-mnist --out eval-out
"""
import json
import os
import sys

import numpy as np

PROG = "bmx-eval"


from ._cli import ArgumentParser as _Parser  # noqa: E402
from ._cli import UsageError  # noqa: E402
from ._cli import first_line as _first_line  # noqa: E402


def build_parser():
    p = _Parser(prog=PROG, description="Score a .bmx model on a dataset's test split with the "
                "bmx engine: top-1, per-class accuracy, confusion matrix; with --run, the "
                "count of test images where the engine and Gluon predictions differ.")
    from . import __version__
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    p.add_argument("model", help="converted model file (.bmx)")
    p.add_argument("--dataset", default="fashion-mnist", help="bmx-train dataset name "
                   "(default fashion-mnist)")
    p.add_argument("--data-dir", default=None, help="where the dataset files are")
    p.add_argument("--run", default=None, metavar="RUN_DIR",
                   help="the bmx-train run the model was converted from: also run its Gluon "
                        "network and count differing predictions")
    p.add_argument("--best", action="store_true", help="with --run: the file was converted "
                   "with --best (compare against best.params)")
    p.add_argument("--out", default=None, help="directory for eval.json and confusion.png")
    p.add_argument("--threads", type=int, default=1, help="engine threads (default 1)")
    p.add_argument("--batch-size", type=int, default=500, help="images per predict call")
    return p


def test_inputs(model, dataset, data_dir=None):
    """(inputs float32 NCHW, labels, class names) of ``dataset``'s test split for ``model``."""
    from . import data as bd
    if dataset in ("fashion-mnist", "mnist"):
        ds_dir = data_dir
        if dataset == "fashion-mnist" and ds_dir is None:
            ds_dir = next((d for d in bd.FASHION_MNIST_DIRS if os.path.isdir(d)), None)
        if ds_dir is None:
            raise UsageError(f"--dataset {dataset} needs --data-dir")
        path = {k: bd._find_file([ds_dir, os.path.join(ds_dir, dataset)], v)
                for k, v in (("x", "t10k-images-idx3-ubyte"), ("y", "t10k-labels-idx1-ubyte"))}
        if None in path.values():
            raise UsageError(f"the {dataset} test files are not in {ds_dir}")
        raw, y = bd.read_idx(path["x"]), bd.read_idx(path["y"]).astype(np.int64)
        names = (list(bd.FASHION_MNIST_CLASSES) if dataset == "fashion-mnist"
                 else [str(i) for i in range(10)])
        try:
            return model.preprocess(raw), y, names
        except ValueError as e:
            raise UsageError(str(e)) from None
    ds = bd.get_dataset(dataset, data_dir, image_size=model.input_shape[-1])
    if not ds.num_test:
        raise UsageError(f"{dataset} has no test split")
    xs, ys = zip(*ds.test_batches(1024))
    names = ds.class_names or [str(i) for i in range(ds.num_classes)]
    return np.concatenate(xs), np.concatenate(ys), names


def confusion(y_true, y_pred, classes):
    """``classes x classes`` counts: row = true class, column = predicted class."""
    m = np.zeros((classes, classes), np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def gluon_logits(run_dir, x, best=False, batch=500):
    """Logits of the Gluon network of a bmx-train run (exported last epoch, or best.params)."""
    import mxnet as mx
    if best:
        from .converter.cli import run_net
        with open(os.path.join(run_dir, "run.json")) as f:
            run = json.load(f)
        net = run_net(run_dir, run, run["args"])
    else:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = mx.gluon.SymbolBlock.imports(os.path.join(run_dir, "model-symbol.json"),
                                               ["data"],
                                               os.path.join(run_dir, "model-0000.params"))
    return np.concatenate([net(mx.nd.array(x[i:i + batch])).asnumpy()
                           for i in range(0, len(x), batch)])


def plot_confusion(m, names, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = m.max()
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if m[i, j] > top / 2 else "black")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate(args):
    from .engine import Model
    model = Model(args.model, num_threads=args.threads)
    x, y, names = test_inputs(model, args.dataset, args.data_dir)
    logits = np.concatenate([model.predict(x[i:i + args.batch_size])
                             for i in range(0, len(x), args.batch_size)])
    pred = logits.argmax(1)
    m = confusion(y, pred, len(names))
    per_class = (np.diag(m) / np.maximum(m.sum(1), 1)).tolist()
    report = {"model": os.path.abspath(args.model), "producer": model.producer,
              "dataset": args.dataset, "split": "test", "images": int(len(y)),
              "top1": float((pred == y).mean()), "correct": int((pred == y).sum()),
              "per_class": dict(zip(names, per_class)), "confusion": m.tolist(),
              "mean": model.mean, "std": model.std}
    if args.run:
        g = gluon_logits(args.run, x, best=args.best, batch=args.batch_size)
        report["gluon_top1"] = float((g.argmax(1) == y).mean())
        report["engine_gluon_disagreements"] = int((g.argmax(1) != pred).sum())
        report["max_abs_logit_diff"] = float(np.abs(g - logits).max())
        report["max_abs_logit"] = float(np.abs(g).max())
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "eval.json"), "w") as f:
            json.dump(report, f, indent=2)
        plot_confusion(m, names, os.path.join(args.out, "confusion.png"),
                       f"{os.path.basename(args.model)} on {args.dataset} test: "
                       f"top-1 {report['top1']:.4f}")
    return report


def main(argv=None):
    """Entry point of ``bmx-eval``: 0, or 2 with one line on stderr for bad input."""
    from .data import DataError
    try:
        args = build_parser().parse_args(argv)
        r = evaluate(args)
    except (UsageError, DataError, OSError, ValueError) as e:
        print(f"{PROG}: error: {_first_line(e)}", file=sys.stderr)
        return 2
    print(f"{r['dataset']} test: top-1 {r['top1']:.4f} ({r['correct']}/{r['images']}) "
          f"with {os.path.basename(args.model)}")
    for name, acc in r["per_class"].items():
        print(f"  {name:<14} {acc:.4f}")
    if "engine_gluon_disagreements" in r:
        print(f"Gluon top-1 {r['gluon_top1']:.4f}; engine and Gluon predictions differ on "
              f"{r['engine_gluon_disagreements']} of {r['images']} images (max |logit diff| "
              f"{r['max_abs_logit_diff']:.3g}, max |logit| {r['max_abs_logit']:.3g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
