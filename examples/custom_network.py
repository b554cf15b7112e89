"""A custom binary network from bmx.nn layers: train, convert, run on the engine.

Bethge et al., "Back to Simplicity: How to Train Accurate BNNs from Scratch?" (2019):
a full-precision stem and classifier around binary 3x3 convolutions, each followed by
BatchNorm. The network uses both spellings of a binary convolution, the explicit
``QActivation`` + ``QConv2D`` pair and the fused ``BinaryConvolution``, trains for a
few steps on scikit-learn's bundled digits (offline), is converted with
:func:`bmx.convert` and runs on the C++ engine, whose predictions must equal Gluon's.

Run::

    python examples/custom_network.py            # 200 steps
    python examples/custom_network.py --tiny     # 60 steps (the smoke test)
    python examples/custom_network.py -o net.bmx # also keep the model file
"""
import argparse
import sys
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.gluon import nn

import bmx
from bmx.data import load_digits_split


def build_network(classes=10):
    """Float stem -> two binary 3x3 convolutions (64 channels) -> float classifier."""
    net = nn.HybridSequential()
    with net.name_scope():
        # full-precision stem: the first layer sees the real-valued image
        net.add(nn.Conv2D(64, 3, padding=1, use_bias=False), nn.BatchNorm())
        # binary conv, explicit: sign(x) (sign(0) = +1), then a 1-bit weight conv with
        # -1 padding; BatchNorm after it folds into the engine's per-channel scale/shift
        net.add(bmx.nn.QActivation(),
                bmx.nn.QConv2D(64, kernel_size=3, padding=1),
                nn.BatchNorm())
        net.add(nn.MaxPool2D(2))
        # the same, fused into one block
        net.add(bmx.nn.BinaryConvolution(64, kernel_size=3, padding=1), nn.BatchNorm())
        # full-precision classifier
        net.add(nn.Activation("relu"), nn.GlobalAvgPool2D(), nn.Dense(classes))
    return net


def train(net, x, y, steps, batch_size=64, lr=0.005, seed=0):
    """Adam on softmax cross-entropy; binary weights and BatchNorm get no weight decay."""
    bmx.nn.set_binary_wd_mult(net)
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": lr, "wd": 1e-5})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    rng = np.random.default_rng(seed)
    for step in range(steps):
        idx = rng.choice(len(x), batch_size, replace=False)
        data, label = mx.nd.array(x[idx]), mx.nd.array(y[idx])
        with autograd.record():
            loss = loss_fn(net(data), label)
        loss.backward()
        trainer.step(batch_size)
        if step % 10 == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {loss.mean().asscalar():.4f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200, help="training steps (batch 64)")
    ap.add_argument("--tiny", action="store_true", help="60 steps: a quick smoke run")
    ap.add_argument("-o", "--output", default=None, help="also write the model file here")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    # BatchNorm's running statistics (used at inference) trail the quickly changing early
    # weights: after 30 steps the training batches were 75% right but inference near
    # chance; after 60, about 89% of the test images.
    steps = 60 if args.tiny else args.steps

    mx.random.seed(args.seed)
    xtr, ytr, xte, yte, pre = load_digits_split(image_size=16)
    net = build_network()
    net.initialize(bmx.model_zoo.default_initializer())
    t0 = time.perf_counter()
    train(net, xtr, ytr, steps, seed=args.seed)
    print(f"trained {steps} steps in {time.perf_counter() - t0:.1f} s")

    # Convert (records the digits normalisation for users of the file) and load it.
    data = bmx.convert(net, input_shape=(1, 1, 16, 16), path=args.output,
                       mean=pre["mean"], std=pre["std"])
    model = bmx.engine.Model(data)
    print(f"converted: {len(data)} bytes, {model}")

    gluon_logits = net(mx.nd.array(xte)).asnumpy()  # inference mode: BN running stats
    engine_logits = model.predict(xte)
    gluon_pred, engine_pred = gluon_logits.argmax(1), engine_logits.argmax(1)
    rel = np.abs(gluon_logits - engine_logits).max() / np.abs(gluon_logits).max()
    print(f"test accuracy: Gluon {np.mean(gluon_pred == yte):.4f}, engine {np.mean(engine_pred == yte):.4f}")
    print(f"predictions equal on {np.mean(gluon_pred == engine_pred) * 100:.2f}% of {len(yte)} test images; "
          f"max |logit difference| / max |logit| = {rel:.2e}")
    # Binary convolutions are exact integers; the float layers differ by float32 rounding
    # between MXNet (oneDNN) and the engine (OpenBLAS), about 1e-6 of the logit scale, so
    # every prediction must agree (see docs/model-format.md, "Numerical agreement").
    if not np.array_equal(gluon_pred, engine_pred):
        print("error: the engine's predictions differ from Gluon's", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
