"""The main job (``make demo``): train a 1-bit BinaryDenseNet from scratch on the digits,
convert it, run it with the C++ engine and compare.

Bethge et al., "Back to Simplicity: How to Train Accurate BNNs from Scratch?" (2019) and
"BinaryDenseNet" (2019): a small BinaryDenseNet (thumbnail stem, dense blocks of binary
3x3 convolutions without bottleneck, full-precision transitions) trained with Adam and
cosine decay from He-normal initialization; no full-precision pretraining.

Steps: ``bmx.train`` on scikit-learn's bundled digits (offline, fixed 1,437 / 360 split,
the last 143 training images held out for validation, upscaled to 16x16) -> ``bmx.convert``
-> ``bmx.engine.Model`` on the 360 test images -> ``demo-out/report.json``. Exit code 0
only when the acceptance holds: Gluon test accuracy >= 90% and the engine predicts the
same class as Gluon on every test image.
"""
import argparse
import os
import platform
import sys
import time

import numpy as np

DEMO_MODEL = ("binarydensenet_flex:block_config=(2,2,2),growth_rate=32,init_features=32,"
              "reduction=2")
MIN_ACCURACY = 0.90


def _parser():
    p = argparse.ArgumentParser(prog="python -m bmx.demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="demo-out", help="output directory")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--model", default=DEMO_MODEL)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--engine-threads", type=int, default=1)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _time_per_image(fn, xs, repeat=1):
    """Median over ``repeat`` passes of the mean per-image latency (ms) of ``fn(x[i:i+1])``."""
    for i in range(min(10, len(xs))):  # warm-up
        fn(xs[i:i + 1])
    passes = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for i in range(len(xs)):
            fn(xs[i:i + 1])
        passes.append((time.perf_counter() - t0) * 1000.0 / len(xs))
    return float(np.median(passes))


def _time_batch(fn, xs, repeat=5):
    """Median over ``repeat`` calls of ``fn(xs)`` (the whole set as one batch), ms/image."""
    fn(xs)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(xs)
        times.append((time.perf_counter() - t0) * 1000.0 / len(xs))
    return float(np.median(times))


def run(argv=None):
    """The demo: train, score Gluon, convert, score the engine, report; returns the exit
    code (0 only when the acceptance holds)."""
    args = _parser().parse_args(argv)
    import mxnet  # noqa: F401 - loaded before the clock starts: total_time_s is the demo's work
    import bmx.converter  # noqa: F401 - likewise
    from bmx._cli import write_json
    from bmx.data import get_dataset

    t_start = time.time()
    out = args.out
    os.makedirs(out, exist_ok=True)
    train_dir = os.path.join(out, "train")
    net, summary, train_s = _train(args, train_dir)
    ds = get_dataset("digits", image_size=args.image_size)
    gluon = _score_gluon(net, ds.test_x, ds.test_y)
    model_path = os.path.join(out, "digits-binarydensenet.bmx")
    sizes = _convert(net, ds, model_path)
    engine = _score_engine(model_path, ds.test_x, ds.test_y, args.engine_threads)
    # whole test split as one batch (amortizes per-call overhead; fairer to MXNet)
    gluon["batch_ms"] = _time_batch(gluon.pop("predict"), ds.test_x)
    engine["batch_ms"] = _time_batch(engine.pop("predict"), ds.test_x)
    report = _report(args, ds, summary, train_s, gluon, engine, sizes, model_path, train_dir)
    report["total_time_s"] = time.time() - t_start
    write_json(os.path.join(out, "report.json"), report)
    return _print_report(args, out, report)


def _train(args, train_dir):
    """Step 1: bmx-train in-process (same code path as the CLI); returns the network, the
    summary and the seconds it took."""
    from bmx import train as bt
    targs = bt.parse_args(["--model", args.model, "--dataset", "digits", "--image-size",
                           str(args.image_size), "--epochs", str(args.epochs), "--batch-size",
                           "64", "--optimizer", "adam", "--lr", str(args.lr), "--lr-mode",
                           "cosine", "--stem", "thumbnail", "--bits", "1", "--bits-a", "1",
                           "--clip-threshold", "1.3", "--seed", str(args.seed), "--save-dir",
                           train_dir] + (["--quiet"] if args.quiet else []))
    print(f"[demo] training {args.model} (1-bit, thumbnail stem) on digits "
          f"{args.image_size}x{args.image_size} for {args.epochs} epochs", flush=True)
    t0 = time.time()
    summary = bt.train(targs)
    train_s = time.time() - t0
    net = summary.pop("net")
    return net, summary, train_s


def _score_gluon(net, x_test, y_test):
    """Step 2: Gluon (MXNet) logits, predictions, accuracy and batch-1 latency; ``predict``
    for the batched timing."""
    import mxnet as mx
    logits = net(mx.nd.array(x_test)).asnumpy()
    pred = logits.argmax(axis=1)

    def predict(x):
        return net(mx.nd.array(x)).asnumpy()
    return {"logits": logits, "pred": pred, "acc": float((pred == y_test).mean()),
            "ms": _time_per_image(predict, x_test, repeat=3), "predict": predict}


def _convert(net, ds, model_path):
    """Step 3: convert (BN folded, binary weights bit-packed); the sizes of the packed file
    and of the float parameters (without and with the BatchNorm statistics)."""
    import bmx
    from bmx.converter import float_size_bytes
    pre = ds.preprocess
    bmx.convert(net, input_shape=(1,) + ds.image_shape, path=model_path, mean=pre["mean"],
                std=pre["std"])
    params = {name: p.data() for name, p in net.collect_params().items()}
    return {"packed": os.path.getsize(model_path), "float": float_size_bytes(params),
            "float_all": 4 * sum(int(np.prod(p.shape)) for p in net.collect_params().values())}


def _score_engine(model_path, x_test, y_test, threads):
    """Step 4: the C++ engine image by image: logits, predictions, accuracy and batch-1
    latency; ``predict`` for the batched timing."""
    from bmx.engine import Model
    engine = Model(model_path, num_threads=threads)
    logits = np.concatenate([np.asarray(engine.predict(x_test[i:i + 1])).reshape(1, -1)
                             for i in range(len(y_test))])
    pred = logits.argmax(axis=1)
    return {"logits": logits, "pred": pred, "acc": float((pred == y_test).mean()),
            "ms": _time_per_image(lambda x: engine.predict(x), x_test, repeat=3),
            "predict": engine.predict}


def _report(args, ds, summary, train_s, gluon, engine, sizes, model_path, train_dir):
    """Step 5: the contents of ``report.json`` (``total_time_s`` filled in last)."""
    import mxnet as mx
    y_test, n_test = ds.test_y, len(ds.test_y)
    gl_pred, en_pred = gluon["pred"], engine["pred"]
    disagree = int((en_pred != gl_pred).sum())
    return {
        "gluon_test_accuracy": gluon["acc"],
        "engine_test_accuracy": engine["acc"],
        "float_size_bytes": sizes["float"],
        "packed_size_bytes": sizes["packed"],
        "gluon_ms_per_image": gluon["ms"],
        "engine_ms_per_image": engine["ms"],
        "gluon_ms_per_image_batched": gluon["batch_ms"],
        "engine_ms_per_image_batched": engine["batch_ms"],
        "test_images": n_test,
        "test_correct_gluon": int((gl_pred == y_test).sum()),
        "test_correct_engine": int((en_pred == y_test).sum()),
        "predictions_differing": disagree,
        "gluon_predictions": gl_pred.tolist(),
        "engine_predictions": en_pred.tolist(),
        "labels": y_test.tolist(),
        "max_abs_logit_difference": float(np.abs(engine["logits"] - gluon["logits"]).max()),
        "compression_ratio": sizes["float"] / sizes["packed"],
        "float_size_bytes_with_bn_statistics": sizes["float_all"],
        "speedup_engine_vs_gluon": (gluon["ms"] / engine["ms"] if engine["ms"] > 0
                                    else None),
        "model": args.model,
        "stem": "thumbnail",
        "bits": 1,
        "bits_a": 1,
        "dataset": "sklearn digits, 8x8 upscaled to "
                   f"{args.image_size}x{args.image_size}, fixed split {ds.num_train}/{n_test}",
        "epochs": args.epochs,
        "train_time_s": train_s,
        "best_val_accuracy": summary["best_val_acc"],
        "best_epoch": summary["best_epoch"],
        "reported_accuracy": "final epoch (the converted model); best_val_accuracy is the "
                             "best epoch",
        "timing": f"*_ms_per_image: batch 1, mean over the {n_test} test images, median of "
                  f"3 passes; *_batched: all test images in one call, median of 5; "
                  f"engine {args.engine_threads} thread(s), Gluon hybridized MXNet "
                  f"{mx.__version__} with its default threads",
        "engine_threads": args.engine_threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "model_file": model_path,
        "train_dir": train_dir,
        "total_time_s": None,
        "acceptance": {"gluon_accuracy_at_least_0.90": gluon["acc"] >= MIN_ACCURACY,
                       "engine_equals_gluon_on_every_test_image": disagree == 0},
    }


def _print_report(args, out, report):
    """The result table on stdout, failures on stderr; returns the exit code."""
    r = report
    n_test, disagree = r["test_images"], r["predictions_differing"]
    print()
    print("bmx demo: 1-bit BinaryDenseNet on digits (trained from scratch)")
    print(f"  model            {args.model} (thumbnail stem)")
    print(f"  training         {args.epochs} epochs in {r['train_time_s']:.1f} s")
    print(f"  test accuracy    Gluon {r['gluon_test_accuracy']:.4f}  engine "
          f"{r['engine_test_accuracy']:.4f}  ({r['test_correct_gluon']} vs "
          f"{r['test_correct_engine']} of {n_test}; {disagree} predictions differ)")
    print(f"  size             float32 {r['float_size_bytes']:,} B  packed "
          f"{r['packed_size_bytes']:,} B  ({r['compression_ratio']:.1f}x smaller)")
    print(f"  ms per image     Gluon {r['gluon_ms_per_image']:.3f}  engine "
          f"{r['engine_ms_per_image']:.3f}  (batch 1; engine {args.engine_threads} thread)")
    print(f"  batched          Gluon {r['gluon_ms_per_image_batched']:.3f}  engine "
          f"{r['engine_ms_per_image_batched']:.3f}  (all {n_test} images in one call)")
    print(f"  report           {os.path.join(out, 'report.json')}  "
          f"(total {r['total_time_s']:.1f} s)")
    ok_acc = r["acceptance"]["gluon_accuracy_at_least_0.90"]
    ok_match = r["acceptance"]["engine_equals_gluon_on_every_test_image"]
    if not ok_acc:
        print(f"bmx demo: FAILED: Gluon test accuracy {r['gluon_test_accuracy']:.4f} < "
              f"{MIN_ACCURACY}", file=sys.stderr)
    if not ok_match:
        print(f"bmx demo: FAILED: engine and Gluon predict different classes for {disagree} "
              f"of {n_test} test images", file=sys.stderr)
    return 0 if ok_acc and ok_match else 1


def main(argv=None):
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
