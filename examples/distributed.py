"""Data-parallel training with MXNet's parameter server on one machine.

Li et al., "Scaling Distributed Machine Learning with the Parameter Server" (2014), as in
MXNet's kvstore ``dist_sync``: ``bmx-launch -n 2 -s 1`` starts a scheduler, one server and
two ``bmx-train --kvstore dist_sync`` workers on 127.0.0.1; each worker trains on its
half of every epoch and the server sums the gradients, so both workers end with the same
parameters. This script runs that command, checks that the two workers' final parameters
are bit-identical and converts the run for the engine. On a cluster the same bmx-train
command runs under MXNet's ``tools/launch.py`` (see the README).

Run::

    python examples/distributed.py              # digits, 16x16, 6 epochs
    python examples/distributed.py --tiny       # 8x8, 1 epoch, small model (the smoke test)
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

SMALL_MODEL = ("binarydensenet_flex:block_config=(1,1),growth_rate=16,init_features=16,"
               "transition_channels=(16,)")


def tool(name, *args):
    """Run a bmx console script (the one installed next to this Python, else ``-m``)."""
    exe = os.path.join(os.path.dirname(sys.executable), name)
    module = {"bmx-train": "bmx.train", "bmx-launch": "bmx.launch", "bmx-convert": "bmx.converter"}[name]
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", module]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/example-dist", help="bmx-train run directory")
    ap.add_argument("--tiny", action="store_true", help="8x8 digits, 1 epoch, small model")
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args(argv)

    train = ["--kvstore", "dist_sync", "--dataset", "digits", "--seed", "0", "--quiet",
             "--no-plot", "--save-dir", args.out, "--batch-size", "32"]
    train += (["--image-size", "8", "--epochs", "1", "--model", SMALL_MODEL] if args.tiny
              else ["--epochs", str(args.epochs)])
    cmd = tool("bmx-launch") + ["-n", "2", "-s", "1", "--timeout", "600", "--"] + tool("bmx-train") + train
    print("$ bmx-launch -n 2 -s 1 -- bmx-train " + " ".join(train), flush=True)
    subprocess.run(cmd, check=True)

    # Both workers must hold the same parameters: dist_sync applies one summed update.
    import mxnet as mx
    a = mx.nd.load(os.path.join(args.out, "final-rank0.params"))
    b = mx.nd.load(os.path.join(args.out, "final-rank1.params"))
    same = sorted(a) == sorted(b) and all(np.array_equal(a[k].asnumpy(), b[k].asnumpy()) for k in a)
    with open(os.path.join(args.out, "summary.json")) as f:
        summary = json.load(f)
    print(f"workers: {summary.get('dist_workers')}; parameters identical on both: {same}; "
          f"test accuracy {summary['test_acc']:.4f}")
    if not same:
        print("error: the workers' parameters differ", file=sys.stderr)
        return 1

    # The run converts like any other.
    subprocess.run(tool("bmx-convert") + [args.out], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
