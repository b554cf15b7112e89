"""``bmx-bench train``: training throughput of a binary network and its float twin.

Bethge et al., "Back to Simplicity: How to Train Accurate BNNs from Scratch?" (2019):
binary networks are trained with float shadow weights, so a training step costs the float
layers plus the quantizers (sign, clip, -1 padding). This measures what a user gets: one
``bmx-train`` process per model, started fresh, for one epoch, and reports

- images/s over the whole process wall clock (interpreter and MXNet start-up, data
  loading, model building, the epoch; no validation split, no test scoring),
- images/s of the epoch loop alone (from the run's ``log.csv``),
- the cores the process kept busy during the epoch (its CPU time / wall time) and the
  OpenMP threads MXNet was given.

Timings drift with the load of a shared machine: compare the rows of one run.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

from .._cli import int_at_least
from .common import loadavg

#: the network bmx-train trains by default
DEFAULT_MODEL = ("binarydensenet_flex:block_config=(2,2,2),growth_rate=32,init_features=32,"
                 "reduction=2")


def add_parser(sub):
    """Add the ``train`` subcommand to ``sub`` (argparse subparsers)."""
    p = sub.add_parser(
        "train", help="training images/s: a binary network and its float twin, fresh processes",
        description="One epoch of bmx-train per model in a fresh process (no validation "
                    "split, no test scoring): images/s over the whole wall clock including "
                    "start-up, images/s of the epoch loop, and the cores kept busy.")
    p.add_argument("--dataset", default="fashion-mnist", help="bmx-train dataset (default fashion-mnist)")
    p.add_argument("--data-dir", default=None, help="passed to bmx-train")
    p.add_argument("--model", default=DEFAULT_MODEL, help="zoo name or flex spec (default: bmx-train's)")
    p.add_argument("--images", type=int_at_least(1), default=12800,
                   help="training images in the epoch (default 12800)")
    p.add_argument("--batch-size", type=int_at_least(1), default=128, help="default 128")
    p.add_argument("--no-float", dest="float_twin", action="store_false",
                   help="measure the binary model only")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    return p


def _one(args, float_twin):
    with tempfile.TemporaryDirectory(prefix="bmx-bench-train-") as out:
        cmd = [sys.executable, "-m", "bmx.train", "--dataset", args.dataset, "--model", args.model,
               "--train-images", str(args.images), "--batch-size", str(args.batch_size),
               "--epochs", "1", "--val-split", "0", "--no-test", "--no-plot", "--quiet",
               "--save-dir", out]
        if args.data_dir:
            cmd += ["--data-dir", args.data_dir]
        if float_twin:
            cmd.append("--float-twin")
        t0 = time.time()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wall = time.time() - t0
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
            raise RuntimeError(f"bmx-train failed ({proc.returncode}):\n{tail}")
        with open(os.path.join(out, "checkpoint.json")) as f:
            epoch = json.load(f)["history"][-1]
        with open(os.path.join(out, "run.json")) as f:
            threads = json.load(f)["threads"]
    n = epoch["images_per_s"] * epoch["epoch_time_s"]
    return {"model": "float twin" if float_twin else "binary", "images": int(round(n)),
            "wall_s": wall, "images_per_s_wall": n / wall,
            "epoch_s": epoch["epoch_time_s"], "images_per_s_epoch": epoch["images_per_s"],
            "startup_and_rest_s": wall - epoch["epoch_time_s"],
            "cores_busy": epoch.get("cpu_busy"), "threads": threads}


def run(args):
    """Run the ``train`` benchmark; returns the result document (also printed).

    Raises
    ------
    RuntimeError
        When a bmx-train process fails.
    """
    rows = [_one(args, False)]
    if args.float_twin:
        rows.append(_one(args, True))
    doc = {"dataset": args.dataset, "model": args.model, "batch_size": args.batch_size,
           "images": args.images, "loadavg": loadavg(), "rows": rows}
    if len(rows) == 2:
        doc["binary_over_float_time"] = rows[1]["images_per_s_wall"] / rows[0]["images_per_s_wall"]
    if args.json:
        print(json.dumps(doc, indent=2))
        return doc
    print(f"one epoch of {args.images} {args.dataset} images, batch {args.batch_size}, "
          f"model {args.model}")
    print(f"{'model':<11} {'img/s wall':>10} {'wall s':>7} {'img/s epoch':>11} "
          f"{'epoch s':>8} {'start-up+rest s':>15} {'cores busy':>10} {'OMP threads':>11}")
    for r in rows:
        print(f"{r['model']:<11} {r['images_per_s_wall']:>10.0f} {r['wall_s']:>7.1f} "
              f"{r['images_per_s_epoch']:>11.0f} {r['epoch_s']:>8.1f} "
              f"{r['startup_and_rest_s']:>15.1f} {r['cores_busy']:>10.2f} "
              f"{str(r['threads']['omp_num_threads']):>11}")
    if "binary_over_float_time" in doc:
        print(f"binary step costs {doc['binary_over_float_time']:.2f}x the float twin's (wall clock)")
    return doc
