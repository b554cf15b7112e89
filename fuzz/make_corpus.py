"""Seed corpus for the model-loader fuzzer (fuzz/fuzz_loader.cc).

Converts small members of the model zoo (the zoo's own constructors and blocks, thumbnail
stem, 16x16 and 32x32 inputs, BatchNorm statistics randomised so no fold is trivial), two
tiny format-version-2 nets, a binary classifier (binary dense layers on 4-D and 2-D
values) and an XNOR-Net convolution, and two tiny version-3 nets, k-bit activations into
k-bit convolutions (Quantize -> KbitConv2D, twice) and a sign activation into a k-bit
weight convolution (Sign -> KbitConv2D), with ``bmx.convert``, then writes hand-mutated
variants of the smallest zoo model: truncations, a wrong file identifier, unknown format
versions, an all-zero body, and byte flips in the header, the tables and the weights; and
each version-2 or -3 net labelled one version lower. Deterministic (fixed seeds).

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


def convert_binary_classifier(seed, hw=6, classes=10):
    """A float conv stem, then QDense on its binarized 4-D features (C = 70, not a whole
    number of words) and QDense on the binarized 2-D output of the first: two BinaryDense
    ops, the second reading 2-D Bits (format version 2)."""
    import mxnet as mx
    from mxnet.gluon import nn
    import bmx
    from bmx import model_zoo
    mx.random.seed(seed)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(70, 3, strides=2, padding=1), nn.BatchNorm(), bmx.nn.QActivation(),
            bmx.nn.QDense(33), nn.BatchNorm(), bmx.nn.QActivation(), bmx.nn.QDense(classes))
    net.initialize(model_zoo.default_initializer())
    net(mx.nd.zeros((1, 3, hw, hw)))
    _randomise_bn(net, np.random.default_rng(seed))
    return bmx.convert(net, input_shape=(1, 3, hw, hw))


def convert_xnor_net(seed, hw=8, classes=10):
    """A float conv stem and one XNOR-Net convolution between BatchNorms (Sign ->
    BinaryConv2D, MeanAbsChannels -> Pool2D avg -> Mul in the file, format version 2), then
    global pooling and a float classifier."""
    import mxnet as mx
    from mxnet.gluon import nn
    import bmx
    from bmx import model_zoo
    mx.random.seed(seed)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(16, 3, padding=1), nn.BatchNorm(),
            bmx.nn.activated_conv(8, 3, padding=1, approximation="xnor"), nn.BatchNorm(),
            nn.GlobalAvgPool2D(), nn.Dense(classes))
    net.initialize(model_zoo.default_initializer())
    net(mx.nd.zeros((1, 3, hw, hw)))
    _randomise_bn(net, np.random.default_rng(seed))
    return bmx.convert(net, input_shape=(1, 3, hw, hw))


def convert_kbit_net(seed, hw=8, classes=10):
    """A float conv stem, then 2-bit activations into a 2-bit DoReFa conv and 4-bit
    activations into a strided 3-bit one (Quantize with the BatchNorms folded ->
    KbitConv2D, format version 3: Levels of 2 and 4 planes), global pooling and a float
    classifier."""
    import mxnet as mx
    from mxnet.gluon import nn
    import bmx
    from bmx import model_zoo
    mx.random.seed(seed)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(16, 3, padding=1), nn.BatchNorm(), bmx.nn.QActivation(bits=2),
            bmx.nn.QConv2D(16, 3, padding=1, bits=2), nn.BatchNorm(), bmx.nn.QActivation(bits=4),
            bmx.nn.QConv2D(8, 3, strides=2, padding=1, bits=3), nn.BatchNorm(), nn.GlobalAvgPool2D(),
            nn.Dense(classes))
    net.initialize(model_zoo.default_initializer())
    net(mx.nd.zeros((1, 3, hw, hw)))
    _randomise_bn(net, np.random.default_rng(seed))
    return bmx.convert(net, input_shape=(1, 3, hw, hw))


def convert_sign_kbit_net(seed, hw=8, classes=10):
    """A float conv stem, then sign activations into a 3-bit DoReFa conv (Sign ->
    KbitConv2D on Bits, format version 3), global pooling and a float classifier."""
    import mxnet as mx
    from mxnet.gluon import nn
    import bmx
    from bmx import model_zoo
    mx.random.seed(seed)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(16, 3, padding=1), nn.BatchNorm(), bmx.nn.QActivation(),
            bmx.nn.QConv2D(8, 3, padding=1, bits=3), nn.BatchNorm(), nn.GlobalAvgPool2D(), nn.Dense(classes))
    net.initialize(model_zoo.default_initializer())
    net(mx.nd.zeros((1, 3, hw, hw)))
    _randomise_bn(net, np.random.default_rng(seed))
    return bmx.convert(net, input_shape=(1, 3, hw, hw))


def _expect_version(data, version, ops):
    """The seed is the file it is meant to be: it loads, says `version` and has `ops`."""
    from bmx import engine
    from bmx.modelfile import read_model
    engine.validate_model(data)
    m = read_model(data)
    missing = set(ops) - {op["type"] for op in m["ops"]}
    if m["version"] != version or missing:
        raise SystemExit(f"expected a version-{version} file with {sorted(ops)}, got version {m['version']} "
                         f"without {sorted(missing)}")


def _version_pos(data):
    """Byte offset of Model.version (the root table's field 0), or None when not written."""
    root = struct.unpack_from("<I", data, 0)[0]
    vtab = root - struct.unpack_from("<i", data, root)[0]
    vsize = struct.unpack_from("<H", data, vtab)[0]
    voff = struct.unpack_from("<H", data, vtab + 4)[0] if vsize > 4 else 0
    return root + voff if voff else None


def with_version(data, version):
    b = bytearray(data)
    struct.pack_into("<I", b, _version_pos(data), version)
    return bytes(b)


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
    # Format version: the root table's field 0, the lowest version that expresses the model
    # (1 without version-2 ops); readers take MIN_FORMAT_VERSION .. FORMAT_VERSION. Below,
    # above (a future format) and the largest uint32.
    from bmx.engine import FORMAT_VERSION
    if _version_pos(data) is not None:
        for v in (0, FORMAT_VERSION + 1, 0xFFFFFFFF):
            out[f"version_{v}"] = with_version(data, v)
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
    # Seeds of versions 2 and 3, each also labelled one version lower (refused: it uses
    # what its version added)
    for name, convert, seed, version, ops in (
            ("binary_classifier_6", convert_binary_classifier, 150, 2, ["BinaryDense"]),
            ("xnor_net_8", convert_xnor_net, 160, 2, ["MeanAbsChannels", "Mul"]),
            ("kbit_net_8", convert_kbit_net, 170, 3, ["Quantize", "KbitConv2D"]),
            ("sign_kbit_net_8", convert_sign_kbit_net, 180, 3, ["Sign", "KbitConv2D"])):
        data = convert(seed=seed)
        _expect_version(data, version, ops)
        with open(os.path.join(args.out, f"{name}.bmx"), "wb") as f:
            f.write(data)
        with open(os.path.join(args.out, f"mut_{name}_version_{version - 1}.bmx"), "wb") as f:
            f.write(with_version(data, version - 1))
        print(f"{name}.bmx: {len(data)} bytes (and labelled version {version - 1})")
    if args.full:
        for i, (name, hw) in enumerate(FULL.items()):
            data = convert_one(name, {}, hw, seed=200 + i)
            with open(os.path.join(args.out, f"{name}_{hw}.bmx"), "wb") as f:
                f.write(data)
            print(f"{name}_{hw}.bmx: {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
