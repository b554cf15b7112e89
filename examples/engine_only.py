"""Run a converted model with the engine alone: no MXNet in the process.

Bethge et al., "BMXNet 2" (2019): a deployed binary network needs only the xnor-popcount
engine and numpy (``pip install bmx``, no ``[train]`` extra). This script loads a
``.bmx`` file, classifies a batch, times ``predict`` at batch 1 and 64 and prints
images per second; it checks at the end that MXNet was never imported.

Run::

    python examples/engine_only.py MODEL.bmx                    # batches 1 and 64, 1 thread
    python examples/engine_only.py MODEL.bmx --threads 2
    python examples/engine_only.py MODEL.bmx --seconds 0.2      # quick (the smoke test)
"""
import argparse
import sys
import time

import numpy as np

from bmx import engine


def images_per_second(model, batch, seconds, rng):
    """Median images/s of ``predict`` over repeated calls on one random batch."""
    x = rng.standard_normal((batch,) + tuple(model.input_shape[1:])).astype(np.float32)
    model.predict(x)  # first call allocates the activation buffers
    times, t_end = [], time.perf_counter() + seconds
    while len(times) < 3 or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        model.predict(x)
        times.append(time.perf_counter() - t0)
    return batch / float(np.median(times)), len(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a .bmx file written by bmx-convert / bmx.convert")
    ap.add_argument("--threads", type=int, default=1, help="threads per predict call")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64], help="batch sizes to time")
    ap.add_argument("--seconds", type=float, default=2.0, help="timing per batch size")
    args = ap.parse_args(argv)

    try:
        model = engine.Model(args.model, num_threads=args.threads)
    except (OSError, engine.ModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{model}\nproducer: {model.producer}")
    rng = np.random.default_rng(0)

    # Classify raw images: preprocess applies the mean/std the converter recorded.
    c, h, w = model.input_shape[1:]
    if model.mean:
        raw = rng.uniform(0, 255, (4, c, h, w)).astype(np.float32)
        x = model.preprocess(raw)
    else:
        x = rng.standard_normal((4, c, h, w)).astype(np.float32)
    print("predicted classes of 4 random images:", model.predict(x).argmax(1).tolist())

    print(f"{'batch':>6} {'images/s':>10} {'ms/batch':>10} {'calls':>6}  (threads {args.threads})")
    for b in args.batches:
        ips, n = images_per_second(model, b, args.seconds, rng)
        print(f"{b:>6} {ips:>10.1f} {1e3 * b / ips:>10.3f} {n:>6}")

    # The point of this example: the engine never loads the training stack.
    assert "mxnet" not in sys.modules, "mxnet was imported"
    print("mxnet imported: no")
    return 0


if __name__ == "__main__":
    sys.exit(main())
