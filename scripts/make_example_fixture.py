"""Write a converted model, an input tensor and the Python engine's top-5 for the C++
example checks (x86 vs ARM under emulation). Deterministic: fixed seeds.

Usage: python scripts/make_example_fixture.py OUT_DIR [--model binarydensenet28]
Writes OUT_DIR/model.bmx, OUT_DIR/input.f32 (NCHW float32, batch 2) and
OUT_DIR/top5.txt (one line per image: the five class indices, best first).
"""
import argparse
import os

import mxnet as mx
import numpy as np

import bmx


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--model", default="binarydensenet28")
    ap.add_argument("--size", type=int, default=32)
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    mx.random.seed(7)
    rng = np.random.default_rng(7)
    net = bmx.get_model(args.model, classes=100, stem="thumbnail")
    net.initialize(bmx.model_zoo.default_initializer())
    x = rng.standard_normal((2, 3, args.size, args.size)).astype(np.float32)
    net(mx.nd.array(x))
    # Non-trivial BatchNorm statistics, as after training.
    for name, p in net.collect_params().items():
        if name.endswith("running_mean"):
            p.set_data(mx.nd.array(rng.normal(0, 0.3, p.shape)))
        elif name.endswith("running_var"):
            p.set_data(mx.nd.array(rng.uniform(0.5, 2.0, p.shape)))
        elif name.endswith("gamma"):
            p.set_data(mx.nd.array(rng.uniform(0.5, 1.5, p.shape)))
        elif name.endswith("beta"):
            p.set_data(mx.nd.array(rng.normal(0, 0.2, p.shape)))
    path = os.path.join(args.out_dir, "model.bmx")
    bmx.convert(net, input_shape=(1, 3, args.size, args.size), path=path)
    x.tofile(os.path.join(args.out_dir, "input.f32"))
    logits = bmx.engine.Model(path).predict(x)
    gluon = net(mx.nd.array(x)).asnumpy()
    if not (logits.argmax(1) == gluon.argmax(1)).all():
        raise SystemExit("engine and Gluon disagree on the fixture's argmax")
    with open(os.path.join(args.out_dir, "top5.txt"), "w") as f:
        for row in logits:
            order = sorted(range(len(row)), key=lambda i: (-row[i], i))[:5]
            f.write(" ".join(map(str, order)) + "\n")
    print(f"fixture: {path} ({os.path.getsize(path)} bytes), input {x.shape}")


if __name__ == "__main__":
    main()
