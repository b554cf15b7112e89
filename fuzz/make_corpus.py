"""Seed corpus for the model-loader fuzzer (fuzz/fuzz_loader.cc).

Converts small members of the model zoo (the zoo's own constructors and blocks, thumbnail
stem, 16x16 and 32x32 inputs, BatchNorm statistics randomised so no fold is trivial) with
``bmx.convert``, then writes hand-mutated variants of one of them: truncations, a wrong
file identifier, an unknown format version, an all-zero body, and byte flips in the
header, the tables and the weights. Deterministic (fixed seeds).

Usage: python fuzz/make_corpus.py OUT_DIR [--full]
  --full  also converts the named zoo models (binarydensenet28, resnete18, meliusnet22)
          at 32x32: MiB-sized seeds for long runs with a larger -max_len.
"""
import argparse
import os
import struct
import sys

import numpy as np

# name -> (constructor, kwargs, input HxW); the zoo's blocks at a size that runs in ms.
SMALL = {
    "resnete_small": ("resnete_flex", dict(layers=(1, 1), channels=(16, 32)), 32),
    "resnete_binary_ds": ("resnete_flex", dict(layers=(1, 1), channels=(8, 16), downsample="binary",
                                               downsample_pool=False), 16),
    "densenet_small": ("binarydensenet_flex", dict(block_config=(1, 1), growth_rate=16,
                                                   init_features=16, transition_channels=(32,)), 32),
    "densenet_dilated": ("binarydensenet_flex", dict(block_config=(1, 1), growth_rate=8,
                                                     init_features=8, transition_channels=(8,),
                                                     dilation=(1, 2)), 16),
    "melius_small": ("meliusnet_flex", dict(block_config=(1, 1), growth_rate=16, init_features=32,
                                            transition_channels=(32,), stem="thumbnail"), 32),
    "melius_grouped": ("meliusnet_flex", dict(block_config=(1, 1), growth_rate=16, init_features=32,
                                              transition_channels=(32,), transition_groups=2,
                                              channel_shuffle=2, stem="thumbnail"), 16),
}
FULL = {"binarydensenet28": 32, "resnete18": 32, "meliusnet22": 32}


def _randomise_bn(net, rng):
    for name, p in net.collect_params().items():
        shape = p.shape
        if name.endswith("running_mean"):
            p.set_data(rng.normal(0, 0.5, shape).astype(np.float32))
        elif name.endswith("running_var"):
            p.set_data(rng.uniform(0.5, 2.0, shape).astype(np.float32))
        elif name.endswith("gamma"):
            p.set_data(rng.uniform(0.5, 1.5, shape).astype(np.float32) * rng.choice([-1, 1], shape))
        elif name.endswith("beta"):
            p.set_data(rng.normal(0, 0.3, shape).astype(np.float32))


def convert_one(ctor, kwargs, hw, seed, classes=10):
    import mxnet as mx
    import bmx
    from bmx import model_zoo
    mx.random.seed(seed)
    rng = np.random.default_rng(seed)
    kw = dict(classes=classes)
    kw.setdefault("stem", "thumbnail")
    kw.update(kwargs)
    net = getattr(model_zoo, ctor)(**kw) if ctor.endswith("_flex") else model_zoo.get_model(ctor, **kw)
    net.initialize(model_zoo.default_initializer())
    net(mx.nd.zeros((1, 3, hw, hw)))
    _randomise_bn(net, rng)
    return bmx.convert(net, input_shape=(1, 3, hw, hw))


def mutations(data):
    """Hand-mutated variants of a valid model file: name -> bytes."""
    out = {}
    n = len(data)
    for frac in (0.0, 0.01, 0.25, 0.5, 0.9, 0.999):
        cut = int(n * frac) // 4 * 4
        out[f"trunc_{int(frac * 1000):04d}"] = data[:cut]
    out["trunc_odd"] = data[:-1]
    out["bad_identifier"] = data[:4] + b"XMB1" + data[8:]
    out["zero_body"] = data[:8] + bytes(n - 8)
    out["extended"] = data + bytes(16)
    # Format version: the root table's first scalar field holding kFormatVersion (1).
    root = struct.unpack_from("<I", data, 0)[0]
    vtab = root - struct.unpack_from("<i", data, root)[0]
    vsize = struct.unpack_from("<H", data, vtab)[0]
    if vsize > 4:
        voff = struct.unpack_from("<H", data, vtab + 4)[0]  # field 0: version
        if voff:
            for v in (0, 2, 0xFFFFFFFF):
                b = bytearray(data)
                struct.pack_into("<I", b, root + voff, v)
                out[f"version_{v}"] = bytes(b)
    rng = np.random.default_rng(7)
    for i, off in enumerate(sorted(set(rng.integers(0, n, 24).tolist()) | {0, 4, 8, 12, 16, n // 2})):
        b = bytearray(data)
        b[off] ^= 0xFF if i % 2 else 0x01
        out[f"flip_{off:07d}"] = bytes(b)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--full", action="store_true")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    base = None
    for i, (name, (ctor, kwargs, hw)) in enumerate(SMALL.items()):
        data = convert_one(ctor, kwargs, hw, seed=100 + i)
        with open(os.path.join(args.out, f"{name}_{hw}.bmx"), "wb") as f:
            f.write(data)
        print(f"{name}_{hw}.bmx: {len(data)} bytes")
        if base is None or len(data) < len(base):
            base = data
    for name, data in mutations(base).items():
        with open(os.path.join(args.out, f"mut_{name}.bmx"), "wb") as f:
            f.write(data)
    print(f"{len(mutations(base))} mutated variants of a {len(base)}-byte model")
    if args.full:
        for i, (name, hw) in enumerate(FULL.items()):
            data = convert_one(name, {}, hw, seed=200 + i)
            with open(os.path.join(args.out, f"{name}_{hw}.bmx"), "wb") as f:
                f.write(data)
            print(f"{name}_{hw}.bmx: {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
