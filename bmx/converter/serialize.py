"""Serialisation stage: the IR as the FlatBuffers file of ``src/schema/bmx_model.fbs``.

One ``Op`` table per IR op (its options table written by the function of
:data:`OPTION_WRITERS`), one ``Value`` per op output, then the ``Model`` root. Weight
vectors are raw little-endian bytes aligned to :data:`WEIGHT_ALIGN`; binary conv weights
are bit-packed by :func:`pack_binary_weight`. The write order is part of the file's
bytes: keep it when editing.
"""
import importlib

import numpy as np

from .._engine import FORMAT_VERSION, MIN_FORMAT_VERSION  # defined once, in the C++ loader
from ..convention import pack_bits, pack_levels
from .errors import ConversionError

#: FlatBuffers file identifier (bytes 4..8 of every file)
FILE_IDENTIFIER = b"BMX1"
#: byte alignment of weight vectors inside the file (uint64 words, SIMD loads)
WEIGHT_ALIGN = 16


def _fvec(b, arr):
    return b.CreateNumpyVector(np.ascontiguousarray(arr, dtype="<f4").reshape(-1))


def _ivec(b, vals):
    return b.CreateNumpyVector(np.asarray(vals, dtype="<i4").reshape(-1))


def _bytes(b, data, align=WEIGHT_ALIGN):
    data = bytes(data)
    b.StartVector(1, len(data), align)
    b.head = b.head - len(data)
    b.Bytes[b.head:b.head + len(data)] = data
    b.vectorNumElems = len(data)
    return b.EndVector()


def _f32_bytes(b, arr):
    return _bytes(b, np.ascontiguousarray(arr, "<f4").tobytes())


def pack_binary_weight(W, groups=1):
    """Bit-pack a binary conv weight [C_out, C_in/groups, KH, KW] into the file layout
    [C_out, KH, KW, words_for_bits(C_in/groups)] of little-endian uint64 words."""
    Wt = np.transpose(np.asarray(W), (0, 2, 3, 1))  # C_out, KH, KW, C_in/groups
    return pack_bits(Wt, axis=-1).astype("<u8")


def _fb(name):
    """The generated module ``bmx.fb.<name>`` (imported on first use)."""
    return importlib.import_module(f"..fb.{name}", __package__)


def _act(activation):
    A = _fb("Activation").Activation
    return {None: A.None_ if hasattr(A, "None_") else 0, "relu": A.Relu}[activation]


# -- options tables, one writer per IR kind: (builder, table module, attrs) -> offset ------

def _window(b, at):
    """The kernel, stride, pad and dilation vectors of a convolution (written before its
    table starts)."""
    return [_ivec(b, at[x]) for x in ("kernel", "stride", "pad", "dilation")]


def _add_window(table, b, window):
    kern, strd, pad, dil = window
    table.AddKernel(b, kern)
    table.AddStride(b, strd)
    table.AddPad(b, pad)
    table.AddDilation(b, dil)


def _conv(b, Conv2D, at):
    w = _f32_bytes(b, at["W"])
    bias = _f32_bytes(b, at["b"]) if at["b"] is not None else None
    window = _window(b, at)
    Conv2D.Start(b)
    Conv2D.AddOutChannels(b, at["cout"])
    _add_window(Conv2D, b, window)
    Conv2D.AddGroups(b, at["groups"])
    Conv2D.AddWeight(b, w)
    if bias is not None:
        Conv2D.AddBias(b, bias)
    Conv2D.AddActivation(b, _act(at["activation"]))
    return Conv2D.End(b)


def _bconv(b, BinaryConv2D, at):
    w = _bytes(b, pack_binary_weight(at["W"], at["groups"]).tobytes())
    sc, sh = _fvec(b, at["scale"]), _fvec(b, at["shift"])
    window = _window(b, at)
    BinaryConv2D.Start(b)
    BinaryConv2D.AddOutChannels(b, at["cout"])
    BinaryConv2D.AddInChannels(b, at["cin"])
    _add_window(BinaryConv2D, b, window)
    BinaryConv2D.AddGroups(b, at["groups"])
    BinaryConv2D.AddWeightBits(b, w)
    BinaryConv2D.AddScale(b, sc)
    BinaryConv2D.AddShift(b, sh)
    BinaryConv2D.AddActivation(b, _act(at["activation"]))
    return BinaryConv2D.End(b)


def _bdense(b, BinaryDense, at):
    # [units, C*H*W] in NCHW flatten order is the weight of the conv whose kernel covers
    # the whole [C, H, W] input: packed as that conv's filters [units, H, W, words(C)].
    W = np.asarray(at["W"]).reshape((at["units"],) + tuple(at["in_chw"]))
    w = _bytes(b, pack_binary_weight(W).tobytes())
    sc, sh = _fvec(b, at["scale"]), _fvec(b, at["shift"])
    BinaryDense.Start(b)
    BinaryDense.AddUnits(b, at["units"])
    BinaryDense.AddWeightBits(b, w)
    BinaryDense.AddScale(b, sc)
    BinaryDense.AddShift(b, sh)
    BinaryDense.AddActivation(b, _act(at["activation"]))
    return BinaryDense.End(b)


def pack_kbit_weight(L, planes):
    """Bit-plane pack unsigned weight levels [C_out, C_in, KH, KW] into the file layout
    [C_out, planes, KH, KW, words_for_bits(C_in)] of little-endian uint64 words."""
    Lt = np.transpose(np.asarray(L), (0, 2, 3, 1))          # C_out, KH, KW, C_in
    packed = pack_levels(Lt, planes, axis=-1)               # C_out, KH, KW, planes, words
    return np.ascontiguousarray(np.moveaxis(packed, 3, 1)).astype("<u8")


def _kconv(b, KbitConv2D, at):
    w = _bytes(b, pack_kbit_weight(at["L"], at["w_planes"]).tobytes())
    sc, sh = _fvec(b, at["scale"]), _fvec(b, at["shift"])
    window = _window(b, at)
    KbitConv2D.Start(b)
    KbitConv2D.AddOutChannels(b, at["cout"])
    KbitConv2D.AddInChannels(b, at["cin"])
    _add_window(KbitConv2D, b, window)
    KbitConv2D.AddWeightPlanes(b, at["w_planes"])
    KbitConv2D.AddWeightBits(b, w)
    KbitConv2D.AddScale(b, sc)
    KbitConv2D.AddShift(b, sh)
    KbitConv2D.AddActivation(b, _act(at["activation"]))
    return KbitConv2D.End(b)


def _quant(b, Quantize, at):
    sc = _fvec(b, at["scale"]) if at["scale"] is not None else None
    sh = _fvec(b, at["shift"]) if at["shift"] is not None else None
    Quantize.Start(b)
    if sc is not None:
        Quantize.AddScale(b, sc)
        Quantize.AddShift(b, sh)
    return Quantize.End(b)


def _sign(b, Sign, at):
    sc = _fvec(b, at["scale"]) if at["scale"] is not None else None
    sh = _fvec(b, at["shift"]) if at["shift"] is not None else None
    Sign.Start(b)
    if sc is not None:
        Sign.AddScale(b, sc)
        Sign.AddShift(b, sh)
    return Sign.End(b)


def _affine(b, Affine, at):
    sc, sh = _fvec(b, at["scale"]), _fvec(b, at["shift"])
    Affine.Start(b)
    Affine.AddScale(b, sc)
    Affine.AddShift(b, sh)
    Affine.AddActivation(b, _act(at["activation"]))
    return Affine.End(b)


def _pool(b, Pool2D, at):
    PoolType = _fb("PoolType").PoolType
    kern, strd, pad = (_ivec(b, at[x]) for x in ("kernel", "stride", "pad"))
    Pool2D.Start(b)
    Pool2D.AddType(b, PoolType.Max if at["type"] == "max" else PoolType.Avg)
    Pool2D.AddKernel(b, kern)
    Pool2D.AddStride(b, strd)
    Pool2D.AddPad(b, pad)
    Pool2D.AddCountIncludePad(b, at["count_include_pad"])
    Pool2D.AddGlobal_(b, at["glob"])
    if at["ceil_mode"]:  # written only when used: older readers reject such files
        Pool2D.AddCeilMode(b, True)
    return Pool2D.End(b)


def _shuffle(b, ChannelShuffle, at):
    ChannelShuffle.Start(b)
    ChannelShuffle.AddGroups(b, at["groups"])
    return ChannelShuffle.End(b)


def _dense(b, Dense, at):
    w = _f32_bytes(b, at["W"])
    bias = _f32_bytes(b, at["b"]) if at["b"] is not None else None
    Dense.Start(b)
    Dense.AddUnits(b, at["units"])
    Dense.AddWeight(b, w)
    if bias is not None:
        Dense.AddBias(b, bias)
    return Dense.End(b)


def _no_fields(b, table, at):
    table.Start(b)
    return table.End(b)


#: IR kind -> (options table = ``OpOptions`` member, writer)
OPTION_WRITERS = {
    "conv": ("Conv2D", _conv),
    "bconv": ("BinaryConv2D", _bconv),
    "bdense": ("BinaryDense", _bdense),
    "sign": ("Sign", _sign),
    "quant": ("Quantize", _quant),
    "kconv": ("KbitConv2D", _kconv),
    "affine": ("Affine", _affine),
    "relu": ("Relu", _no_fields),
    "pool": ("Pool2D", _pool),
    "concat": ("Concat", _no_fields),
    "add": ("Add", _no_fields),
    "add_last": ("AddToLastChannels", _no_fields),
    "shuffle": ("ChannelShuffle", _shuffle),
    "dense": ("Dense", _dense),
    "flatten": ("Flatten", _no_fields),
    "meanabs": ("MeanAbsChannels", _no_fields),
    "mul": ("Mul", _no_fields),
}


# -- the file ------------------------------------------------------------------------------

def _op(b, op, k, vidx):
    """The ``Op`` table of IR op ``k``: its options, name, input and output value indices."""
    Op = _fb("Op")
    if op.kind not in OPTION_WRITERS:  # pragma: no cover - the IR only holds these kinds
        raise ConversionError(f"internal: no serializer for {op.kind}")
    table, write = OPTION_WRITERS[op.kind]
    opt = write(b, _fb(table), op.attrs)
    ot = getattr(_fb("OpOptions").OpOptions, table)
    name = b.CreateString(op.name)
    ins = _ivec(b, [vidx[i] for i in op.inputs])
    outs = _ivec(b, [vidx[k]])
    Op.Start(b)
    Op.AddName(b, name)
    Op.AddOptionsType(b, ot)
    Op.AddOptions(b, opt)
    Op.AddInputs(b, ins)
    Op.AddOutputs(b, outs)
    return Op.End(b)


def _value(b, op):
    """The ``Value`` table of an op's output: name, shape with N = 1, kind (and planes)."""
    Value, ValueKind = _fb("Value"), _fb("ValueKind").ValueKind
    name = b.CreateString(op.name)
    shp = _ivec(b, (1,) + tuple(op.shape[1:]))
    Value.Start(b)
    Value.AddName(b, name)
    Value.AddShape(b, shp)
    kind = {"sign": ValueKind.Bits, "quant": ValueKind.Levels}.get(op.kind, ValueKind.Float)
    Value.AddKind(b, kind)
    if op.kind == "quant":  # written only for Levels: older readers reject the field's kind
        Value.AddPlanes(b, op.attrs["bits"])
    return Value.End(b)


def format_version(ir):
    """The lowest format version that expresses ``ir``: 3 for k-bit activations or
    weights (Quantize, KbitConv2D), 2 for a binary dense layer, XNOR scaling (mean |x|
    over channels, a product) or a 2-D binarized value, else 1, so that files without
    them stay readable by older readers (``MIN_FORMAT_VERSION`` .. ``FORMAT_VERSION`` of
    ``bmx.engine``)."""
    version = MIN_FORMAT_VERSION
    for k in ir.order:
        op = ir.ops[k]
        if op.kind in ("quant", "kconv"):
            version = max(version, 3)
        elif op.kind in ("bdense", "meanabs", "mul") or (op.kind == "sign" and len(op.shape) != 4):
            version = max(version, 2)
    return version


def _table_vec(b, offsets, start):
    start(b, len(offsets))
    for o in reversed(offsets):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def _serialize(ir, num_classes, producer, mean, std):
    """The model file of ``ir`` (bytes)."""
    import flatbuffers
    Model = _fb("Model")
    b = flatbuffers.Builder(1 << 20)
    vidx = {k: j for j, k in enumerate(ir.order)}
    op_offsets = [_op(b, ir.ops[k], k, vidx) for k in ir.order if ir.ops[k].kind != "input"]
    val_offsets = [_value(b, ir.ops[k]) for k in ir.order]
    ops_vec = _table_vec(b, op_offsets, Model.StartOpsVector)
    vals_vec = _table_vec(b, val_offsets, Model.StartValuesVector)
    ins_vec = _ivec(b, [vidx[ir.input]])
    outs_vec = _ivec(b, [vidx[ir.output]])
    prod = b.CreateString(producer)
    mean_vec = _fvec(b, mean) if mean is not None else None
    std_vec = _fvec(b, std) if std is not None else None
    Model.Start(b)
    Model.AddVersion(b, format_version(ir))
    Model.AddProducer(b, prod)
    Model.AddValues(b, vals_vec)
    Model.AddInputs(b, ins_vec)
    Model.AddOutputs(b, outs_vec)
    Model.AddOps(b, ops_vec)
    Model.AddNumClasses(b, int(num_classes))
    if mean_vec is not None:
        Model.AddMean(b, mean_vec)
    if std_vec is not None:
        Model.AddStd(b, std_vec)
    root = Model.End(b)
    b.Finish(root, file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())
