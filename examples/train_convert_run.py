"""Fashion-MNIST end to end: bmx-train -> bmx-convert RUN_DIR -> the engine on raw images.

Bethge et al., "Back to Simplicity: How to Train Accurate BNNs from Scratch?" (2019):
a BinaryDenseNet trained from scratch. The three steps are the command-line tools a user
runs; the last step uses only :class:`bmx.engine.Model` and numpy: it reads the raw
uint8 test images from Debian's ``dataset-fashion-mnist`` package, normalises them with
the mean/std that ``bmx-convert`` recorded from the run (:meth:`~bmx.engine.Model.preprocess`)
and classifies them. Its accuracy must match bmx-train's own (MXNet) test accuracy of the
same, last-epoch, model.

Run::

    python examples/train_convert_run.py                 # 10 epochs on 60k images (~1 h on 2 cores)
    python examples/train_convert_run.py --tiny          # 512 images, 1 epoch, small model
    python examples/train_convert_run.py --out runs/ex   # where the run goes
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

SMALL_MODEL = ("binarydensenet_flex:block_config=(1,1),growth_rate=16,init_features=16,"
               "transition_channels=(16,)")
FASHION_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot")


def tool(name, *args):
    """Run a bmx console script (the one installed next to this Python, else ``-m``)."""
    exe = os.path.join(os.path.dirname(sys.executable), name)
    module = {"bmx-train": "bmx.train", "bmx-convert": "bmx.converter"}[name]
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", module]
    print("$", name, " ".join(args), flush=True)
    subprocess.run(cmd + list(args), check=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/example-fashion", help="bmx-train run directory")
    ap.add_argument("--tiny", action="store_true",
                    help="--train-images 512 --epochs 1 (batch 8), a small model: a smoke run")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--train-images", type=int, default=None)
    ap.add_argument("--model", default=None, help="zoo name or flex spec (default: bmx-train's)")
    args = ap.parse_args(argv)
    if not os.path.isdir(FASHION_DIR):
        print(f"error: Fashion-MNIST not found in {FASHION_DIR}: apt-get install dataset-fashion-mnist",
              file=sys.stderr)
        return 2

    # 1. Train (MXNet). The run directory gets run.json (input shape, mean/std),
    #    the exported last epoch (model-symbol.json, model-0000.params) and summary.json.
    train = ["--dataset", "fashion-mnist", "--save-dir", args.out, "--seed", "0", "--no-plot"]
    if args.tiny:
        # 64 steps of batch 8: with 8 steps of the default 64, BatchNorm's running
        # statistics still trail the weights and every image gets one class (10%).
        train += ["--train-images", "512", "--epochs", "1", "--val-split", "512",
                  "--batch-size", "8", "--lr", "0.01", "--model", SMALL_MODEL, "--quiet"]
    else:
        train += ["--epochs", str(args.epochs)]
        if args.train_images:
            train += ["--train-images", str(args.train_images)]
        if args.model:
            train += ["--model", args.model]
    t0 = time.perf_counter()
    tool("bmx-train", *train)
    print(f"trained in {time.perf_counter() - t0:.0f} s")

    # 2. Convert the run: input shape, classes and mean/std come from run.json.
    tool("bmx-convert", args.out)
    model_path = os.path.join(args.out, "model.bmx")

    # 3. The engine on raw test images (no MXNet needed from here on).
    from bmx import engine
    from bmx.data import read_idx
    images = read_idx(os.path.join(FASHION_DIR, "t10k-images-idx3-ubyte.gz"))  # uint8 (N, 28, 28)
    labels = read_idx(os.path.join(FASHION_DIR, "t10k-labels-idx1-ubyte.gz"))
    model = engine.Model(model_path, num_threads=len(os.sched_getaffinity(0)))
    print(f"{model_path}: {model}; mean {model.mean}, std {model.std}")
    t0 = time.perf_counter()
    pred = np.concatenate([model.predict(model.preprocess(images[i:i + 1000])).argmax(1)
                           for i in range(0, len(images), 1000)])
    dt = time.perf_counter() - t0
    acc = float(np.mean(pred == labels))
    with open(os.path.join(args.out, "summary.json")) as f:
        mx_acc = json.load(f)["test_acc"]
    print("first test images:", ", ".join(f"{CLASSES[p]} ({CLASSES[t]})" for p, t in zip(pred[:5], labels[:5])))
    print(f"engine test accuracy {acc:.4f} on {len(labels)} raw images in {dt:.2f} s "
          f"({len(labels) / dt:.0f} images/s); bmx-train's MXNet test accuracy {mx_acc:.4f}")
    # The engine computes the binary layers exactly and the float ones up to float32
    # rounding; a sign flip near a threshold can change a few predictions (docs/model-format.md:
    # >= 99.7% agreement), so the accuracies differ by at most about 0.3 points.
    if abs(acc - mx_acc) > 0.01:
        print("error: the engine's accuracy differs from bmx-train's by more than 1 point", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
