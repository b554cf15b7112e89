#!/usr/bin/env python3
"""Regression corpus of the model loader: the files of tests/data/fuzz-regressions/.

Writes, deterministically, one small broken model file per check that the loader
(``src/runtime/loader.cc``) performs, each with the error it must raise, into OUT_DIR
(default ``tests/data/fuzz-regressions/``) together with ``manifest.json``, one line per
file (see :func:`dumps_manifest`)::

    "<name>.bmx": {"error": "ModelError", "message": "<fragment>", "check": "<loader check>",
                   "description": "<what the file breaks>", "base": "<made from>",
                   "source": "generated"}

Every file is one fault away from a valid base model (:func:`base_model`: 13 ops, one of
each kind of format version 1, 3x4x4 input, 3 classes, written as version 1), from the
version-2 bases of :func:`bdense_model` (BinaryDense on 4-D Bits of 70 channels, then a
2-D Sign -> BinaryDense chain) and :func:`xnor_model` (an XNOR-Net convolution as the
converter writes it: Sign -> BinaryConv2D, MeanAbsChannels -> Pool2D avg, Mul), from the
version-3 base of :func:`kbit_model` (Quantize -> Levels(2) -> KbitConv2D with 2 weight
planes, Sign -> KbitConv2D with 3, padded), from a prefix of their ops (also valid, and
smaller) or from a two- or three-value model built for one bound (sizes that overflow,
reductions that are too large). A few files must load (``"error": "none"``): labels 2 to
FORMAT_VERSION on a model without newer ops, the BinaryDense, XNOR and k-bit bases and a
few k-bit boundary values. The bases are written directly with the FlatBuffers builder and
the generated code in ``bmx/fb/`` (no MXNet), with weights that are multiples of 1/8 (and,
for the XNOR base, an input whose averages divide exactly: :func:`xnor_input`), so the
engine's output equals ``bmx.modelfile.run_model``'s exactly, except after a KbitConv2D
(levels L/3 and weights 2L/3 - 1 are not dyadic: equal to float32 rounding); the replay
tests check that every model the files come from loads and runs, so each file's failure is
its own fault. The expected messages are written from the loader's source, not recorded
from its output; the format versions and the plane bound are read from the C++ headers.

Groups of files (name prefixes): ``buf_`` buffer size and identifier; ``trunc_``,
``flip_`` and ``corrupt_`` truncations, single-bit flips and overwritten words of a valid
file that FlatBuffers verification rejects (positions found by walking the buffer, so each
hits a known offset, length, alignment or string terminator); ``model_`` version (0,
absent, the future FORMAT_VERSION + 1, 2^32 - 1; 2 to FORMAT_VERSION load), values (an
unknown kind among them), inputs/outputs, ops, output, num_classes, mean/std; ``op_`` the
per-op checks shared by every op (type, options, arity of the lists, indices, order); then
one prefix per op kind (``conv_``, ``bconv_``, ``sign_``, ``affine_``, ``relu_``,
``pool_``, ``concat_``, ``add_``, ``addlast_``, ``shuffle_``, ``dense_``, ``flatten_``,
``bdense_``; ``bdense_`` also holds what version 2 added, used in a file that says
version 1: a BinaryDense, a 2-D Bits value), ``xnor_`` for the two other ops of version 2,
MeanAbsChannels (``xnor_mac_``) and Mul (``xnor_mul_``), each also in a file that says
version 1, and ``kbit_`` for what version 3 added: Levels values (version, planes; planes
on Float and Bits values; a Levels model input or output; the older ops fed one),
Quantize (``kbit_quant_``) and KbitConv2D (``kbit_conv_``, with its reduction bound per
pair of plane counts), each also in a file that says version 2.

Entries whose ``source`` is not ``generated`` (minimised fuzz finds added by hand, see
fuzz/README.md) and their files are kept as they are when the corpus is regenerated.

Usage: python scripts/make_regression_corpus.py [OUT_DIR] [--check]
  --check  also load every file with bmx.engine (needs the compiled extension) and fail
           unless each loads or is rejected as its entry says and the base models run.
"""
import argparse
import copy
import json
import os
import re
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, ROOT)

from bmx.convention import pack_bits, pack_levels  # noqa: E402
from bmx.fb.OpOptions import OpOptions as OO  # noqa: E402

DEFAULT_OUT = os.path.join(ROOT, "tests", "data", "fuzz-regressions")
MANIFEST = "manifest.json"
FILE_IDENTIFIER = b"BMX1"


def _cxx_constant(path, name):
    """The integer value of `constexpr <type> name = <int>;` in a C++ header of src/."""
    with open(os.path.join(ROOT, "src", path)) as f:
        found = re.findall(rf"constexpr\s+[\w:]+\s+{name}\s*=\s*(\d+)\s*;", f.read())
    if len(found) != 1:
        raise SystemExit(f"{name} not found once in src/{path}")
    return int(found[0])


# Read from the sources so that a format bump shows up here without an edit: version 2
# added BinaryDense, MeanAbsChannels, Mul and 2-D Bits; version 3 Levels values, Quantize
# and KbitConv2D.
FORMAT_VERSION = _cxx_constant("include/bmx/engine.h", "kFormatVersion")         # the newest read
MIN_FORMAT_VERSION = _cxx_constant("include/bmx/engine.h", "kMinFormatVersion")  # the oldest
MAX_PLANES = _cxx_constant("core/kbgemm/kbgemm.h", "kMaxKbitPlanes")  # planes of Levels / weights
READS = f"this bmx reads versions {MIN_FORMAT_VERSION} to {FORMAT_VERSION}"
MAX_DIM = 1 << 20             # loader.cc kMaxDim
MAX_WINDOW = 4096             # loader.cc kMaxWindow
WEIGHT_ALIGN = 16             # as bmx/converter/serialize.py writes weight vectors
VERIFY = "corrupted model file (FlatBuffers verification failed)"
ERROR = "ModelError"          # bmx.engine.ModelError, bmx::Error in C++

F, B, LV = 0, 1, 2            # ValueKind Float, Bits, Levels
NONE_ACT, RELU = 0, 1         # Activation
MAX_POOL, AVG_POOL = 0, 1     # PoolType

# Fields of every options table in schema order: (name, kind). Kinds: int (int32),
# byte (int8 enum), bool, ivec ([int]), fvec ([float]), raw ([ubyte], 16-byte aligned).
TABLES = {
    "Conv2D": [("out_channels", "int"), ("kernel", "ivec"), ("stride", "ivec"), ("pad", "ivec"),
               ("dilation", "ivec"), ("groups", "int"), ("weight", "raw"), ("bias", "raw"),
               ("activation", "byte")],
    "BinaryConv2D": [("out_channels", "int"), ("in_channels", "int"), ("kernel", "ivec"),
                     ("stride", "ivec"), ("pad", "ivec"), ("dilation", "ivec"), ("groups", "int"),
                     ("weight_bits", "raw"), ("scale", "fvec"), ("shift", "fvec"),
                     ("activation", "byte")],
    "Sign": [("scale", "fvec"), ("shift", "fvec")],
    "Affine": [("scale", "fvec"), ("shift", "fvec"), ("activation", "byte")],
    "Relu": [],
    "Pool2D": [("type", "byte"), ("kernel", "ivec"), ("stride", "ivec"), ("pad", "ivec"),
               ("count_include_pad", "bool"), ("global", "bool"), ("ceil_mode", "bool")],
    "Concat": [],
    "Add": [],
    "AddToLastChannels": [],
    "ChannelShuffle": [("groups", "int")],
    "Dense": [("units", "int"), ("weight", "raw"), ("bias", "raw")],
    "Flatten": [],
    "BinaryDense": [("units", "int"), ("weight_bits", "raw"), ("scale", "fvec"), ("shift", "fvec"),
                    ("activation", "byte")],
    "MeanAbsChannels": [],
    "Mul": [],
    "Quantize": [("scale", "fvec"), ("shift", "fvec")],
    "KbitConv2D": [("out_channels", "int"), ("in_channels", "int"), ("kernel", "ivec"), ("stride", "ivec"),
                   ("pad", "ivec"), ("dilation", "ivec"), ("weight_planes", "int"), ("weight_bits", "raw"),
                   ("scale", "fvec"), ("shift", "fvec"), ("activation", "byte")],
}
# Generated Add* function name of a field (bmx/fb/<Table>.py).
_ADDER = {"global": "Global_"}


def _adder(field):
    return "Add" + _ADDER.get(field, "".join(p.capitalize() for p in field.split("_")))


# ---------------------------------------------------------------------------------------
# A model as plain data, and its FlatBuffers serialisation
#
# model: {"version", "producer", "values", "inputs", "outputs", "ops", "num_classes",
#         "mean", "std"}; value: {"name", "shape", "kind", "planes"}; op: {"name", "type" (union
# type number), "table" (options table written), "options" (dict, None: absent),
# "inputs", "outputs"}. A key that is missing or None is a field that is not written; an
# empty list is an empty vector.

def _bytes_vec(b, data):
    # As bmx/converter/serialize.py: raw little-endian bytes, the data aligned to 16 in the buffer.
    data = bytes(data)
    b.StartVector(1, len(data), WEIGHT_ALIGN)
    b.head = b.head - len(data)
    b.Bytes[b.head:b.head + len(data)] = data
    b.vectorNumElems = len(data)
    return b.EndVector()


def _ivec(b, vals):
    return b.CreateNumpyVector(np.asarray(vals, dtype="<i4").reshape(-1))


def _fvec(b, vals):
    return b.CreateNumpyVector(np.asarray(vals, dtype="<f4").reshape(-1))


def _table_vec(b, offsets):
    b.StartVector(4, len(offsets), 4)
    for o in reversed(offsets):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def _options(b, table, opts):
    import importlib
    mod = importlib.import_module(f"bmx.fb.{table}")
    fields = TABLES[table]
    unknown = set(opts) - {f for f, _ in fields}
    if unknown:
        raise ValueError(f"{table}: no fields {sorted(unknown)}")
    made = {}
    # Vectors first (they may not be built inside a table), weights before parameters as
    # bmx/converter/serialize.py does: the first op's weight then ends the buffer.
    for want in ("raw", "fvec", "ivec"):
        for f, kind in fields:
            v = opts.get(f)
            if v is None or kind != want:
                continue
            made[f] = {"raw": _bytes_vec, "fvec": _fvec, "ivec": _ivec}[kind](b, v)
    mod.Start(b)
    for f, kind in fields:
        v = opts.get(f)
        if v is None:
            continue
        getattr(mod, _adder(f))(b, made[f] if f in made else (bool(v) if kind == "bool" else int(v)))
    return mod.End(b)


def serialize(model):
    """FlatBuffers bytes of a model given as plain data (see above)."""
    import flatbuffers
    from bmx.fb import Model, Op, Value
    b = flatbuffers.Builder(4096)
    op_offsets = []
    for op in model.get("ops") or []:
        opt = _options(b, op["table"], op["options"]) if op.get("options") is not None else None
        name = b.CreateSharedString(op["name"]) if op.get("name") is not None else None
        ins = _ivec(b, op["inputs"]) if op.get("inputs") is not None else None
        outs = _ivec(b, op["outputs"]) if op.get("outputs") is not None else None
        Op.Start(b)
        if name is not None:
            Op.AddName(b, name)
        if op.get("type") is not None:
            Op.AddOptionsType(b, op["type"])
        if opt is not None:
            Op.AddOptions(b, opt)
        if ins is not None:
            Op.AddInputs(b, ins)
        if outs is not None:
            Op.AddOutputs(b, outs)
        op_offsets.append(Op.End(b))
    val_offsets = []
    for v in model.get("values") or []:
        name = b.CreateSharedString(v["name"]) if v.get("name") is not None else None
        shape = _ivec(b, v["shape"]) if v.get("shape") is not None else None
        Value.Start(b)
        if name is not None:
            Value.AddName(b, name)
        if shape is not None:
            Value.AddShape(b, shape)
        Value.AddKind(b, v.get("kind", F))
        if v.get("planes") is not None:
            Value.AddPlanes(b, v["planes"])
        val_offsets.append(Value.End(b))
    vec = {}
    if model.get("ops") is not None:
        vec["ops"] = _table_vec(b, op_offsets)
    if model.get("values") is not None:
        vec["values"] = _table_vec(b, val_offsets)
    for k in ("inputs", "outputs"):
        if model.get(k) is not None:
            vec[k] = _ivec(b, model[k])
    prod = b.CreateString(model["producer"]) if model.get("producer") is not None else None
    for k in ("mean", "std"):
        if model.get(k) is not None:
            vec[k] = _fvec(b, model[k])
    Model.Start(b)
    if model.get("version") is not None:
        Model.AddVersion(b, model["version"])
    if prod is not None:
        Model.AddProducer(b, prod)
    for k, add in (("values", Model.AddValues), ("inputs", Model.AddInputs), ("outputs", Model.AddOutputs),
                   ("ops", Model.AddOps)):
        if k in vec:
            add(b, vec[k])
    if model.get("num_classes") is not None:
        Model.AddNumClasses(b, model["num_classes"])
    if "mean" in vec:
        Model.AddMean(b, vec["mean"])
    if "std" in vec:
        Model.AddStd(b, vec["std"])
    b.Finish(Model.End(b), file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


# ---------------------------------------------------------------------------------------
# The valid base model

def dyadic(n, salt):
    """n deterministic multiples of 1/8 in [-2, 2] (sums and products stay exact in float32)."""
    return [(((i + 1) * 7919 + salt * 104729) % 33 - 16) / 8.0 for i in range(n)]


def f32(vals):
    return np.asarray(vals, "<f4").tobytes()


C_IN, HW, C, CLASSES = 3, 4, 2, 3


def _bconv_weight_words():
    # +-1 weights [C_out, C_in, KH, KW], packed as the file stores them (bit 1 iff w < 0).
    w = np.sign(np.asarray(dyadic(C * C * 9, 6), np.float32) + 0.0625).reshape(C, C, 3, 3)
    return pack_bits(np.transpose(w, (0, 2, 3, 1)), axis=-1).astype("<u8")  # [C_out, 3, 3, 1]


def base_model(upto=None):
    """The valid model every generated file is one fault away from.

    data [1,3,4,4] -> Conv2D 3x3 pad 1 (+bias, ReLU) -> Sign (scale/shift) ->
    BinaryConv2D 3x3 pad 1 -> Add (with the Conv2D output) -> Affine -> Relu ->
    Pool2D max 2x2/2 -> Concat (twice the same) -> AddToLastChannels -> ChannelShuffle(2) ->
    Pool2D global avg -> Flatten -> Dense(3, +bias). Value i + 1 is the output of op i.

    With ``upto`` = k: only ops 0..k, whose last output (a Float value, so k != 1) is the
    model output (``num_classes`` 0); a valid model too.
    """
    def v(name, shape, kind=F):
        return {"name": name, "shape": list(shape), "kind": kind}

    def op(name, table, inputs, output, **options):
        return {"name": name, "type": getattr(OO, table), "table": table, "options": options,
                "inputs": list(inputs), "outputs": [output]}

    s4 = (1, C, HW, HW)
    values = [v("data", (1, C_IN, HW, HW)), v("conv0", s4), v("sign1", s4, B), v("bconv2", s4), v("add3", s4),
              v("affine4", s4), v("relu5", s4), v("pool6", (1, C, 2, 2)), v("concat7", (1, 2 * C, 2, 2)),
              v("addlast8", (1, 2 * C, 2, 2)), v("shuffle9", (1, 2 * C, 2, 2)), v("gpool10", (1, 2 * C, 1, 1)),
              v("flatten11", (1, 2 * C)), v("dense12", (1, CLASSES))]
    ops = [
        op("conv0", "Conv2D", [0], 1, out_channels=C, kernel=[3, 3], stride=[1, 1], pad=[1, 1],
           dilation=[1, 1], groups=1, weight=f32(dyadic(C * C_IN * 9, 1)), bias=f32(dyadic(C, 2)),
           activation=RELU),
        op("sign1", "Sign", [1], 2, scale=[1.0, -0.5], shift=[-0.5625, 0.3125]),
        op("bconv2", "BinaryConv2D", [2], 3, out_channels=C, in_channels=C, kernel=[3, 3], stride=[1, 1],
           pad=[1, 1], dilation=[1, 1], groups=1, weight_bits=_bconv_weight_words().tobytes(),
           scale=[0.5, -0.25], shift=[-4.0, 2.0], activation=NONE_ACT),
        op("add3", "Add", [1, 3], 4),
        op("affine4", "Affine", [4], 5, scale=[1.5, -0.5], shift=[0.5, 1.0],
           activation=NONE_ACT),
        op("relu5", "Relu", [5], 6),
        op("pool6", "Pool2D", [6], 7, type=MAX_POOL, kernel=[2, 2], stride=[2, 2], pad=[0, 0],
           count_include_pad=True, **{"global": False}),
        op("concat7", "Concat", [7, 7], 8),
        op("addlast8", "AddToLastChannels", [8, 7], 9),
        op("shuffle9", "ChannelShuffle", [9], 10, groups=2),
        op("gpool10", "Pool2D", [10], 11, type=AVG_POOL, **{"global": True}),
        op("flatten11", "Flatten", [11], 12),
        op("dense12", "Dense", [12], 13, units=CLASSES, weight=f32(dyadic(CLASSES * 2 * C, 3)),
           bias=f32(dyadic(CLASSES, 4))),
    ]
    num_classes = CLASSES
    if upto is not None:
        if upto == 1 or not 0 <= upto < len(ops):
            raise ValueError(f"no valid prefix of the base model ends at op {upto}")
        ops, values, num_classes = ops[:upto + 1], values[:upto + 2], 0
    return {"version": MIN_FORMAT_VERSION, "producer": "bmx corpus base", "values": values,
            "inputs": [0], "outputs": [len(values) - 1], "ops": ops, "num_classes": num_classes,
            "mean": [120.0, 110.0, 100.0], "std": [60.0, 58.0, 56.0]}


def base_input(batch=2):
    """A dyadic NCHW input for the base model."""
    return np.asarray(dyadic(batch * C_IN * HW * HW, 9), np.float32).reshape(batch, C_IN, HW, HW)


def base_bytes():
    return serialize(base_model())


# The version-2 base: a BinaryDense on a 4-D Bits value whose channels (70) end mid-word,
# then the 2-D chain Sign -> BinaryDense.
BD_C, BD_HW, BD_UNITS = 70, 2, 5
BD_OPS = ["sign0", "bdense1", "sign2", "bdense3"]
BD_TYPES = ["Sign", "BinaryDense", "Sign", "BinaryDense"]


def _bdense_words(units, c, hw, salt):
    # +-1 weights [units, C, H, W] (Gluon's [units, C*H*W] in NCHW order), packed as
    # [units, H, W, words(C)] (bit 1 iff w < 0, tail bits 0).
    w = np.sign(np.asarray(dyadic(units * c * hw * hw, salt), np.float32) + 0.0625)
    w = w.reshape(units, c, hw, hw)
    return pack_bits(np.transpose(w, (0, 2, 3, 1)), axis=-1).astype("<u8")


def bdense_model(upto=None):
    """The valid version-2 model of the ``bdense_`` files.

    data [1,70,2,2] -> Sign -> BinaryDense(5, ReLU) [1,5] -> Sign (scale/shift, 2-D Bits
    [1,5]) -> BinaryDense(3) [1,3]. Value i + 1 is the output of op i. ``upto`` = 1: ops
    0-1 only (the 4-D BinaryDense's output is the model output), also valid.
    """
    def v(name, shape, kind=F):
        return {"name": name, "shape": list(shape), "kind": kind}

    def op(name, table, inputs, output, **options):
        return {"name": name, "type": getattr(OO, table), "table": table, "options": options,
                "inputs": list(inputs), "outputs": [output]}

    s4 = (1, BD_C, BD_HW, BD_HW)
    values = [v("data", s4), v("sign0", s4, B), v("bdense1", (1, BD_UNITS)), v("sign2", (1, BD_UNITS), B),
              v("bdense3", (1, CLASSES))]
    ops = [
        op("sign0", "Sign", [0], 1),
        op("bdense1", "BinaryDense", [1], 2, units=BD_UNITS,
           weight_bits=_bdense_words(BD_UNITS, BD_C, BD_HW, 5).tobytes(),
           scale=[0.25, -0.125, 0.5, 0.375, -0.25], shift=[-30.0, 20.0, -70.0, -50.0, 40.0], activation=RELU),
        op("sign2", "Sign", [2], 3, scale=[1.0, -1.0, 0.5, -2.0, 1.0], shift=[-4.0, 2.5, -1.0, 6.0, -8.0]),
        op("bdense3", "BinaryDense", [3], 4, units=CLASSES,
           weight_bits=_bdense_words(CLASSES, BD_UNITS, 1, 6).tobytes(),
           scale=[1.5, -0.75, 0.625], shift=[0.5, 1.25, -2.0], activation=NONE_ACT),
    ]
    num_classes = CLASSES
    if upto is not None:
        if upto != 1:
            raise ValueError(f"no valid prefix of the BinaryDense base ends at op {upto}")
        ops, values, num_classes = ops[:upto + 1], values[:upto + 2], 0
    return {"version": 2, "producer": "bmx corpus base (BinaryDense)", "values": values,
            "inputs": [0], "outputs": [len(values) - 1], "ops": ops, "num_classes": num_classes}


def bdense_input(batch=2):
    """A dyadic NCHW input for the BinaryDense base."""
    return np.asarray(dyadic(batch * BD_C * BD_HW * BD_HW, 11), np.float32).reshape(batch, BD_C, BD_HW, BD_HW)


# The version-2 base of an XNOR-Net convolution (the converter's five ops) on 70 channels.
XN_C, XN_HW, XN_OUT = 70, 5, 4
XN_OPS = ["sign0", "bconv1", "mac2", "pool3", "mul4", "mul5"]
XN_TYPES = ["Sign", "BinaryConv2D", "MeanAbsChannels", "Pool2D", "Mul", "Mul"]


def xnor_model(upto=None):
    """The valid version-2 model of the ``xnor_`` files.

    data [1,70,5,5] -> Sign -> BinaryConv2D 3x3 pad 1 [1,4,5,5]; data -> MeanAbsChannels
    [1,1,5,5] -> Pool2D avg 3x3 pad 1 (count_include_pad) -> Mul(bconv1, pool3) (the
    broadcast over channels) -> Mul(mul4, bconv1) (two full shapes). Value i + 1 is the
    output of op i. ``upto`` = 1..4: ops 0..upto only, also valid.
    """
    def v(name, shape, kind=F):
        return {"name": name, "shape": list(shape), "kind": kind}

    def op(name, table, inputs, output, **options):
        return {"name": name, "type": getattr(OO, table), "table": table, "options": options,
                "inputs": list(inputs), "outputs": [output]}

    s_in, s_out, s_one = (1, XN_C, XN_HW, XN_HW), (1, XN_OUT, XN_HW, XN_HW), (1, 1, XN_HW, XN_HW)
    values = [v("data", s_in), v("sign0", s_in, B), v("bconv1", s_out), v("mac2", s_one), v("pool3", s_one),
              v("mul4", s_out), v("mul5", s_out)]
    w = np.sign(np.asarray(dyadic(XN_OUT * XN_C * 9, 13), np.float32) + 0.0625).reshape(XN_OUT, XN_C, 3, 3)
    words = pack_bits(np.transpose(w, (0, 2, 3, 1)), axis=-1).astype("<u8")  # [C_out, 3, 3, 2]
    scale = [0.25, -0.125, 0.5, 0.25]
    ops = [
        op("sign0", "Sign", [0], 1),
        # match counts are near K / 2 = 315: shifts centre the outputs on 0
        op("bconv1", "BinaryConv2D", [1], 2, out_channels=XN_OUT, in_channels=XN_C, kernel=[3, 3], stride=[1, 1],
           pad=[1, 1], dilation=[1, 1], groups=1, weight_bits=words.tobytes(), scale=scale,
           shift=[-s * 316 for s in scale], activation=NONE_ACT),
        op("mac2", "MeanAbsChannels", [0], 3),
        op("pool3", "Pool2D", [3], 4, type=AVG_POOL, kernel=[3, 3], stride=[1, 1], pad=[1, 1],
           count_include_pad=True, **{"global": False}),
        op("mul4", "Mul", [2, 4], 5),
        op("mul5", "Mul", [5, 2], 6),
    ]
    if upto is not None:
        if not 1 <= upto < len(ops) - 1:
            raise ValueError(f"no valid prefix of the XNOR base ends at op {upto}")
        ops, values = ops[:upto + 1], values[:upto + 2]
    return {"version": 2, "producer": "bmx corpus base (XNOR conv)", "values": values,
            "inputs": [0], "outputs": [len(values) - 1], "ops": ops, "num_classes": 0}


def xnor_square_model():
    """Valid too: the XNOR base's ops 0-1, then Mul(bconv1, bconv1): a Mul with no
    MeanAbsChannels before it (so that the version-1 label trips the Mul's check)."""
    m = xnor_model(1)
    m["values"].append({"name": "square2", "shape": [1, XN_OUT, XN_HW, XN_HW], "kind": F})
    m["ops"].append({"name": "square2", "type": OO.Mul, "table": "Mul", "options": {}, "inputs": [2, 2],
                     "outputs": [3]})
    m["outputs"] = [3]
    return m


def xnor_input(batch=2):
    """An NCHW input for the XNOR base whose mean magnitudes pool exactly.

    Pixel p has magnitudes a_p + 1/16 and a_p - 1/16 on alternate channels (random signs),
    a_p = 9/16 * k, k in 1..4: the channel mean is a_p, every 3x3 window sum is 9 * (a
    multiple of 1/16), so both divisions (by 70, by 9) are exact and the engine's multiply
    by the float reciprocal rounds to the same value as run_model's division.
    """
    k = 1 + (np.asarray(dyadic(batch * XN_HW * XN_HW, 14)) * 8).astype(np.int64) % 4
    a = (9.0 / 16.0) * k.reshape(batch, 1, XN_HW, XN_HW)
    delta = np.where(np.arange(XN_C) % 2 == 0, 1.0, -1.0).reshape(1, XN_C, 1, 1) / 16.0
    sign = np.sign(np.asarray(dyadic(batch * XN_C * XN_HW * XN_HW, 15)) + 0.0625)
    return (sign.reshape(batch, XN_C, XN_HW, XN_HW) * (a + delta)).astype(np.float32)


# The version-3 base: k-bit convolutions on a Levels input (2 planes of activations and of
# weights) and on a Bits input (3 weight planes), summed, pooled and classified.
KB_C, KB_OUT = 5, 4
KB_OPS = ["conv0", "quant1", "kconv2", "sign3", "kconv4", "add5", "gpool6", "flatten7", "dense8"]
KB_TYPES = ["Conv2D", "Quantize", "KbitConv2D", "Sign", "KbitConv2D", "Add", "Pool2D", "Flatten", "Dense"]
KB_LEVELS = 2                      # planes of the Quantize output (value 2)
KB_PREFIXES = (0, 2, 4, 5, 6, 7)   # ops 0..k whose last output is Float
QUANT_SCALE = [0.25, 0.375, 2.0, -0.25, 0.25]  # each channel of conv0 onto about [0, 1]
QUANT_SHIFT = [0.75, 0.875, 2.25, 0.25, 1.0]


def kbit_weight_words(out_c, in_c, planes, salt, kh=3, kw=3):
    """Weight levels in [0, 2^planes - 1] packed as KbitConv2D stores them: uint64 words
    [C_out, planes, KH, KW, words(C_in)] (plane i: bit i of the level, tail bits 0)."""
    levels = ((np.asarray(dyadic(out_c * kh * kw * in_c, salt)) + 2) * 8).astype(np.int64) % (1 << planes)
    words = pack_levels(levels.reshape(out_c, kh, kw, in_c), planes)  # [C_out, KH, KW, planes, words]
    return np.ascontiguousarray(np.transpose(words, (0, 3, 1, 2, 4))).astype("<u8")


def _kbit_conv(name, inputs, output, planes, salt, scale, shift, activation):
    return {"name": name, "type": OO.KbitConv2D, "table": "KbitConv2D", "inputs": list(inputs),
            "outputs": [output],
            "options": dict(out_channels=KB_OUT, in_channels=KB_C, kernel=[3, 3], stride=[1, 1], pad=[1, 1],
                            dilation=[1, 1], weight_planes=planes,
                            weight_bits=kbit_weight_words(KB_OUT, KB_C, planes, salt).tobytes(),
                            scale=scale, shift=shift, activation=activation)}


def kbit_model(upto=None):
    """The valid version-3 model of the ``kbit_`` files.

    data [1,3,4,4] -> Conv2D 1x1 [1,5,4,4] -> Quantize (scale/shift) -> Levels(2) ->
    KbitConv2D 3x3 pad 1, 2 weight planes (ReLU) [1,4,4,4]; conv0 -> Sign (scale/shift) ->
    KbitConv2D 3x3 pad 1, 3 weight planes [1,4,4,4]; Add of the two -> Pool2D global avg ->
    Flatten -> Dense(3). Value i + 1 is the output of op i. ``upto`` in KB_PREFIXES: ops
    0..upto only (a Float last output), also valid.
    """
    def v(name, shape, kind=F, planes=None):
        return {"name": name, "shape": list(shape), "kind": kind, "planes": planes}

    def op(name, table, inputs, output, **options):
        return {"name": name, "type": getattr(OO, table), "table": table, "options": options,
                "inputs": list(inputs), "outputs": [output]}

    s_c, s_o = (1, KB_C, HW, HW), (1, KB_OUT, HW, HW)
    values = [v("data", (1, C_IN, HW, HW)), v("conv0", s_c), v("quant1", s_c, LV, KB_LEVELS), v("kconv2", s_o),
              v("sign3", s_c, B), v("kconv4", s_o), v("add5", s_o), v("gpool6", (1, KB_OUT, 1, 1)),
              v("flatten7", (1, KB_OUT)), v("dense8", (1, CLASSES))]
    ops = [
        op("conv0", "Conv2D", [0], 1, out_channels=KB_C, kernel=[1, 1], stride=[1, 1], pad=[0, 0],
           dilation=[1, 1], groups=1, weight=f32(dyadic(KB_C * C_IN, 21)), bias=f32(dyadic(KB_C, 22)),
           activation=NONE_ACT),
        op("quant1", "Quantize", [1], 2, scale=QUANT_SCALE, shift=QUANT_SHIFT),
        _kbit_conv("kconv2", [2], 3, 2, 24, [0.5, -0.75, 0.375, 0.25], [2.0, -1.0, 0.5, 1.5], RELU),
        op("sign3", "Sign", [1], 4, scale=[1.0, -0.5, 0.25, -1.0, 0.5], shift=[-0.5, -0.25, 0.1875, -1.0, -0.125]),
        _kbit_conv("kconv4", [4], 5, 3, 23, [0.25, -0.125, 0.5, 0.375], [1.0, -0.5, 0.25, 2.0], NONE_ACT),
        op("add5", "Add", [3, 5], 6),
        op("gpool6", "Pool2D", [6], 7, type=AVG_POOL, **{"global": True}),
        op("flatten7", "Flatten", [7], 8),
        op("dense8", "Dense", [8], 9, units=CLASSES, weight=f32(dyadic(CLASSES * KB_OUT, 25)),
           bias=f32(dyadic(CLASSES, 26))),
    ]
    num_classes = CLASSES
    if upto is not None:
        if upto not in KB_PREFIXES:
            raise ValueError(f"no valid prefix of the k-bit base ends at op {upto}")
        ops, values, num_classes = ops[:upto + 1], values[:upto + 2], 0
    return {"version": 3, "producer": "bmx corpus base (k-bit)", "values": values,
            "inputs": [0], "outputs": [len(values) - 1], "ops": ops, "num_classes": num_classes}


def kbit_input(batch=2):
    """A dyadic NCHW input for the k-bit base."""
    return np.asarray(dyadic(batch * C_IN * HW * HW, 27), np.float32).reshape(batch, C_IN, HW, HW)


# ---------------------------------------------------------------------------------------
# Message helpers (the loader's formats: loader.cc OpChecker, shape_str, load_graph)

def desc(k, name, type_name):
    return f"op {k} '{name}' ({type_name})"


def shape_str(shape, kind=F, planes=0):
    s = "[" + ", ".join(str(d) for d in shape) + "]"
    return s + (f" Levels({planes})" if kind == LV else " Bits" if kind == B else " Float")


BASE_OPS = ["conv0", "sign1", "bconv2", "add3", "affine4", "relu5", "pool6", "concat7", "addlast8",
            "shuffle9", "gpool10", "flatten11", "dense12"]
BASE_TYPES = ["Conv2D", "Sign", "BinaryConv2D", "Add", "Affine", "Relu", "Pool2D", "Concat",
              "AddToLastChannels", "ChannelShuffle", "Pool2D", "Flatten", "Dense"]


def D(k):
    """describe() of base op k."""
    return desc(k, BASE_OPS[k], BASE_TYPES[k])


# ---------------------------------------------------------------------------------------
# The cases

class Corpus:
    def __init__(self):
        self.files = {}     # name -> bytes
        self.entries = {}   # name -> manifest entry
        self.upto = None    # default prefix of the base for mutate() (None: all of it)

    def add(self, name, data, message, check, description, error=ERROR, base="own"):
        fname = name + ".bmx"
        if fname in self.files:
            raise ValueError(f"duplicate case {name}")
        for text in (message, check, description):
            # The C++ replay reads the manifest with a plain scanner: keep strings escape-free.
            if any(ch in text for ch in '"\\{}') or not text.isascii() or not text.isprintable():
                raise ValueError(f"{name}: manifest strings must be printable ASCII without quotes, "
                                 f"backslashes or braces: {text!r}")
        self.files[fname] = bytes(data)
        self.entries[fname] = {"error": error, "message": message, "check": check,
                               "description": description, "base": base, "source": "generated"}

    def mutate(self, name, fn, message, check, description, upto=None, error=ERROR):
        """A case made by editing a copy of the base model, or of its ops 0..upto (default:
        ``self.upto``) when the fault lies there: smaller files, the same checks."""
        upto = self.upto if upto is None else upto
        upto = None if upto == len(BASE_OPS) - 1 else upto
        m = copy.deepcopy(base_model(upto))
        fn(m)
        self.add(name, serialize(m), message, check, description, error=error,
                 base="base model" if upto is None else f"base ops 0-{upto}")


def _set(path, value):
    """fn(model) that sets model[path...] = value (a missing last key is created)."""
    def fn(m):
        t = m
        for k in path[:-1]:
            t = t[k]
        t[path[-1]] = value
    return fn


def _opt(k, field, value):
    return _set(["ops", k, "options", field], value)


def _retype(k, table, inputs=None, **options):
    """fn(model): op k becomes a `table` op (same name and output), optionally new inputs."""
    def fn(m):
        op = m["ops"][k]
        op["type"], op["table"], op["options"] = getattr(OO, table), table, options
        if inputs is not None:
            op["inputs"] = list(inputs)
    return fn


def _relabelled(cp, version, name, fn, message, check, description):
    """A case made from the whole base labelled `version` (it loads so: model_cases), then fn."""
    m = copy.deepcopy(base_model())
    _chain(_set(["version"], version), fn)(m)
    cp.add(name, serialize(m), message, check, description, base=f"base model relabelled version {version}")


def _chain(*fns):
    def fn(m):
        for f in fns:
            f(m)
    return fn


# Minimal options for an op retyped in place: the input checks fail before they are read.
RETYPE_OPTS = {
    "Conv2D": dict(out_channels=C, kernel=[3, 3], pad=[1, 1]),
    "Sign": {}, "Affine": dict(scale=[1.0] * C, shift=[0.0] * C), "Relu": {},
    "Pool2D": dict(type=MAX_POOL, kernel=[1, 1], stride=[1, 1]), "Concat": {}, "Add": {},
    "AddToLastChannels": {}, "ChannelShuffle": dict(groups=1), "Flatten": {},
    "Dense": dict(units=C),
}


def buffer_cases(cp, base):
    n = len(base)

    def add(*args):
        cp.add(*args, base="bytes of base ops 0-0")
    cp.add("buf_empty", b"", "empty model buffer", "load_graph: empty buffer", "a zero-byte file")
    add("buf_4_bytes", base[:4], "model buffer too small (4 bytes)", "load_graph: size < 8",
        "only the root offset of a valid file")
    add("buf_7_bytes", base[:7], "model buffer too small (7 bytes)", "load_graph: size < 8",
        "root offset and three bytes of the identifier")
    add("buf_wrong_identifier", base[:4] + b"BMX2" + base[8:],
        "not a bmx model file (missing the 'BMX1' file identifier)", "load_graph: file identifier",
        "the valid file with the identifier BMX2")
    cp.add("buf_text", b"a text file that is not a model, padded to 48 bytes\n"[:48],
           "not a bmx model file (missing the 'BMX1' file identifier)", "load_graph: file identifier",
           "48 bytes of ASCII text")
    add("buf_minus_1_byte", base[:-1], f"truncated model file ({n - 1} bytes is not a multiple of 4)",
        "load_graph: size % 4", "the valid file without its last byte")
    add("buf_plus_2_bytes", base + b"\0\0", f"truncated model file ({n + 2} bytes is not a multiple of 4)",
        "load_graph: size % 4", "the valid file with two zero bytes appended")
    add("buf_plus_4_bytes", base + b"JUNK",
        "bytes of trailing data after the model",
        "load_graph: trailing data (verifier's computed size)", "the valid file with 'JUNK' appended (the verifier alone accepts it)")
    add("buf_plus_16_zero_bytes", base + bytes(16),
        "bytes of trailing data after the model",
        "load_graph: trailing data (more zeros than builder padding)",
        "the valid file with 16 zero bytes appended")
    # With the identifier intact and everything else zero, the root table has an empty
    # vtable: it verifies, and every field takes its default (version 0).
    add("buf_zero_body", base[:8] + bytes(n - 8),
        f"unsupported model format version 0 ({READS})",
        "load_graph: version (after verification of an all-default root table)",
        "root offset and identifier kept, every other byte zero")


# -- the buffer's layout, for flips at known places

def _u16(b, p):
    return struct.unpack_from("<H", b, p)[0]


def _u32(b, p):
    return struct.unpack_from("<I", b, p)[0]


class _Tab:
    """A table inside a FlatBuffer: position, vtable position and field positions."""

    def __init__(self, buf, pos):
        self.buf, self.pos = buf, pos
        self.vt = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vsize = _u16(buf, self.vt)

    def field(self, slot):
        """Absolute position of field `slot` (it must be present)."""
        o = 4 + 2 * slot
        off = _u16(self.buf, self.vt + o) if o < self.vsize else 0
        if not off:
            raise ValueError(f"field {slot} absent")
        return self.pos + off

    def ref(self, slot):
        """Position of what the offset field `slot` points to (a table, vector or string)."""
        p = self.field(slot)
        return p + _u32(self.buf, p)


def _layout(buf):
    root = _Tab(buf, _u32(buf, 0))
    values = root.ref(2)                          # Model.values: length, then offsets
    ops = root.ref(5)
    op0_pos = ops + 4 + _u32(buf, ops + 4)
    op0 = _Tab(buf, op0_pos)
    name0 = op0.ref(0)                            # Op.name: length, bytes, 0
    conv0 = _Tab(buf, op0.ref(2))                 # Op.options of op 0 (Conv2D)
    weight = conv0.ref(6)                         # Conv2D.weight: length, bytes
    v1_pos = values + 4 + 4 + _u32(buf, values + 8)
    v1 = _Tab(buf, v1_pos)
    return {"root": root, "values": values, "op0": op0, "name0": name0, "conv0": conv0,
            "weight": weight, "shape1": v1.ref(1)}


def verifier_cases(cp, base):
    n = len(base)

    def add(*args):
        cp.add(*args, base="bytes of base ops 0-0")
    L = _layout(base)
    # The first object the builder writes, at the end of the file, is conv0's weight (then
    # at most 15 bytes of alignment padding): a file cut before the weight's last byte
    # holds a vector that runs past its end, which the verifier must reject.
    data_end = L["weight"] + 4 + _u32(base, L["weight"])
    assert n - 16 < data_end <= n and not any(base[data_end:]), "conv0's weight does not end the buffer"
    cuts = {8, 12, 16, n // 4 // 4 * 4, n // 2 // 4 * 4, 3 * n // 4 // 4 * 4, (data_end - 1) // 4 * 4}
    for cut in sorted(cuts):
        add(f"trunc_{cut:05d}", base[:cut], VERIFY, "FlatBuffers verifier",
            f"the valid {n}-byte file cut to its first {cut} bytes (a multiple of 4)")

    def flip(name, pos, bit, what):
        b = bytearray(base)
        b[pos + bit // 8] ^= 1 << (bit % 8)
        add(name, bytes(b), VERIFY, "FlatBuffers verifier", f"bit {bit} of {what} flipped")

    def put(name, pos, fmt, value, what):
        b = bytearray(base)
        struct.pack_into(fmt, b, pos, value)
        add(name, bytes(b), VERIFY, "FlatBuffers verifier", what)

    root = L["root"]
    flip("flip_root_offset_bit31", 0, 31, "the root table offset (points past the end)")
    flip("flip_root_offset_bit1", 0, 1, "the root table offset (misaligned root table)")
    put("corrupt_root_offset_zero", 0, "<I", 0, "the root table offset set to 0")
    flip("flip_root_vtable_bit30", root.pos, 30, "the root table's vtable offset (vtable outside the buffer)")
    flip("flip_root_vtable_bit0", root.pos, 0, "the root table's vtable offset (misaligned vtable)")
    flip("flip_root_vtable_size_bit0", root.vt, 0, "the root vtable's size (odd size)")
    put("corrupt_root_vtable_size_max", root.vt, "<H", 0xFFFE,
        "the root vtable's size set to 65534 (vtable past the end)")
    flip("flip_values_field_offset_bit15", root.vt + 4 + 2 * 2, 15,
         "the root vtable's entry for Model.values (field past the end)")
    flip("flip_values_offset_bit31", root.field(2), 31, "the Model.values offset")
    flip("flip_values_length_bit30", L["values"], 30, "the length of Model.values")
    flip("flip_value1_shape_length_bit24", L["shape1"], 24, "the length of value 1's shape vector")
    flip("flip_op0_options_offset_bit1", L["op0"].field(2), 1, "op 0's options offset (misaligned table)")
    flip("flip_op0_name_length_bit20", L["name0"], 20, "the length of op 0's name string")
    name_len = _u32(base, L["name0"])
    flip("flip_op0_name_terminator_bit0", L["name0"] + 4 + name_len, 0,
         "the terminating zero of op 0's name string (unterminated string)")
    flip("flip_conv0_weight_length_bit31", L["weight"], 31, "the length of conv0's weight vector")


def model_cases(cp):
    """Model-level checks, on the smallest prefix of the base that has what a case needs:
    ops 0-0 (data [1,3,4,4] -> conv0 [1,2,4,4], values 0 and 1), ops 0-2 (values 0..3,
    value 2 the Bits output of the Sign) or the whole base (logits [1, 3], value 12 the
    [1, 2C] output of the Flatten)."""
    cp.upto = 0
    nv = 2  # values of ops 0-0
    mu = cp.mutate
    mu("model_version_absent", _set(["version"], None),
       f"unsupported model format version 0 ({READS})",
       "load_graph: version", "Model.version not written (default 0)")
    # The builder omits a field equal to its default: an explicit 0 is patched into a file
    # that has the field.
    data = bytearray(serialize(base_model(0)))
    struct.pack_into("<I", data, _Tab(data, _u32(data, 0)).field(0), 0)
    cp.add("model_version_0", data, f"unsupported model format version 0 ({READS})", "load_graph: version",
           "Model.version written as 0 (the field present, below the oldest version)", base="bytes of base ops 0-0")
    future = FORMAT_VERSION + 1
    mu(f"model_version_{future}", _set(["version"], future),
       f"unsupported model format version {future} ({READS})",
       "load_graph: version", f"Model.version = {future}, a future format")
    mu("model_version_max", _set(["version"], 0xFFFFFFFF), f"unsupported model format version 4294967295 ({READS})",
       "load_graph: version", "Model.version = 2^32 - 1")
    for version in range(MIN_FORMAT_VERSION + 1, FORMAT_VERSION + 1):
        mu(f"model_version_{version}_loads", _set(["version"], version), "",
           "load_graph: version (every version read loads)",
           f"the whole base, written as version 1, relabelled {version}: it uses nothing newer, so it loads",
           error="none", upto=len(BASE_OPS) - 1)
    mu("model_values_absent", _set(["values"], None), "model has no values", "load_graph: values present",
       "Model.values not written")
    mu("model_values_empty", _set(["values"], []), "model has no values", "load_graph: values present",
       "Model.values is an empty vector")
    # Values
    mu("model_value_kind_3", _set(["values", 1, "kind"], LV + 1), "value 1 'conv0': unknown kind",
       "load_graph: value kind", "value 1 has ValueKind 3 (neither Float, Bits nor Levels)")
    mu("model_value_kind_negative", _set(["values", 1, "kind"], -1), "value 1 'conv0': unknown kind",
       "load_graph: value kind", "value 1 has ValueKind -1 (the enum is a signed byte)")
    rank_msg = "shape must be [1, C] or [1, C, H, W]"
    mu("model_value_shape_absent", _set(["values", 1, "shape"], None), f"value 1 'conv0': {rank_msg}",
       "load_graph: value rank", "value 1 has no shape")
    mu("model_value_rank_3", _set(["values", 1, "shape"], [1, C, 16]), f"value 1 'conv0': {rank_msg}",
       "load_graph: value rank", f"value 1 has the 3-D shape [1, {C}, 16]")
    mu("model_value_batch_2", _set(["values", 1, "shape", 0], 2), "value 1 'conv0': shape must start with batch 1",
       "load_graph: value batch 1", "value 1 has batch 2")
    mu("model_value_dim_zero", _set(["values", 1, "shape", 2], 0),
       f"value 1 'conv0': dimension 2 = 0 out of range [1, {MAX_DIM}]", "load_graph: value dimension range",
       "value 1 has height 0")
    mu("model_value_dim_negative", _set(["values", 0, "shape", 1], -3),
       f"value 0 'data': dimension 1 = -3 out of range [1, {MAX_DIM}]", "load_graph: value dimension range",
       "the input value has -3 channels")
    mu("model_value_dim_too_big", _set(["values", 1, "shape", 3], MAX_DIM + 1),
       f"value 1 'conv0': dimension 3 = {MAX_DIM + 1} out of range [1, {MAX_DIM}]",
       "load_graph: value dimension range", "value 1 has width 2^20 + 1 (one past the bound)")
    mu("model_value_too_many_elements", _set(["values", 1, "shape"], [1, MAX_DIM, 512, 1]),
       "value 1 'conv0': too many elements (536870912)", "load_graph: elements per value",
       "value 1 is [1, 2^20, 512, 1]: 2^29 elements, every dimension in range")
    mu("model_value_bits_rank_2", _set(["values", 13, "kind"], B),
       "value 13 'dense12': Bits values must be 4-D in format version 1",
       "load_graph: Bits values 4-D in version 1", "the [1, 3] logits value is marked Bits in a version-1 file",
       upto=12)
    big = [1, MAX_DIM, 256, 1]  # 2^28 elements: the most one value may have
    mu("model_values_too_large_in_total",
       _chain(_set(["values", 1, "shape"], big), _set(["values", 3, "shape"], big)),
       "values too large in total", "load_graph: total value bytes",
       "values 1 and 3 have 2^28 elements each (allowed alone): over 2^31 bytes together", upto=2)
    # Inputs and outputs
    for k, label in (("inputs", "input"), ("outputs", "output")):
        msg = f"model must have exactly one {label}"
        mu(f"model_{k}_absent", _set([k], None), msg, f"load_graph: one {label}", f"Model.{k} not written")
        mu(f"model_{k}_two", _set([k], [0, 1]), msg, f"load_graph: one {label}", f"Model.{k} = [0, 1]")
    mu("model_input_index_past_end", _set(["inputs"], [nv]), f"model input: value index {nv} out of range [0, {nv})",
       "load_graph: input index", "the input index is one past the last value")
    mu("model_input_index_negative", _set(["inputs"], [-1]), f"model input: value index -1 out of range [0, {nv})",
       "load_graph: input index", "the input index is -1")
    mu("model_output_index_past_end", _set(["outputs"], [nv]),
       f"model output: value index {nv} out of range [0, {nv})", "load_graph: output index",
       "the output index is one past the last value")
    mu("model_output_index_int_min", _set(["outputs"], [-2**31]),
       f"model output: value index -2147483648 out of range [0, {nv})", "load_graph: output index",
       "the output index is -2^31")
    mu("model_input_rank_2", _set(["inputs"], [12]),
       f"model input must be a 4-D Float value, is {shape_str([1, 2 * C])}", "load_graph: input 4-D Float",
       "the input is value 12, the 2-D output of the Flatten", upto=12)
    mu("model_input_bits", _set(["inputs"], [2]),
       f"model input must be a 4-D Float value, is {shape_str([1, C, 4, 4], B)}", "load_graph: input 4-D Float",
       "the input is value 2, the Bits output of the Sign", upto=2)
    mu("model_ops_absent", _set(["ops"], None), "model has no ops", "load_graph: ops present",
       "Model.ops not written")
    mu("model_ops_empty", _set(["ops"], []), "model has no ops", "load_graph: ops present", "Model.ops is empty")
    # After the ops: the output

    def extra_value(m):
        m["values"].append({"name": "orphan", "shape": [1, 3], "kind": F})
        m["outputs"] = [len(m["values"]) - 1]
    mu("model_output_never_computed", extra_value, "model output value is never computed",
       "load_graph: output computed", "the output is an extra value no op writes")
    mu("model_output_is_input", _set(["outputs"], [0]), "model output is its input", "load_graph: output != input",
       "the output is the input value")
    mu("model_output_bits", _set(["outputs"], [2]), "model output must be Float", "load_graph: output Float",
       "the output is the Bits value 2 written by the Sign", upto=2)
    mu("model_num_classes_4", _set(["num_classes"], 4), "num_classes 4 differs from the output's 3 channels",
       "load_graph: num_classes", "num_classes = 4 for [1, 3] logits", upto=12)
    mu("model_num_classes_on_4d_output", _set(["num_classes"], 32),
       f"num_classes 32 differs from the output's {C} channels",
       "load_graph: num_classes", f"num_classes = 32 = C*H*W for a [1, {C}, 4, 4] output (must equal C)")
    mu("model_mean_2_entries", _set(["mean"], [1.0, 2.0]), f"model mean has 2 entries, the input has {C_IN} channels",
       "load_graph: mean length", f"mean has 2 entries for a {C_IN}-channel input")
    mu("model_std_4_entries", _set(["std"], [1.0] * 4), f"model std has 4 entries, the input has {C_IN} channels",
       "load_graph: std length", f"std has 4 entries for a {C_IN}-channel input")


def op_cases(cp):
    """Checks every op goes through, on op 5 (Relu: reads value 5, writes value 6) of the
    base's ops 0-5 (7 values)."""
    cp.upto = 5
    nv = 7
    mu = cp.mutate
    k = 5
    where = f"op {k} 'relu5'"
    mu("op_type_none", _set(["ops", k, "type"], OO.NONE),
       f"{where}: unknown or missing op type 0 (file written by a newer bmx?)", "load_graph: op type",
       "op 5's union type is NONE (its options table is still there)")
    past = max(v for n, v in vars(OO).items() if not n.startswith("_")) + 1
    mu(f"op_type_{past}", _set(["ops", k, "type"], past), f"{where}: unknown or missing op type {past}",
       "load_graph: op type", f"op 5's union type is {past}, one past the last op kind")
    mu("op_options_absent", _set(["ops", k, "options"], None), f"{where}: missing options",
       "load_graph: op options present", "op 5 says Relu but has no options table")
    one_out = f"{D(k)}: must have exactly one output"
    mu("op_outputs_absent", _set(["ops", k, "outputs"], None), one_out, "load_graph: one op output",
       "op 5 has no outputs vector")
    mu("op_outputs_two", _set(["ops", k, "outputs"], [6, 6]), one_out, "load_graph: one op output",
       "op 5 lists two outputs")
    mu("op_inputs_absent", _set(["ops", k, "inputs"], None), f"{D(k)}: missing inputs",
       "load_graph: op inputs present", "op 5 has no inputs vector")
    mu("op_too_many_inputs", _set(["ops", 7, "inputs"], [7] * 4097), f"{D(7)}: too many inputs",
       "load_graph: op inputs <= 4096", "the Concat lists value 7 as its input 4097 times", upto=7)
    mu("op_input_index_past_end", _set(["ops", k, "inputs"], [nv]),
       f"{D(k)}: value index {nv} out of range [0, {nv})", "load_graph: op input index",
       "op 5 reads value 7, one past the last")
    mu("op_input_index_negative", _set(["ops", k, "inputs"], [-1]),
       f"{D(k)}: value index -1 out of range [0, {nv})", "load_graph: op input index", "op 5 reads value -1")
    mu("op_input_is_own_output", _set(["ops", k, "inputs"], [6]),
       f"{D(k)}: input value 6 'relu5' is not computed before it (ops must be in topological order)",
       "load_graph: topological order", "op 5 reads the value it writes")

    def swap(m):
        m["ops"][4], m["ops"][5] = m["ops"][5], m["ops"][4]
    mu("op_order_swapped", swap,
       f"{desc(4, 'relu5', 'Relu')}: input value 5 'affine4' is not computed before it "
       "(ops must be in topological order)",
       "load_graph: topological order", "ops 4 (Affine) and 5 (Relu) swapped: the Relu comes first")
    mu("op_input_later_value", _set(["ops", 3, "inputs"], [1, 6]),
       f"{D(3)}: input value 6 'relu5' is not computed before it", "load_graph: topological order",
       "the Add reads value 6, written by a later op")
    mu("op_output_index_past_end", _set(["ops", k, "outputs"], [nv]),
       f"{D(k)}: value index {nv} out of range [0, {nv})", "load_graph: op output index",
       "op 5 writes value 7, one past the last")
    mu("op_output_is_model_input", _set(["ops", k, "outputs"], [0]),
       f"{D(k)}: output value 0 'data' is already defined (each value has exactly one producer)",
       "load_graph: one producer per value", "op 5 writes the model input")
    mu("op_output_written_twice", _set(["ops", k, "outputs"], [5]),
       f"{D(k)}: output value 5 'affine4' is already defined (each value has exactly one producer)",
       "load_graph: one producer per value", "op 5 writes value 5, which op 4 wrote")


def _geometry_cases(cp, prefix, k, full):
    """Window checks shared by Conv2D and BinaryConv2D (read_conv_geometry), on op k; the
    BinaryConv2D gets a sample (``full=False``): the code path is the same."""
    d, t = D(k), BASE_TYPES[k]
    chk = f"{t}: kernel/stride/pad/dilation"
    cases = [
        ("kernel_absent", "kernel", None, "kernel is missing", "no kernel vector"),
        ("kernel_3_entries", "kernel", [3, 3, 3], "kernel must have 2 entries, has 3", "kernel [3, 3, 3]"),
        ("kernel_zero", "kernel", [0, 3], f"kernel (0, 3) out of range [1, {MAX_WINDOW}]", "kernel height 0"),
        ("kernel_4097", "kernel", [3, MAX_WINDOW + 1], f"kernel (3, 4097) out of range [1, {MAX_WINDOW}]",
         "kernel width 4097, one past the bound"),
        ("stride_zero", "stride", [1, 0], f"stride (1, 0) out of range [1, {MAX_WINDOW}]", "stride width 0"),
        ("pad_negative", "pad", [-1, -1], f"pad (-1, -1) out of range [0, {MAX_WINDOW}]", "pad -1"),
        ("pad_4097", "pad", [MAX_WINDOW + 1, 1], f"pad (4097, 1) out of range [0, {MAX_WINDOW}]",
         "pad height 4097, one past the bound"),
        ("dilation_zero", "dilation", [0, 0], f"dilation (0, 0) out of range [1, {MAX_WINDOW}]", "dilation 0"),
    ]
    sample = {"kernel_absent", "pad_4097", "dilation_zero"}
    for name, field, value, msg, what in cases:
        if full or name in sample:
            cp.mutate(f"{prefix}_{name}", _opt(k, field, value), f"{d}: {msg}", chk, what)


def _conv_output_cases(cp, prefix, k, in_c, groups_in, groups_out, full):
    """check_conv_output on op k (channels, groups, activation, window fits, output shape).

    ``groups_in`` / ``groups_out``: (groups, out_channels) that fail only on the input /
    only on the output channel count. The BinaryConv2D gets a sample (``full=False``).
    """
    d, t, name = D(k), BASE_TYPES[k], BASE_OPS[k]
    gmsg = f"must divide in_channels {in_c} and out_channels"
    (gi, oi), (go, oo) = groups_in, groups_out
    cases = [
        ("out_channels_absent", _opt(k, "out_channels", None), "out_channels 0 out of range", "out_channels range",
         "out_channels not written (default 0)"),
        ("out_channels_too_big", _opt(k, "out_channels", MAX_DIM + 1), f"out_channels {MAX_DIM + 1} out of range",
         "out_channels range", "out_channels 2^20 + 1"),
        ("groups_zero", _opt(k, "groups", 0), f"groups 0 {gmsg} {C}", "groups divide channels", "groups 0"),
        ("groups_negative", _opt(k, "groups", -1), f"groups -1 {gmsg} {C}", "groups divide channels",
         "groups -1 (divides both counts, but is negative)"),
        ("groups_not_dividing_in", _chain(_opt(k, "groups", gi), _opt(k, "out_channels", oi)),
         f"groups {gi} {gmsg} {oi}", "groups divide channels",
         f"groups {gi} with {in_c} input and {oi} output channels"),
        ("groups_not_dividing_out", _chain(_opt(k, "groups", go), _opt(k, "out_channels", oo)),
         f"groups {go} {gmsg} {oo}", "groups divide channels",
         f"groups {go} with {in_c} input and {oo} output channels"),
        ("activation_2", _opt(k, "activation", 2), "unknown activation", "activation",
         "activation 2 (neither None nor Relu)"),
        ("kernel_larger_than_input", _opt(k, "kernel", [7, 7]), "kernel larger than the padded input",
         "window fits the padded input", "7x7 kernel on a 4x4 input padded by 1"),
        ("dilated_kernel_larger_than_input", _chain(_opt(k, "dilation", [1, 3]), _opt(k, "pad", [1, 0])),
         "kernel larger than the padded input", "window fits the padded input",
         "3x3 kernel dilated by 3 (7 wide) on a 4-wide input without padding"),
        ("output_stride_2", _opt(k, "stride", [2, 2]),
         f"output '{name}' is recorded as {shape_str([1, C, 4, 4])} but the op computes {shape_str([1, C, 2, 2])}",
         "output shape", "stride 2 while the output is recorded at 4x4"),
        ("output_recorded_bits", _set(["values", k + 1, "kind"], B),
         f"output '{name}' is recorded as {shape_str([1, C, 4, 4], B)} but the op computes "
         f"{shape_str([1, C, 4, 4])}", "output shape", "the output value is marked Bits"),
    ]
    sample = {"out_channels_too_big", "groups_not_dividing_in", "groups_not_dividing_out", "activation_2",
              "kernel_larger_than_input", "output_stride_2"}
    for case, fn, msg, chk, what in cases:
        if full or case in sample:
            cp.mutate(f"{prefix}_{case}", fn, f"{d}: {msg}", f"{t}: {chk}", what)


def conv_cases(cp):
    mu, d = cp.mutate, D(0)
    cp.upto = 0
    mu("conv_arity_2", _set(["ops", 0, "inputs"], [0, 0]), f"{d}: expected 1 input(s), got 2", "Conv2D: arity",
       "the Conv2D reads the input twice")
    mu("conv_arity_0", _set(["ops", 0, "inputs"], []), f"{d}: expected 1 input(s), got 0", "Conv2D: arity",
       "the Conv2D has an empty inputs vector")
    _geometry_cases(cp, "conv", 0, full=True)
    # in 3, out 2: groups 2 fails on the input only, groups 3 on the output only
    _conv_output_cases(cp, "conv", 0, C_IN, (2, C), (3, C), full=True)
    big_out = [1, MAX_DIM, 5, 5]
    mu("conv_weight_size_overflow",
       _chain(_opt(0, "out_channels", MAX_DIM), _opt(0, "kernel", [MAX_WINDOW, MAX_WINDOW]),
              _opt(0, "pad", [2048, 2048]), _set(["values", 1, "shape"], big_out)),
       "(Conv2D): weight: size overflow", "Conv2D: weight size arithmetic",
       "2^20 output channels, 4096x4096 kernel, pad 2048 (output [1, 2^20, 5, 5] recorded): 2^45 weights")
    mu("conv_reduction_too_large",
       _chain(_set(["values", 0, "shape"], [1, 65536, 1, 1]), _opt(0, "kernel", [256, 256]),
              _opt(0, "pad", [128, 128]), _set(["values", 1, "shape"], [1, C, 2, 2])),
       f"{d}: reduction size too large", "Conv2D: reduction size",
       "65536 input channels and a 256x256 kernel: K = 2^32 (2^34 weights, at the bound)")
    nw = C * C_IN * 9 * 4
    w = base_model()["ops"][0]["options"]["weight"]
    mu("conv_weight_short", _opt(0, "weight", w[:-4]), f"{d}: weight has {nw - 4} bytes, expected {nw}",
       "Conv2D: weight size", "the weight lacks its last float")
    mu("conv_weight_absent", _opt(0, "weight", None), f"{d}: weight has 0 bytes, expected {nw}",
       "Conv2D: weight size", "no weight vector")
    mu("conv_weight_odd_bytes", _opt(0, "weight", w[:-1]), f"{d}: weight has {nw - 1} bytes, expected {nw}",
       "Conv2D: weight size", "the weight is one byte short (not a whole number of floats)")
    mu("conv_bias_short", _opt(0, "bias", f32([0.5] * (C - 1))),
       f"{d}: bias has {4 * (C - 1)} bytes, expected {4 * C}",
       "Conv2D: bias size", "the bias has one float too few")

    def poke(field, index, value):
        def fn(m):
            arr = np.frombuffer(m["ops"][0]["options"][field], "<f4").copy()
            arr[index] = value
            m["ops"][0]["options"][field] = arr.tobytes()
        return fn
    mu("conv_weight_nan", poke("weight", 17, np.nan), f"{d}: weight or bias is not finite", "Conv2D: finite weights",
       "weight 17 is NaN")
    mu("conv_bias_inf", poke("bias", 0, np.inf), f"{d}: weight or bias is not finite", "Conv2D: finite weights",
       "bias 0 is +Inf")


def bconv_cases(cp):
    mu, d, k = cp.mutate, D(2), 2
    cp.upto = 2
    mu("bconv_arity_2", _set(["ops", k, "inputs"], [2, 2]), f"{d}: expected 1 input(s), got 2",
       "BinaryConv2D: arity", "the BinaryConv2D reads the Bits value twice")
    mu("bconv_input_float", _set(["ops", k, "inputs"], [1]),
       f"{d}: input 0 'conv0' must be Bits, is {shape_str([1, C, 4, 4])}", "BinaryConv2D: input kind",
       "the BinaryConv2D reads the Float output of the Conv2D instead of the Sign")
    _geometry_cases(cp, "bconv", k, full=False)
    mu("bconv_in_channels_absent", _opt(k, "in_channels", None), f"{d}: in_channels 0 differs from the input's {C}",
       "BinaryConv2D: in_channels", "in_channels not written (default 0)")
    mu("bconv_in_channels_3", _opt(k, "in_channels", 3), f"{d}: in_channels 3 differs from the input's {C}",
       "BinaryConv2D: in_channels", f"in_channels 3 for a {C}-channel input")
    # in 2: groups 4 with 4 outputs fails on the input only, groups 2 with 3 on the output only
    _conv_output_cases(cp, "bconv", k, C, (4, 4), (2, 3), full=False)
    mu("bconv_weight_bits_size_overflow",
       _chain(_opt(k, "out_channels", MAX_DIM), _opt(k, "kernel", [MAX_WINDOW, MAX_WINDOW]),
              _opt(k, "pad", [2048, 2048]), _set(["values", 3, "shape"], [1, MAX_DIM, 5, 5])),
       "(BinaryConv2D): weight_bits: size overflow", "BinaryConv2D: weight size arithmetic",
       "2^20 output channels, 4096x4096 kernel, pad 2048 (output [1, 2^20, 5, 5] recorded): 2^44 words")

    # K too large needs a wide Bits input: a three-value model of its own.
    wide = {"version": MIN_FORMAT_VERSION, "producer": "bmx regression corpus",
            "values": [{"name": "data", "shape": [1, 65536, 1, 1], "kind": F},
                       {"name": "bits", "shape": [1, 65536, 1, 1], "kind": B},
                       {"name": "y", "shape": [1, 1, 2, 2], "kind": F}],
            "inputs": [0], "outputs": [2],
            "ops": [{"name": "sign", "type": OO.Sign, "table": "Sign", "options": {}, "inputs": [0], "outputs": [1]},
                    {"name": "bconv", "type": OO.BinaryConv2D, "table": "BinaryConv2D",
                     "options": dict(out_channels=1, in_channels=65536, kernel=[256, 256], pad=[128, 128]),
                     "inputs": [1], "outputs": [2]}]}
    cp.add("bconv_reduction_too_large", serialize(wide),
           f"{desc(1, 'bconv', 'BinaryConv2D')}: reduction size too large",
           "BinaryConv2D: reduction size",
           "a Sign of 65536 channels into a 256x256 binary conv: K = 2^32 bits")
    # The same with a 4096x4096 kernel: K = 2^40 overflows the size arithmetic first.
    wide["ops"][1]["options"].update(kernel=[MAX_WINDOW, MAX_WINDOW], pad=[2048, 2048])
    cp.add("bconv_reduction_size_overflow", serialize(wide), "(BinaryConv2D): K: size overflow",
           "BinaryConv2D: weight size arithmetic",
           "a Sign of 65536 channels into a 4096x4096 binary conv: K = 2^40 bits")
    nb = C * 9 * 8
    wb = base_model()["ops"][k]["options"]["weight_bits"]
    mu("bconv_weight_bits_short", _opt(k, "weight_bits", wb[:-8]),
       f"{d}: weight_bits has {nb - 8} bytes, expected {nb}",
       "BinaryConv2D: weight_bits size", "the packed weights lack their last word")
    mu("bconv_weight_bits_absent", _opt(k, "weight_bits", None), f"{d}: weight_bits has 0 bytes, expected {nb}",
       "BinaryConv2D: weight_bits size", "no weight_bits vector")
    mu("bconv_scale_absent", _opt(k, "scale", None), f"{d}: scale has 0 floats, expected {C}",
       "BinaryConv2D: scale size", "no scale (it is required)")
    mu("bconv_scale_short", _opt(k, "scale", [1.0] * (C - 1)), f"{d}: scale has {C - 1} floats, expected {C}",
       "BinaryConv2D: scale size", "scale has one entry too few")
    mu("bconv_shift_long", _opt(k, "shift", [0.0] * (C + 1)), f"{d}: shift has {C + 1} floats, expected {C}",
       "BinaryConv2D: shift size", "shift has one entry too many")
    mu("bconv_scale_nan", _opt(k, "scale", [0.5, float("nan")]), f"{d}: scale or shift is not finite",
       "BinaryConv2D: finite scale/shift", "scale 1 is NaN")
    mu("bconv_shift_neg_inf", _opt(k, "shift", [-4.0, float("-inf")]), f"{d}: scale or shift is not finite",
       "BinaryConv2D: finite scale/shift", "shift 1 is -Inf")

    # Tail bits: with C_in/groups = C only bits 0..C-1 of each word may be set.
    words = np.frombuffer(wb, "<u8").copy()

    def with_words(w):
        return _opt(k, "weight_bits", w.astype("<u8").tobytes())
    w1 = words.copy()
    w1[5] |= np.uint64(1 << C)
    mu("bconv_tail_bit_c", with_words(w1),
       f"{d}: weight_bits row 5 has bits set past in_channels/groups = {C} (tail bits must be 0)",
       "BinaryConv2D: zero tail bits", f"bit {C} (channel {C} of {C}) set in row 5")
    w2 = words.copy()
    w2[0] |= np.uint64(1 << 63)
    mu("bconv_tail_bit_63", with_words(w2),
       f"{d}: weight_bits row 0 has bits set past in_channels/groups = {C} (tail bits must be 0)",
       "BinaryConv2D: zero tail bits", "bit 63 set in row 0")
    # groups = 2 keeps the byte size (one word per row either way) but halves C_in/groups:
    # the base's bits C/2..C-1 become tail bits; the first row holding one is the one named.
    row = int(np.nonzero(words & np.uint64(((1 << C) - 1) & ~((1 << (C // 2)) - 1)))[0][0])
    mu("bconv_groups_2_tail_bits", _opt(k, "groups", 2),
       f"{d}: weight_bits row {row} has bits set past in_channels/groups = {C // 2} (tail bits must be 0)",
       "BinaryConv2D: zero tail bits", "groups 2 on weights packed for groups 1: the upper half of the channels "
       "become tail bits")


def _input_kind_cases(cp, typ, prefix):
    """Op 2 (it reads the Bits value 2) turned into a `typ` op: the Float-input check."""
    inputs = [2, 2] if typ in ("Add", "AddToLastChannels") else [2]
    cp.mutate(f"{prefix}_input_bits", _retype(2, typ, inputs, **RETYPE_OPTS[typ]),
              f"{desc(2, 'bconv2', typ)}: input 0 'sign1' must be Float, is {shape_str([1, C, 4, 4], B)}",
              f"{typ}: input kind", f"op 2 retyped as {typ}: it reads the Bits output of the Sign", upto=2)


def _input_rank_cases(cp, typ, prefix):
    """Op 12 (it reads the [1, 2C] value 12) turned into a `typ` op: the 4-D input check."""
    inputs = [12, 12] if typ == "AddToLastChannels" else [12]
    cp.mutate(f"{prefix}_input_rank_2", _retype(12, typ, inputs, **RETYPE_OPTS[typ]),
              f"{desc(12, 'dense12', typ)}: input 0 'flatten11' must be 4-D, is {shape_str([1, 2 * C])}",
              f"{typ}: input rank", f"op 12 retyped as {typ}: it reads the 2-D output of the Flatten", upto=12)


def _output_case(cp, prefix, k, shape, kind, computed, computed_kind=F, what=""):
    out = k + 1
    cp.mutate(f"{prefix}_output_mismatch",
              _chain(_set(["values", out, "shape"], shape), _set(["values", out, "kind"], kind)),
              f"{D(k)}: output '{BASE_OPS[k]}' is recorded as {shape_str(shape, kind)} but the op computes "
              f"{shape_str(computed, computed_kind)}", f"{BASE_TYPES[k]}: output shape",
              what or f"the output value is recorded as {shape_str(shape, kind)}")


def other_op_cases(cp):
    mu = cp.mutate
    s4 = [1, C, 4, 4]
    # Conv2D's input checks (its arity and geometry are above)
    _input_kind_cases(cp, "Conv2D", "conv")
    _input_rank_cases(cp, "Conv2D", "conv")

    # Sign (op 1)
    cp.upto = 2
    d = D(1)
    mu("sign_arity_2", _set(["ops", 1, "inputs"], [1, 1]), f"{d}: expected 1 input(s), got 2", "Sign: arity",
       "the Sign has two inputs")
    _input_kind_cases(cp, "Sign", "sign")  # 2-D inputs are valid: see bdense_cases
    mu("sign_shift_absent", _opt(1, "shift", None), f"{d}: shift has 0 floats, expected {C}",
       "Sign: scale/shift size",
       "scale without shift")
    mu("sign_scale_absent", _opt(1, "scale", None), f"{d}: scale has 0 floats, expected {C}",
       "Sign: scale/shift size",
       "shift without scale")
    mu("sign_scale_short", _opt(1, "scale", [1.0] * (C - 1)), f"{d}: scale has {C - 1} floats, expected {C}",
       "Sign: scale/shift size", "scale has one entry too few")
    mu("sign_shift_nan", _opt(1, "shift", [float("nan")] * C), f"{d}: scale or shift is not finite",
       "Sign: finite scale/shift", "every shift is NaN")
    _output_case(cp, "sign", 1, s4, F, s4, B, "the Sign's output is recorded as Float")

    # Affine (op 4)
    cp.upto = 4
    d = D(4)
    mu("affine_arity_0", _set(["ops", 4, "inputs"], []), f"{d}: expected 1 input(s), got 0", "Affine: arity",
       "the Affine has no inputs")
    _input_kind_cases(cp, "Affine", "affine")
    mu("affine_scale_shift_absent", _chain(_opt(4, "scale", None), _opt(4, "shift", None)),
       f"{d}: scale has 0 floats, expected {C}", "Affine: scale/shift size",
       "neither scale nor shift (required for Affine, unlike Sign)")
    mu("affine_shift_short", _opt(4, "shift", [0.5]), f"{d}: shift has 1 floats, expected {C}",
       "Affine: scale/shift size", f"shift has 1 entry for {C} channels")
    mu("affine_scale_inf", _opt(4, "scale", [1.5, float("inf")]), f"{d}: scale or shift is not finite",
       "Affine: finite scale/shift", "scale 1 is +Inf")
    mu("affine_activation_3", _opt(4, "activation", 3), f"{d}: unknown activation", "Affine: activation",
       "activation 3")
    _output_case(cp, "affine", 4, [1, C, 4, 2], F, s4)

    # Relu (op 5)
    cp.upto = 5
    mu("relu_arity_2", _set(["ops", 5, "inputs"], [5, 4]), f"{D(5)}: expected 1 input(s), got 2", "Relu: arity",
       "the Relu has two inputs")
    _input_kind_cases(cp, "Relu", "relu")
    _output_case(cp, "relu", 5, [1, 64], F, s4)

    # Pool2D (op 6: max 2x2/2; op 10: global average)
    cp.upto = 6
    d = D(6)
    mu("pool_arity_2", _set(["ops", 6, "inputs"], [6, 6]), f"{d}: expected 1 input(s), got 2", "Pool2D: arity",
       "the Pool2D has two inputs")
    _input_kind_cases(cp, "Pool2D", "pool")
    _input_rank_cases(cp, "Pool2D", "pool")
    mu("pool_type_2", _opt(6, "type", 2), f"{d}: unknown pool type", "Pool2D: type", "pool type 2")
    mu("pool_type_negative", _opt(10, "type", -1), f"{D(10)}: unknown pool type", "Pool2D: type",
       "pool type -1 on the global pool", upto=10)
    mu("pool_global_output_mismatch", _opt(6, "global", True),
       f"{d}: output 'pool6' is recorded as {shape_str([1, C, 2, 2])} but the op computes {shape_str([1, C, 1, 1])}",
       "Pool2D: output shape", "the 2x2/2 max pool made global")
    mu("pool_kernel_absent", _opt(6, "kernel", None), f"{d}: kernel is missing", "Pool2D: kernel/stride/pad",
       "no kernel")
    mu("pool_stride_absent", _opt(6, "stride", None), f"{d}: stride is missing", "Pool2D: kernel/stride/pad",
       "no stride (required for pools, unlike convs)")
    mu("pool_kernel_zero", _opt(6, "kernel", [0, 2]), f"{d}: kernel (0, 2) out of range [1, {MAX_WINDOW}]",
       "Pool2D: kernel/stride/pad", "kernel height 0")
    mu("pool_stride_4097", _opt(6, "stride", [MAX_WINDOW + 1, 2]),
       f"{d}: stride (4097, 2) out of range [1, {MAX_WINDOW}]",
       "Pool2D: kernel/stride/pad", "stride height 4097")
    mu("pool_pad_negative", _opt(6, "pad", [-1, 0]), f"{d}: pad (-1, 0) out of range [0, {MAX_WINDOW}]",
       "Pool2D: kernel/stride/pad", "pad height -1")
    mu("pool_pad_3_entries", _opt(6, "pad", [0, 0, 0]), f"{d}: pad must have 2 entries, has 3",
       "Pool2D: kernel/stride/pad", "pad [0, 0, 0]")
    mu("pool_pad_equals_kernel", _opt(6, "pad", [0, 2]), f"{d}: pad must be smaller than the kernel",
       "Pool2D: pad < kernel", "pad width 2 with a 2-wide kernel (a window of padding only)")
    mu("pool_kernel_larger_than_input", _opt(6, "kernel", [5, 5]), f"{d}: kernel larger than the padded input",
       "Pool2D: window fits the padded input", "5x5 window on a 4x4 input without padding")
    mu("pool_ceil_mode_empty_window",
       _chain(_opt(6, "kernel", [2, 2]), _opt(6, "stride", [3, 3]), _opt(6, "pad", [1, 1]),
              _opt(6, "ceil_mode", True)),
       f"{d}: ceil_mode yields a window without real elements", "Pool2D: ceil_mode windows hold real elements",
       "ceil_mode, kernel 2, stride 3, pad 1 on 4 rows: the third window covers only padding")
    mu("pool_ceil_mode_output_mismatch",
       _chain(_opt(6, "kernel", [3, 3]), _opt(6, "stride", [2, 2]), _opt(6, "pad", [1, 1]),
              _opt(6, "ceil_mode", True)),
       f"{d}: output 'pool6' is recorded as {shape_str([1, C, 2, 2])} but the op computes {shape_str([1, C, 3, 3])}",
       "Pool2D: output shape", "3x3/2 pad 1 recorded at the floor size 2x2, but ceil_mode is set (3x3)")
    mu("pool_floor_output_mismatch", _chain(_opt(6, "kernel", [3, 3]), _opt(6, "stride", [2, 2])),
       f"{d}: output 'pool6' is recorded as {shape_str([1, C, 2, 2])} but the op computes {shape_str([1, C, 1, 1])}",
       "Pool2D: output shape", "3x3/2 without pad or ceil_mode gives 1x1, recorded 2x2")

    # Concat (op 7: [7, 7])
    cp.upto = 7
    d = D(7)
    mu("concat_no_inputs", _set(["ops", 7, "inputs"], []), f"{d}: expected at least 1 input", "Concat: arity",
       "the Concat has an empty inputs vector")
    mu("concat_input_1_bits", _set(["ops", 7, "inputs"], [7, 2]),
       f"{d}: input 1 'sign1' must be Float, is {shape_str([1, C, 4, 4], B)}", "Concat: input kind",
       "the Concat's second input is the Bits value")
    _input_kind_cases(cp, "Concat", "concat")
    _input_rank_cases(cp, "Concat", "concat")
    mu("concat_spatial_differs", _set(["ops", 7, "inputs"], [7, 6]), f"{d}: input 1 has a different spatial size",
       "Concat: same spatial size", "concatenates a 2x2 and a 4x4 value")
    wide = {"version": MIN_FORMAT_VERSION, "producer": "bmx regression corpus",
            "values": [{"name": "data", "shape": [1, MAX_DIM, 1, 1], "kind": F},
                       {"name": "cat", "shape": [1, MAX_DIM, 1, 1], "kind": F}],
            "inputs": [0], "outputs": [1],
            "ops": [{"name": "cat", "type": OO.Concat, "table": "Concat", "options": {}, "inputs": [0, 0],
                     "outputs": [1]}]}
    cp.add("concat_too_many_channels", serialize(wide), f"{desc(0, 'cat', 'Concat')}: too many channels",
           "Concat: channel bound", "concatenates a 2^20-channel input with itself (2^21 channels)")
    mu("concat_output_mismatch", _set(["ops", 7, "inputs"], [7, 7, 7]),
       f"{d}: output 'concat7' is recorded as {shape_str([1, 2 * C, 2, 2])} but the op computes "
       f"{shape_str([1, 3 * C, 2, 2])}", "Concat: output shape", "three inputs, output recorded for two")

    # Add (op 3: [1, 3])
    cp.upto = 3
    d = D(3)
    mu("add_arity_1", _set(["ops", 3, "inputs"], [1]), f"{d}: expected 2 input(s), got 1", "Add: arity",
       "the Add has one input")
    mu("add_arity_3", _set(["ops", 3, "inputs"], [1, 3, 1]), f"{d}: expected 2 input(s), got 3", "Add: arity",
       "the Add has three inputs")
    mu("add_input_1_bits", _set(["ops", 3, "inputs"], [1, 2]),
       f"{d}: input 1 'sign1' must be Float, is {shape_str([1, C, 4, 4], B)}", "Add: input kind",
       "the Add's second input is the Bits value")
    mu("add_shapes_differ", _set(["ops", 3, "inputs"], [1, 0]), f"{d}: inputs differ in shape", "Add: same shapes",
       f"adds [1, {C}, 4, 4] and the [1, {C_IN}, 4, 4] input")
    mu("add_ranks_differ", _retype(12, "Add", [12, 11]), f"{desc(12, 'dense12', 'Add')}: inputs differ in shape",
       "Add: same shapes",
       "op 12 retyped as Add of its [1, 2C] input and the [1, 2C, 1, 1] value 11 (same element count)",
       upto=12)
    _output_case(cp, "add", 3, s4, B, s4)

    # AddToLastChannels (op 8: [8, 7])
    cp.upto = 8
    d = D(8)
    mu("addlast_arity_1", _set(["ops", 8, "inputs"], [8]), f"{d}: expected 2 input(s), got 1",
       "AddToLastChannels: arity", "one input")
    _input_kind_cases(cp, "AddToLastChannels", "addlast")
    _input_rank_cases(cp, "AddToLastChannels", "addlast")
    mu("addlast_spatial_differs", _set(["ops", 8, "inputs"], [8, 6]), f"{d}: inputs differ in spatial size",
       "AddToLastChannels: same spatial size", "adds a 4x4 value into a 2x2 one")
    mu("addlast_more_channels", _set(["ops", 8, "inputs"], [7, 8]), f"{d}: input 1 has more channels than input 0",
       "AddToLastChannels: channel count", f"adds {2 * C} channels into the last channels of a {C}-channel value")
    _output_case(cp, "addlast", 8, [1, 2 * C, 2, 1], F, [1, 2 * C, 2, 2])

    # ChannelShuffle (op 9, groups 2 on 2C channels)
    cp.upto = 9
    d = D(9)
    mu("shuffle_arity_2", _set(["ops", 9, "inputs"], [9, 9]), f"{d}: expected 1 input(s), got 2",
       "ChannelShuffle: arity", "two inputs")
    _input_kind_cases(cp, "ChannelShuffle", "shuffle")
    _input_rank_cases(cp, "ChannelShuffle", "shuffle")
    gm = f"must divide the channels {2 * C}"
    mu("shuffle_groups_absent", _opt(9, "groups", None), f"{d}: groups 0 {gm}", "ChannelShuffle: groups",
       "groups not written (default 0)")
    mu("shuffle_groups_3", _opt(9, "groups", 3), f"{d}: groups 3 {gm}", "ChannelShuffle: groups",
       f"groups 3 of {2 * C} channels")
    mu("shuffle_groups_negative", _opt(9, "groups", -2), f"{d}: groups -2 {gm}", "ChannelShuffle: groups",
       "groups -2 (divides the channel count, but is negative)")
    _output_case(cp, "shuffle", 9, [1, 2 * C, 1, 4], F, [1, 2 * C, 2, 2])

    # Dense (op 12: [1, 2C] -> [1, 3])
    cp.upto = 12
    d = D(12)
    mu("dense_arity_2", _set(["ops", 12, "inputs"], [12, 12]), f"{d}: expected 1 input(s), got 2", "Dense: arity",
       "two inputs")
    _input_kind_cases(cp, "Dense", "dense")
    mu("dense_units_absent", _opt(12, "units", None), f"{d}: units 0 out of range", "Dense: units range",
       "units not written (default 0)")
    mu("dense_units_too_big", _opt(12, "units", MAX_DIM + 1), f"{d}: units {MAX_DIM + 1} out of range",
       "Dense: units range", "units 2^20 + 1")
    big = {"version": MIN_FORMAT_VERSION, "producer": "bmx regression corpus",
           "values": [{"name": "data", "shape": [1, 1, 128, 256], "kind": F},
                      {"name": "fc", "shape": [1, MAX_DIM], "kind": F}],
           "inputs": [0], "outputs": [1],
           "ops": [{"name": "fc", "type": OO.Dense, "table": "Dense", "options": dict(units=MAX_DIM),
                    "inputs": [0], "outputs": [1]}]}
    cp.add("dense_weight_size_overflow", serialize(big), "(Dense): weight: size overflow", "Dense: weight size arithmetic",
           "2^20 units on 2^15 input features: 2^35 weights")
    nw = CLASSES * 2 * C * 4
    w = base_model()["ops"][12]["options"]["weight"]
    mu("dense_weight_short", _opt(12, "weight", w[:-4]), f"{d}: weight has {nw - 4} bytes, expected {nw}",
       "Dense: weight size", "the weight lacks its last float")
    mu("dense_weight_absent", _opt(12, "weight", None), f"{d}: weight has 0 bytes, expected {nw}",
       "Dense: weight size", "no weight")
    mu("dense_weight_transposed_size", _opt(12, "weight", w + w[:4 * CLASSES]),
       f"{d}: weight has {nw + 4 * CLASSES} bytes, expected {nw}", "Dense: weight size",
       "one input feature too many per unit")
    mu("dense_bias_long", _opt(12, "bias", f32([0.0] * (CLASSES + 1))),
       f"{d}: bias has {4 * (CLASSES + 1)} bytes, expected {4 * CLASSES}", "Dense: bias size",
       "the bias has one float too many")

    def poke(field, index, value):
        def fn(m):
            arr = np.frombuffer(m["ops"][12]["options"][field], "<f4").copy()
            arr[index] = value
            m["ops"][12]["options"][field] = arr.tobytes()
        return fn
    mu("dense_weight_nan", poke("weight", 5, np.nan), f"{d}: weight or bias is not finite", "Dense: finite weights",
       "weight 5 is NaN")
    mu("dense_bias_inf", poke("bias", 2, np.inf), f"{d}: weight or bias is not finite", "Dense: finite weights",
       "bias 2 is +Inf")
    mu("dense_output_mismatch", _chain(_opt(12, "units", 4), _opt(12, "weight", w + w[:4 * 2 * C]),
                                       _opt(12, "bias", f32([0.5] * 4))),
       f"{d}: output 'dense12' is recorded as {shape_str([1, CLASSES])} but the op computes {shape_str([1, 4])}",
       "Dense: output shape", "4 units (with 4x8 weights and 4 biases) while the output is recorded as [1, 3]")

    # Flatten (op 11: [1, 2C, 1, 1] -> [1, 2C])
    cp.upto = 11
    mu("flatten_arity_0", _set(["ops", 11, "inputs"], []), f"{D(11)}: expected 1 input(s), got 0", "Flatten: arity",
       "no inputs")
    _input_kind_cases(cp, "Flatten", "flatten")
    _output_case(cp, "flatten", 11, [1, 2 * C, 1, 1], F, [1, 2 * C])


def bdense_cases(cp):
    """BinaryDense's checks (ops/binary_dense.cc) and what format version 2 added, on the
    version-2 base of :func:`bdense_model`: ops 0-1 (the 4-D BinaryDense, op 1) or all of
    it (the 2-D chain, ops 2-3)."""
    def mu(name, fn, message, check, description, upto=1, error=ERROR):
        m = copy.deepcopy(bdense_model(upto))
        fn(m)
        cp.add(name, serialize(m), message, check, description, error=error,
               base="bdense base" if upto is None else f"bdense base ops 0-{upto}")

    def bd(k):
        return desc(k, BD_OPS[k], BD_TYPES[k])
    d, k, u = bd(1), 1, BD_UNITS
    s4 = [1, BD_C, BD_HW, BD_HW]
    cp.add("bdense_valid", serialize(bdense_model()), "", "valid: BinaryDense base loads and runs",
           f"the BinaryDense base itself: 4-D Bits input of {BD_C} channels, then Sign -> BinaryDense on 2-D "
           "values", error="none", base="bdense base")
    # What version 2 added, in a file that says 1
    mu("bdense_in_version_1", _set(["version"], 1),
       "needs model format version 2, the file says 1", "BinaryDense: format version",
       "the 4-D BinaryDense in a file labelled version 1")
    mu("bdense_bits_2d_in_version_1", _set(["version"], 1),
       "value 3 'sign2': Bits values must be 4-D in format version 1", "load_graph: Bits values 4-D in version 1",
       "the whole base labelled version 1: the 2-D Bits output of the second Sign is refused first", upto=None)
    mu("bdense_arity_2", _set(["ops", k, "inputs"], [1, 1]), f"{d}: expected 1 input(s), got 2",
       "BinaryDense: arity", "the BinaryDense reads the Bits value twice")
    mu("bdense_arity_0", _set(["ops", k, "inputs"], []), f"{d}: expected 1 input(s), got 0",
       "BinaryDense: arity", "the BinaryDense has an empty inputs vector")
    mu("bdense_input_float", _set(["ops", k, "inputs"], [0]),
       f"{d}: input 0 'data' must be Bits, is {shape_str(s4)}", "BinaryDense: input kind",
       "the 4-D BinaryDense reads the Float model input instead of the Sign")
    mu("bdense_2d_input_float", _set(["ops", 3, "inputs"], [2]),
       f"{bd(3)}: input 0 'bdense1' must be Bits, is {shape_str([1, u])}", "BinaryDense: input kind",
       "the 2-D BinaryDense reads the Float output of the first BinaryDense instead of the Sign", upto=None)
    mu("bdense_units_absent", _opt(k, "units", None), f"{d}: units 0 out of range", "BinaryDense: units range",
       "units not written (default 0)")
    mu("bdense_units_negative", _opt(k, "units", -1), f"{d}: units -1 out of range", "BinaryDense: units range",
       "units -1")
    mu("bdense_units_too_big", _opt(k, "units", MAX_DIM + 1), f"{d}: units {MAX_DIM + 1} out of range",
       "BinaryDense: units range", "units 2^20 + 1")
    mu("bdense_activation_2", _opt(k, "activation", 2), f"{d}: unknown activation", "BinaryDense: activation",
       "activation 2 (neither None nor Relu)")
    # units * H * W rows of weights overflow the size arithmetic before any vector is read.
    big = {"version": 2, "producer": "bmx regression corpus",
           "values": [{"name": "data", "shape": [1, 1, 256, 256], "kind": F},
                      {"name": "bits", "shape": [1, 1, 256, 256], "kind": B},
                      {"name": "fc", "shape": [1, MAX_DIM], "kind": F}],
           "inputs": [0], "outputs": [2],
           "ops": [{"name": "sign", "type": OO.Sign, "table": "Sign", "options": {}, "inputs": [0], "outputs": [1]},
                   {"name": "fc", "type": OO.BinaryDense, "table": "BinaryDense", "options": dict(units=MAX_DIM),
                    "inputs": [1], "outputs": [2]}]}
    cp.add("bdense_weight_bits_size_overflow", serialize(big), "(BinaryDense): weight_bits: size overflow",
           "BinaryDense: weight size arithmetic", "2^20 units on a [1, 1, 256, 256] Bits input: 2^36 weight rows")
    words = np.frombuffer(bdense_model(1)["ops"][k]["options"]["weight_bits"], "<u8")
    nb = words.nbytes  # units * H * W rows of words(70) = 2 words
    mu("bdense_weight_bits_short", _opt(k, "weight_bits", words[:-1].tobytes()),
       f"{d}: weight_bits has {nb - 8} bytes, expected {nb}", "BinaryDense: weight_bits size",
       "the packed weights lack their last word")
    mu("bdense_weight_bits_absent", _opt(k, "weight_bits", None), f"{d}: weight_bits has 0 bytes, expected {nb}",
       "BinaryDense: weight_bits size", "no weight_bits vector")
    flat = (BD_C * BD_HW * BD_HW + 63) // 64 * 8  # bytes per unit
    mu("bdense_weight_bits_packed_flat", _opt(k, "weight_bits", bytes(u * flat)),
       f"{d}: weight_bits has {u * flat} bytes, expected {nb}", "BinaryDense: weight_bits size",
       "weights packed as [units, words(C*H*W)] instead of [units, H, W, words(C)]")
    mu("bdense_scale_absent", _opt(k, "scale", None), f"{d}: scale has 0 floats, expected {u}",
       "BinaryDense: scale size", "no scale (it is required)")
    mu("bdense_scale_short", _opt(k, "scale", [1.0] * (u - 1)), f"{d}: scale has {u - 1} floats, expected {u}",
       "BinaryDense: scale size", "scale has one entry too few")
    mu("bdense_shift_long", _opt(k, "shift", [0.0] * (u + 1)), f"{d}: shift has {u + 1} floats, expected {u}",
       "BinaryDense: shift size", "shift has one entry too many")
    mu("bdense_shift_absent", _opt(k, "shift", None), f"{d}: shift has 0 floats, expected {u}",
       "BinaryDense: shift size", "no shift (it is required)")
    mu("bdense_scale_nan", _opt(k, "scale", [0.25, float("nan"), 0.5, 0.375, -0.25]),
       f"{d}: scale or shift is not finite", "BinaryDense: finite scale/shift", "scale 1 is NaN")
    mu("bdense_shift_inf", _opt(k, "shift", [-30.0, 20.0, -70.0, -50.0, float("inf")]),
       f"{d}: scale or shift is not finite", "BinaryDense: finite scale/shift", "shift 4 is +Inf")

    # Tail bits: 70 channels use bits 0..5 of each row's second word.
    def with_bit(row, word, bit, upto=1, op=k, c=BD_C):
        w = np.frombuffer(bdense_model(upto)["ops"][op]["options"]["weight_bits"], "<u8").copy()
        w[row * ((c + 63) // 64) + word] |= np.uint64(1) << np.uint64(bit)
        return _opt(op, "weight_bits", w.tobytes())
    tail = "(tail bits must be 0)"
    mu("bdense_tail_bit_70", with_bit(7, 1, BD_C - 64),
       f"{d}: weight_bits row 7 has bits set past the input's channels = {BD_C} {tail}",
       "BinaryDense: zero tail bits", f"bit {BD_C - 64} of row 7's second word (channel {BD_C} of {BD_C}) set")
    mu("bdense_tail_bit_127", with_bit(0, 1, 63),
       f"{d}: weight_bits row 0 has bits set past the input's channels = {BD_C} {tail}",
       "BinaryDense: zero tail bits", "bit 63 of row 0's second word set")
    mu("bdense_2d_tail_bit_5", with_bit(2, 0, u, upto=None, op=3, c=u),
       f"{bd(3)}: weight_bits row 2 has bits set past the input's channels = {u} {tail}",
       "BinaryDense: zero tail bits", f"bit {u} of row 2 set in the 2-D BinaryDense ({u} input channels)",
       upto=None)
    # The recorded output: [1, units] Float
    mu("bdense_output_units_mismatch", _set(["values", 2, "shape"], [1, u - 1]),
       f"{d}: output 'bdense1' is recorded as {shape_str([1, u - 1])} but the op computes {shape_str([1, u])}",
       "BinaryDense: output shape", f"the output recorded with {u - 1} units")
    mu("bdense_output_recorded_4d", _set(["values", 2, "shape"], [1, u, 1, 1]),
       f"{d}: output 'bdense1' is recorded as {shape_str([1, u, 1, 1])} but the op computes {shape_str([1, u])}",
       "BinaryDense: output shape", "the output recorded 4-D, as a 1x1 conv's would be")
    mu("bdense_output_recorded_bits", _set(["values", 2, "kind"], B),
       f"{d}: output 'bdense1' is recorded as {shape_str([1, u], B)} but the op computes {shape_str([1, u])}",
       "BinaryDense: output shape", "the output (read by the next Sign) is marked Bits", upto=None)
    # 2-D Bits elsewhere: the Sign of a 2-D value keeps its rank; a binary conv wants 4-D.
    mu("sign_2d_output_recorded_4d", _set(["values", 3, "shape"], [1, u, 1, 1]),
       f"{bd(2)}: output 'sign2' is recorded as {shape_str([1, u, 1, 1], B)} but the op computes "
       f"{shape_str([1, u], B)}", "Sign: output shape", "the Sign of a [1, 5] value recorded as [1, 5, 1, 1] Bits",
       upto=None)
    mu("bconv_input_rank_2", _retype(3, "BinaryConv2D", None, out_channels=CLASSES, in_channels=u, kernel=[1, 1]),
       f"{desc(3, 'bdense3', 'BinaryConv2D')}: input 0 'sign2' must be 4-D, is {shape_str([1, u], B)}",
       "BinaryConv2D: input rank", "op 3 retyped as BinaryConv2D: it reads the 2-D Bits output of the Sign",
       upto=None)


def xnor_cases(cp):
    """MeanAbsChannels' and Mul's checks (ops/mean_abs_channels.cc, ops/mul.cc), on the
    version-2 base of :func:`xnor_model` or a prefix of its ops; the 2-D inputs they need
    come from the version-1 base relabelled version 2 (which loads, see model_cases)."""
    def mu(name, fn, message, check, description, upto=None, error=ERROR):
        m = copy.deepcopy(xnor_model(upto))
        fn(m)
        cp.add(name, serialize(m), message, check, description, error=error,
               base="xnor base" if upto is None else f"xnor base ops 0-{upto}")

    def v2(*args):
        _relabelled(cp, 2, *args)

    def xd(k):
        return desc(k, XN_OPS[k], XN_TYPES[k])
    s_in, s_out, s_one = [1, XN_C, XN_HW, XN_HW], [1, XN_OUT, XN_HW, XN_HW], [1, 1, XN_HW, XN_HW]
    cp.add("xnor_valid", serialize(xnor_model()), "", "valid: XNOR conv base loads and runs",
           f"the XNOR conv base itself: Sign -> BinaryConv2D and MeanAbsChannels -> Pool2D avg on {XN_C} "
           "channels, a broadcast Mul and a full-shape Mul", error="none", base="xnor base")

    # MeanAbsChannels (op 2: data -> [1, 1, 5, 5])
    d = xd(2)
    mu("xnor_mac_in_version_1", _set(["version"], 1), f"{d}: needs model format version 2, the file says 1",
       "MeanAbsChannels: format version", "ops 0-2 (Sign, BinaryConv2D, MeanAbsChannels) labelled version 1",
       upto=2)
    mu("xnor_mac_arity_2", _set(["ops", 2, "inputs"], [0, 0]), f"{d}: expected 1 input(s), got 2",
       "MeanAbsChannels: arity", "the MeanAbsChannels reads the input twice", upto=2)
    mu("xnor_mac_arity_0", _set(["ops", 2, "inputs"], []), f"{d}: expected 1 input(s), got 0",
       "MeanAbsChannels: arity", "the MeanAbsChannels has an empty inputs vector", upto=2)
    mu("xnor_mac_input_bits", _set(["ops", 2, "inputs"], [1]),
       f"{d}: input 0 'sign0' must be Float, is {shape_str(s_in, B)}", "MeanAbsChannels: input kind",
       "the MeanAbsChannels reads the Bits output of the Sign instead of the input", upto=2)
    v2("xnor_mac_input_rank_2", _retype(12, "MeanAbsChannels", [12]),
       f"{desc(12, 'dense12', 'MeanAbsChannels')}: input 0 'flatten11' must be 4-D, is {shape_str([1, 2 * C])}",
       "MeanAbsChannels: input rank",
       "op 12 retyped as MeanAbsChannels in the base labelled version 2: it reads the 2-D "
       "output of the Flatten")
    for case, fn, shape, kind, what in (
            ("all_channels", _set(["values", 3, "shape"], s_in), s_in, F,
             "the output recorded with the input's channels, as an element-wise abs would be"),
            ("recorded_2d", _set(["values", 3, "shape"], [1, 1]), [1, 1], F, "the output recorded as [1, 1]"),
            ("recorded_bits", _set(["values", 3, "kind"], B), s_one, B,
             "the output (read by the Pool2D) is marked Bits")):
        mu(f"xnor_mac_output_{case}", fn,
           f"{d}: output 'mac2' is recorded as {shape_str(shape, kind)} but the op computes {shape_str(s_one)}",
           "MeanAbsChannels: output shape", what, upto=3)

    # Mul (op 4: Mul(bconv1, pool3), b broadcast; op 5: Mul(mul4, bconv1), full shapes)
    d, d5 = xd(4), xd(5)
    m = xnor_square_model()
    m["version"] = 1
    cp.add("xnor_mul_in_version_1", serialize(m),
           f"{desc(2, 'square2', 'Mul')}: needs model format version 2, the file says 1", "Mul: format version",
           "Sign -> BinaryConv2D -> Mul(bconv1, bconv1) labelled version 1 (no MeanAbsChannels before the Mul)",
           base="xnor base ops 0-1 and a Mul")
    mu("xnor_mul_arity_1", _set(["ops", 4, "inputs"], [2]), f"{d}: expected 2 input(s), got 1", "Mul: arity",
       "the broadcast Mul has one input", upto=4)
    mu("xnor_mul_arity_3", _set(["ops", 4, "inputs"], [2, 4, 4]), f"{d}: expected 2 input(s), got 3", "Mul: arity",
       "the broadcast Mul has three inputs", upto=4)
    mu("xnor_mul_input_0_bits", _set(["ops", 4, "inputs"], [1, 4]),
       f"{d}: input 0 'sign0' must be Float, is {shape_str(s_in, B)}", "Mul: input kind",
       "the broadcast Mul's first input is the Bits output of the Sign", upto=4)
    mu("xnor_mul_input_1_bits", _set(["ops", 5, "inputs"], [5, 1]),
       f"{d5}: input 1 'sign0' must be Float, is {shape_str(s_in, B)}", "Mul: input kind",
       "the full-shape Mul's second input is the Bits output of the Sign")
    shapes = "Mul: second input of the first's shape or one channel"

    def against(b, a):
        return f"the second input must have the first's shape or one channel, is {shape_str(b)} against {shape_str(a)}"
    mu("xnor_mul_b_fewer_channels", _set(["ops", 5, "inputs"], [0, 2]), f"{d5}: {against(s_out, s_in)}", shapes,
       f"the full-shape Mul multiplies the {XN_C}-channel input by the {XN_OUT}-channel binary conv output")
    mu("xnor_mul_b_more_channels", _set(["ops", 5, "inputs"], [5, 0]), f"{d5}: {against(s_in, s_out)}", shapes,
       f"the full-shape Mul multiplies a {XN_OUT}-channel value by the {XN_C}-channel input")
    mu("xnor_mul_operands_swapped", _set(["ops", 4, "inputs"], [4, 2]), f"{d}: {against(s_out, s_one)}", shapes,
       "Mul(pool3, bconv1): the one-channel value first (only the second input is broadcast)", upto=4)
    for case, stride, hw in (("height", [2, 1], [3, XN_HW]), ("width", [1, 2], [XN_HW, 3])):
        mu(f"xnor_mul_{case}_differs",
           _chain(_opt(3, "stride", stride), _set(["values", 4, "shape"], [1, 1] + hw)),
           f"{d}: {against([1, 1] + hw, s_out)}", shapes,
           f"the Pool2D has stride {stride} (output recorded {hw[0]}x{hw[1]}): the scale map misses the "
           f"conv's {XN_HW}x{XN_HW}", upto=4)
    v2("xnor_mul_ranks_differ", _retype(12, "Mul", [12, 11]),
       f"{desc(12, 'dense12', 'Mul')}: {against([1, 2 * C, 1, 1], [1, 2 * C])}", shapes,
       f"op 12 retyped as Mul of its [1, {2 * C}] input and the [1, {2 * C}, 1, 1] value 11 (same channels), "
       "in the base labelled version 2")
    mu("xnor_mul_output_b_shape", _set(["values", 5, "shape"], s_one),
       f"{d}: output 'mul4' is recorded as {shape_str(s_one)} but the op computes {shape_str(s_out)}",
       "Mul: output shape", "the broadcast Mul's output recorded with the second input's one channel", upto=4)
    mu("xnor_mul_output_recorded_bits", _set(["values", 5, "kind"], B),
       f"{d}: output 'mul4' is recorded as {shape_str(s_out, B)} but the op computes {shape_str(s_out)}",
       "Mul: output shape", "the broadcast Mul's output (read by the next Mul) is marked Bits")


# -- k-bit (format version 3): Levels values, Quantize, KbitConv2D

def kbgemm_max_words(pa, pb):
    """core/kbgemm/kbgemm.cc kbgemm_max_words: the longest row of pa x pb planes whose
    weighted popcounts fit int32."""
    return (2**31 - 1) // (((1 << pa) - 1) * ((1 << pb) - 1) * 64)


def KD(k):
    """describe() of k-bit base op k."""
    return desc(k, KB_OPS[k], KB_TYPES[k])


def _kbit_mutator(cp):
    """mu(name, fn, ...): a case made from the k-bit base, by default its ops 0-2 (Conv2D,
    Quantize, KbitConv2D on Levels: the smallest files)."""
    def mu(name, fn, message, check, description, upto=2, error=ERROR):
        m = copy.deepcopy(kbit_model(upto))
        fn(m)
        cp.add(name, serialize(m), message, check, description, error=error,
               base="kbit base" if upto is None else f"kbit base ops 0-{upto}")
    return mu


def kbit_value_cases(cp):
    """Levels values (loader.cc read_kind) and the ops of the older formats fed one."""
    mu, s_c = _kbit_mutator(cp), [1, KB_C, HW, HW]
    lv = shape_str(s_c, LV, KB_LEVELS)
    cp.add("kbit_valid", serialize(kbit_model()), "", "valid: k-bit base loads and runs",
           f"the k-bit base itself: Quantize -> Levels({KB_LEVELS}) -> KbitConv2D (2 weight planes) and Sign -> "
           "KbitConv2D (3 weight planes), both padded, added, pooled, classified", error="none", base="kbit base")
    mu("kbit_levels_in_version_2", _set(["version"], 2),
       "value 2 'quant1': Levels values need model format version 3", "load_graph: Levels values need version 3",
       "the whole k-bit base labelled version 2: its Levels value is refused before any op", upto=None)
    for planes in (1, MAX_PLANES):
        mu(f"kbit_levels_planes_{planes}_loads", _set(["values", 2, "planes"], planes), "",
           "load_graph: value planes (each count in range loads)",
           f"the Quantize output has {planes} planes (the KbitConv2D reads them all)", error="none")
    for case, planes, what in (("absent", None, "planes not written (default 0)"),
                               (MAX_PLANES + 1, MAX_PLANES + 1, "planes 5, one past the bound"),
                               ("negative", -1, "planes -1")):
        mu(f"kbit_levels_planes_{case}", _set(["values", 2, "planes"], planes),
           f"value 2 'quant1': planes {planes or 0} out of range [1, {MAX_PLANES}]", "load_graph: value planes",
           f"the Levels value: {what}")
    mu("kbit_float_planes_2", _set(["values", 1, "planes"], 2), "value 1 'conv0': planes 2 set on a non-Levels value",
       "load_graph: value planes", "the Float output of the Conv2D has planes 2", upto=0)
    mu("kbit_bits_planes_1", _set(["values", 4, "planes"], 1), "value 4 'sign3': planes 1 set on a non-Levels value",
       "load_graph: value planes", "the Bits output of the Sign has planes 1", upto=4)
    mu("kbit_model_input_levels", _set(["inputs"], [2]), f"model input must be a 4-D Float value, is {lv}",
       "load_graph: input 4-D Float", "the input is value 2, the Levels output of the Quantize")
    mu("kbit_model_output_levels", _set(["outputs"], [2]), "model output must be Float", "load_graph: output Float",
       "the output is value 2, the Levels output of the Quantize")
    mu("kbit_sign_output_recorded_levels", _chain(_set(["values", 4, "kind"], LV), _set(["values", 4, "planes"], 1)),
       f"{KD(3)}: output 'sign3' is recorded as {shape_str(s_c, LV, 1)} but the op computes {shape_str(s_c, B)}",
       "Sign: output shape", "the Sign's output is marked Levels(1) (levels 0/1, not +-1)", upto=4)
    # Ops of formats 1 and 2 read Bits or Float, never Levels: op 2 retyped, reading value 2.
    for typ, want, opts in (
            ("BinaryConv2D", "Bits", dict(out_channels=KB_OUT, in_channels=KB_C, kernel=[3, 3], pad=[1, 1])),
            ("BinaryDense", "Bits", dict(units=KB_OUT)), ("Sign", "Float", {}),
            ("Conv2D", "Float", dict(out_channels=KB_OUT, kernel=[3, 3], pad=[1, 1]))):
        prefix = {"BinaryConv2D": "bconv", "BinaryDense": "bdense", "Sign": "sign", "Conv2D": "float_conv"}[typ]
        mu(f"kbit_{prefix}_input_levels", _retype(2, typ, None, **opts),
           f"{desc(2, 'kconv2', typ)}: input 0 'quant1' must be {want}, is {lv}", f"{typ}: input kind",
           f"op 2 retyped as {typ}: it reads the Levels output of the Quantize")


def kbit_quantize_cases(cp):
    """Quantize's checks (ops/quantize.cc), on op 1 of the k-bit base (conv0 -> quant1)."""
    mu, d, k = _kbit_mutator(cp), KD(1), 1
    s_c, c = [1, KB_C, HW, HW], KB_C
    lv = shape_str(s_c, LV, KB_LEVELS)
    _relabelled(cp, 2, "kbit_quant_in_version_2", _retype(1, "Quantize"),
                f"{desc(1, 'sign1', 'Quantize')}: needs model format version 3, the file says 2",
                "Quantize: format version",
                "the version-1 base labelled 2 with its Sign retyped as Quantize (its output stays Bits, so no "
                "value check fires first)")
    mu("kbit_quant_arity_2", _set(["ops", k, "inputs"], [1, 1]), f"{d}: expected 1 input(s), got 2",
       "Quantize: arity", "the Quantize reads the Conv2D output twice")
    mu("kbit_quant_arity_0", _set(["ops", k, "inputs"], []), f"{d}: expected 1 input(s), got 0",
       "Quantize: arity", "the Quantize has an empty inputs vector")
    for case, op, kind, planes, upto in (("bits", 4, B, 0, 4), ("levels", 2, LV, KB_LEVELS, 2)):
        v = KB_OPS[op - 1]
        mu(f"kbit_quant_input_{case}", _retype(op, "Quantize"),
           f"{desc(op, KB_OPS[op], 'Quantize')}: input 0 '{v}' must be Float, is {shape_str(s_c, kind, planes)}",
           "Quantize: input kind", f"op {op} retyped as Quantize: it reads the {shape_str(s_c, kind, planes)} "
           f"output of the {KB_TYPES[op - 1]}", upto=upto)
    _relabelled(cp, 3, "kbit_quant_input_rank_2", _retype(12, "Quantize", [12]),
                f"{desc(12, 'dense12', 'Quantize')}: input 0 'flatten11' must be 4-D, is {shape_str([1, 2 * C])}",
                "Quantize: input rank",
                "op 12 of the version-1 base labelled 3 retyped as Quantize: it reads the 2-D output of the Flatten")
    for case, field, value, msg, what in (
            ("scale_long", "scale", [0.5] * (c + 1), f"scale has {c + 1} floats, expected {c}", "one scale too many"),
            ("shift_short", "shift", [0.5] * (c - 1), f"shift has {c - 1} floats, expected {c}", "one shift too few"),
            ("scale_absent", "scale", None, f"scale has 0 floats, expected {c}", "a shift without a scale"),
            ("shift_absent", "shift", None, f"shift has 0 floats, expected {c}", "a scale without a shift")):
        mu(f"kbit_quant_{case}", _opt(k, field, value), f"{d}: {msg}", "Quantize: scale/shift size", what)
    mu("kbit_quant_scale_nan", _opt(k, "scale", QUANT_SCALE[:2] + [float("nan")] + QUANT_SCALE[3:]),
       f"{d}: scale or shift is not finite", "Quantize: finite scale/shift", "scale 2 is NaN")
    mu("kbit_quant_shift_inf", _opt(k, "shift", QUANT_SHIFT[:4] + [float("inf")]),
       f"{d}: scale or shift is not finite", "Quantize: finite scale/shift", "shift 4 is +Inf")
    mu("kbit_quant_no_scale_shift_loads", _chain(_opt(k, "scale", None), _opt(k, "shift", None)), "",
       "Quantize: scale/shift size (both absent loads)", "no scale and no shift: the plain quantizer of x",
       error="none")
    for case, kind in (("float", F), ("bits", B)):
        mu(f"kbit_quant_output_{case}", _chain(_set(["values", 2, "kind"], kind), _set(["values", 2, "planes"], None)),
           f"{d}: output 'quant1' must be a Levels value, is {shape_str(s_c, kind)}", "Quantize: output Levels",
           f"the Quantize output is marked {'Float' if kind == F else 'Bits'} (no planes)")
    for case, shape in (("channels", [1, c - 1, HW, HW]), ("width", [1, c, HW, HW - 1])):
        mu(f"kbit_quant_output_{case}", _set(["values", 2, "shape"], shape),
           f"{d}: output 'quant1' is recorded as {shape_str(shape, LV, KB_LEVELS)} but the op computes {lv}",
           "Quantize: output shape", f"the Quantize output recorded as {shape}")


def kbit_conv_cases(cp):
    """KbitConv2D's checks (ops/kbit_conv2d.cc) on op 2 of the k-bit base (Levels(2)
    input, 2 weight planes) or op 4 (Bits input, 3 weight planes); sizes near the bounds
    in :func:`kbit_conv_bound_cases`."""
    mu, d, k = _kbit_mutator(cp), KD(2), 2
    s_c, s_o, c, o = [1, KB_C, HW, HW], [1, KB_OUT, HW, HW], KB_C, KB_OUT
    chk = "KbitConv2D: "
    _relabelled(cp, 2, "kbit_conv_in_version_2", _retype(2, "KbitConv2D"),
                f"{desc(2, 'bconv2', 'KbitConv2D')}: needs model format version 3, the file says 2",
                chk + "format version",
                "the version-1 base labelled 2 with its BinaryConv2D retyped as KbitConv2D (it reads Bits: no "
                "Levels value in the file)")
    mu("kbit_conv_arity_2", _set(["ops", k, "inputs"], [2, 2]), f"{d}: expected 1 input(s), got 2", chk + "arity",
       "the KbitConv2D reads the Levels value twice")
    mu("kbit_conv_input_float", _set(["ops", k, "inputs"], [1]),
       f"{d}: input 0 'conv0' must be Bits or Levels, is {shape_str(s_c)}", chk + "input kind",
       "the KbitConv2D reads the Float output of the Conv2D")
    m = bdense_model()
    _chain(_set(["version"], 3), _retype(3, "KbitConv2D", None, out_channels=CLASSES, in_channels=BD_UNITS,
                                         kernel=[1, 1], weight_planes=1))(m)
    cp.add("kbit_conv_input_rank_2", serialize(m),
           f"{desc(3, 'bdense3', 'KbitConv2D')}: input 0 'sign2' must be 4-D, is {shape_str([1, BD_UNITS], B)}",
           chk + "input rank", "op 3 of the BinaryDense base labelled 3 retyped as KbitConv2D: it reads the 2-D Bits "
           "output of the Sign", base="bdense base relabelled version 3")
    for case, field, value, msg in (
            ("kernel_absent", "kernel", None, "kernel is missing"),
            ("kernel_3_entries", "kernel", [3, 3, 3], "kernel must have 2 entries, has 3"),
            ("stride_zero", "stride", [0, 1], f"stride (0, 1) out of range [1, {MAX_WINDOW}]"),
            ("pad_negative", "pad", [1, -1], f"pad (1, -1) out of range [0, {MAX_WINDOW}]"),
            ("dilation_4097", "dilation", [MAX_WINDOW + 1, 1], f"dilation (4097, 1) out of range [1, {MAX_WINDOW}]")):
        mu(f"kbit_conv_{case}", _opt(k, field, value), f"{d}: {msg}", chk + "kernel/stride/pad/dilation",
           f"{field} {value}")
    for case, value in (("absent", None), (str(c + 1), c + 1)):
        mu(f"kbit_conv_in_channels_{case}", _opt(k, "in_channels", value),
           f"{d}: in_channels {value or 0} differs from the input's {c}", chk + "in_channels",
           f"in_channels {value or 0} for a {c}-channel input")
    mu("kbit_conv_out_channels_absent", _opt(k, "out_channels", None), f"{d}: out_channels 0 out of range",
       chk + "out_channels range", "out_channels not written (default 0)")
    mu("kbit_conv_activation_2", _opt(k, "activation", 2), f"{d}: unknown activation", chk + "activation",
       "activation 2 (neither None nor Relu)")
    mu("kbit_conv_kernel_larger_than_input", _opt(k, "kernel", [7, 7]), f"{d}: kernel larger than the padded input",
       chk + "window fits the padded input", "7x7 kernel on a 4x4 input padded by 1")
    for case, fn, shape, kind, what in (
            ("stride_2", _opt(k, "stride", [2, 2]), s_o, F, "stride 2 while the output is recorded at 4x4"),
            ("recorded_levels", _chain(_set(["values", 3, "kind"], LV), _set(["values", 3, "planes"], 2)),
             s_o, LV, "the output value is marked Levels(2)")):
        computed = [1, o, 2, 2] if case == "stride_2" else s_o
        mu(f"kbit_conv_output_{case}", fn,
           f"{d}: output 'kconv2' is recorded as {shape_str(shape, kind, 2)} but the op computes "
           f"{shape_str(computed)}", chk + "output shape", what)
    for planes, what in ((None, "weight_planes not written (default 0)"), (MAX_PLANES + 1, "weight_planes 5")):
        mu(f"kbit_conv_weight_planes_{planes or 'absent'}", _opt(k, "weight_planes", planes),
           f"{d}: weight_planes {planes or 0} out of range [1, {MAX_PLANES}]", chk + "weight_planes range", what)
    _kbit_weight_cases(cp, mu)


def _kbit_weight_cases(cp, mu):
    """weight_bits size and tail bits, scale and shift, of the two KbitConv2D of the base."""
    d, k, c, o = KD(2), 2, KB_C, KB_OUT
    chk = "KbitConv2D: "
    wb = kbit_model()["ops"][k]["options"]["weight_bits"]
    nb = o * 2 * 9 * 8  # [C_out, 2 planes, 3, 3, 1 word]
    for case, value, what in (("short", wb[:-8], "the packed weights lack their last word"),
                              ("absent", None, "no weight_bits vector")):
        mu(f"kbit_conv_weight_bits_{case}", _opt(k, "weight_bits", value),
           f"{d}: weight_bits has {0 if value is None else nb - 8} bytes, expected {nb}", chk + "weight_bits size",
           what)
    mu("kbit_conv_weight_planes_3_on_2", _opt(k, "weight_planes", 3),
       f"{d}: weight_bits has {nb} bytes, expected {nb // 2 * 3}", chk + "weight_bits size",
       "weight_planes 3 on weights packed with 2 planes")
    for case, field, value, msg in (
            ("scale_absent", "scale", None, f"scale has 0 floats, expected {o}"),
            ("scale_short", "scale", [1.0] * (o - 1), f"scale has {o - 1} floats, expected {o}"),
            ("shift_long", "shift", [0.0] * (o + 1), f"shift has {o + 1} floats, expected {o}"),
            ("shift_absent", "shift", None, f"shift has 0 floats, expected {o}")):
        mu(f"kbit_conv_{case}", _opt(k, field, value), f"{d}: {msg}", f"{chk}{field} size",
           f"{field} {'absent' if value is None else f'of {len(value)} floats'} for {o} output channels")
    mu("kbit_conv_scale_nan", _opt(k, "scale", [0.5, -0.75, float("nan"), 0.25]),
       f"{d}: scale or shift is not finite", chk + "finite scale/shift", "scale 2 is NaN")
    mu("kbit_conv_shift_neg_inf", _opt(k, "shift", [float("-inf"), -1.0, 0.5, 1.5]),
       f"{d}: scale or shift is not finite", chk + "finite scale/shift", "shift 0 is -Inf")

    # Tail bits: 5 input channels use bits 0..4 of each row's one word; a row is one
    # (output channel, plane, tap).
    def with_bit(op, row, bit, upto):
        w = np.frombuffer(kbit_model(upto)["ops"][op]["options"]["weight_bits"], "<u8").copy()
        w[row] |= np.uint64(1) << np.uint64(bit)
        return _opt(op, "weight_bits", w.tobytes())
    tail = "(tail bits must be 0)"
    for case, op, row, bit, upto, what in (
            ("bit_5", 2, 10, c, 2, "bit 5 (channel 5 of 5) of row 10 (output 0, plane 1, tap 1)"),
            ("bit_63", 2, o * 2 * 9 - 1, 63, 2, "bit 63 of the last row"),
            ("plane_2_bit_6", 4, (1 * 3 + 2) * 9 + 4, c + 1, 4,
             "bit 6 of row 49 of the Bits-input conv (output 1, weight plane 2 of 3, the centre tap)")):
        mu(f"kbit_conv_tail_{case}", with_bit(op, row, bit, upto),
           f"{KD(op)}: weight_bits row {row} has bits set past in_channels = {c} {tail}", chk + "zero tail bits",
           what, upto=upto)


def _kbit_wide(name, in_c, levels, conv, out_shape):
    """Three values: data [1, in_c, 1, 1] -> Sign (levels 0) or Quantize (Levels(levels))
    -> KbitConv2D(**conv) recorded as out_shape: a model for sizes near the bounds."""
    q = {"name": "q", "shape": [1, in_c, 1, 1], "kind": LV if levels else B, "planes": levels or None}
    table = "Quantize" if levels else "Sign"
    return {"version": 3, "producer": "bmx regression corpus",
            "values": [{"name": "data", "shape": [1, in_c, 1, 1], "kind": F}, q,
                       {"name": name, "shape": list(out_shape), "kind": F}],
            "inputs": [0], "outputs": [2],
            "ops": [{"name": "q", "type": getattr(OO, table), "table": table, "options": {}, "inputs": [0],
                     "outputs": [1]},
                    {"name": name, "type": OO.KbitConv2D, "table": "KbitConv2D",
                     "options": dict(in_channels=in_c, **conv), "inputs": [1], "outputs": [2]}]}


def kbit_conv_bound_cases(cp):
    """KbitConv2D's size arithmetic and its reduction bound: the longest row the kbgemm's
    int32 sums allow for the planes (kbgemm_max_words), and K <= 2^30."""
    def add(name, model, message, check, description):
        cp.add(name, serialize(model), message, check, description)
    chk = "KbitConv2D: "
    d = desc(1, "kconv", "KbitConv2D")
    top = kbgemm_max_words(4, 4)  # 149130 = 45 * 3314 words of 64 channels (one per tap)
    assert top == 45 * 3314 and top + 1 == 47 * 3173
    add("kbit_conv_reduction_too_large_4x4_planes",
        _kbit_wide("kconv", 64, 4, dict(out_channels=1, kernel=[47, 3173], pad=[23, 1586], weight_planes=4),
                   [1, 1, 1, 1]),
        f"{d}: reduction size too large for 4 x 4 planes", chk + "reduction size",
        f"Levels(4) of 64 channels into a 47x3173 conv of 4 weight planes: rows of {top + 1} words, one past "
        "the kbgemm bound")
    add("kbit_conv_reduction_at_bound_4x4_planes",
        _kbit_wide("kconv", 64, 4, dict(out_channels=1, kernel=[45, 3314], pad=[22, 1657], weight_planes=4),
                   [1, 1, 1, 2]),
        f"{d}: weight_bits has 0 bytes, expected {4 * top * 8}", chk + "weight_bits size",
        f"as the file past the bound with a 45x3314 kernel: rows of {top} words pass the reduction check")
    add("kbit_conv_reduction_too_large_bits",
        _kbit_wide("kconv", 128, 0, dict(out_channels=1, kernel=[MAX_WINDOW, 2049], pad=[2048, 1024],
                                         weight_planes=1), [1, 1, 2, 1]),
        f"{d}: reduction size too large for 1 x 1 planes", chk + "reduction size",
        "Bits of 128 channels into a 4096x2049 sign-weight conv: K = 2^30 + 2^20 (the rows fit the kbgemm)")
    add("kbit_conv_reduction_size_overflow",
        _kbit_wide("kconv", 2048, 0, dict(out_channels=1, kernel=[MAX_WINDOW, MAX_WINDOW], pad=[2048, 2048],
                                          weight_planes=1), [1, 1, 2, 2]),
        "(KbitConv2D): K: size overflow", chk + "weight size arithmetic",
        "Bits of 2048 channels into a 4096x4096 conv: K = 2^35 overflows the size arithmetic first")
    add("kbit_conv_weight_bits_size_overflow",
        _kbit_wide("kconv", 64, 0, dict(out_channels=MAX_DIM, kernel=[128, 256], pad=[64, 128], weight_planes=4),
                   [1, MAX_DIM, 2, 2]),
        "(KbitConv2D): weight_bits: size overflow", chk + "weight size arithmetic",
        "2^20 output channels of 4 weight planes, 128x256 kernel on 64 channels: 2^37 words")


def build():
    """All generated cases: (files {name: bytes}, manifest entries {name: entry})."""
    cp = Corpus()
    base = serialize(base_model(0))  # the smallest valid prefix: data -> Conv2D
    buffer_cases(cp, base)
    verifier_cases(cp, base)
    model_cases(cp)
    op_cases(cp)
    conv_cases(cp)
    bconv_cases(cp)
    other_op_cases(cp)
    bdense_cases(cp)
    xnor_cases(cp)
    kbit_value_cases(cp)
    kbit_quantize_cases(cp)
    kbit_conv_cases(cp)
    kbit_conv_bound_cases(cp)
    cp.upto = None
    return cp.files, cp.entries


def write(out_dir):
    """Write the corpus and manifest.json; keep entries (and files) of other sources."""
    os.makedirs(out_dir, exist_ok=True)
    files, entries = build()
    path = os.path.join(out_dir, MANIFEST)
    kept = {}
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)["files"]
        kept = {k: e for k, e in old.items() if e.get("source") != "generated"}
        for k, e in old.items():  # generated files that are no longer generated
            if e.get("source") == "generated" and k not in files and os.path.exists(os.path.join(out_dir, k)):
                os.remove(os.path.join(out_dir, k))
    clash = set(kept) & set(files)
    if clash:
        raise SystemExit(f"hand-added entries clash with generated names: {sorted(clash)}")
    for name, data in files.items():
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)
    allf = dict(sorted({**entries, **kept}.items()))
    manifest = {
        "about": "Expected loader errors for every file of this folder; made by "
                 "scripts/make_regression_corpus.py, replayed by tests/test_loader_regressions.py "
                 "and tests/cpp/test_loader_regressions.cc. error: ModelError (bmx::Error in C++) or "
                 "none (the file must load); message: a fragment of the error message.",
        "count": len(allf),
        "files": allf,
    }
    with open(path, "w") as f:
        f.write(dumps_manifest(manifest))
    return files, allf


def dumps_manifest(manifest):
    """JSON text with one line per file (reviewable diffs, greppable)."""
    lines = [f' "about": {json.dumps(manifest["about"])},', f' "count": {manifest["count"]},', ' "files": {']
    items = list(manifest["files"].items())
    for i, (name, e) in enumerate(items):
        lines.append(f'  {json.dumps(name)}: {json.dumps(e)}' + ("," if i + 1 < len(items) else ""))
    return "{\n" + "\n".join(lines) + "\n }\n}\n"


def check(out_dir, entries):
    """Load every file with bmx.engine; return a list of mismatches (empty: all as expected)."""
    from bmx import engine
    bad = []
    engine.Model(base_bytes()).predict(base_input())
    engine.Model(serialize(bdense_model())).predict(bdense_input())
    engine.Model(serialize(xnor_model())).predict(xnor_input())
    engine.Model(serialize(kbit_model())).predict(kbit_input())
    for name, e in entries.items():
        with open(os.path.join(out_dir, name), "rb") as f:
            data = f.read()
        try:
            engine.Model(data)
            got = None
        except engine.ModelError as ex:
            got = str(ex)
        if e["error"] == "none":
            if got is not None:
                bad.append(f"{name}: expected to load, got {got!r}")
        elif got is None or e["message"] not in got:
            bad.append(f"{name}: expected {e['message']!r}, got {got!r}")
    return bad


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", nargs="?", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="load every file with bmx.engine afterwards")
    args = ap.parse_args(argv)
    files, entries = write(args.out_dir)
    total = sum(len(d) for d in files.values())
    print(f"{len(files)} generated files ({total} bytes, largest {max(len(d) for d in files.values())}); "
          f"{len(entries)} manifest entries in {os.path.join(args.out_dir, MANIFEST)}")
    if args.check:
        bad = check(args.out_dir, entries)
        for line in bad:
            print(line, file=sys.stderr)
        if bad:
            return 1
        print("every file is loaded or rejected as expected; the base models run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
