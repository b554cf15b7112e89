"""bmx bit conventions (Python mirror of ``src/include/bmx/convention.h``).

Bethge et al., "BMXNet 2" (2019) / Rastegari et al., "XNOR-Net" (2016): a binary
layer maps a real value to +-1 with ``sign(0) = +1``. For xnor-popcount arithmetic each
+-1 value is one bit:

* ``bit = 1`` iff ``value < 0`` (-1 -> 1, +1 -> 0, 0 -> 0, NaN -> 0);
* element ``i`` of the packed axis is bit ``i % 64`` of 64-bit word ``i // 64`` (LSB first);
* bits past the true length ``K`` in the last word are 0 in both operands, so they
  cancel in xor;
* the dot product of two +-1 vectors of length ``K`` is ``K - 2 * popcount(a ^ b)``;
  BMXNet's 1-bit layer output ``(dot + K) / 2`` is ``K - popcount(a ^ b)``;
* binary convolutions pad with -1, which is an all-ones word after packing.

k-bit values (model format 3) are unsigned levels ``L`` stored as bit planes: plane ``i``
holds bit ``i`` of ``L``, packed along channels as above. Activations (``Levels``):
``value = L / (2^k - 1)``; weights of ``p > 1`` planes (DoReFa): ``w = 2 L / (2^p - 1) - 1``;
1-plane weights keep the sign convention (bit 1 iff w < 0).

Everything here is plain numpy and serves as the independent oracle of the tests.
"""
import numpy as np

WORD_BITS = 64
#: default gradient-cancelling (clip) threshold; the poster: 1.25-1.5 beat 1.0
DEFAULT_CLIP_THRESHOLD = 1.3
#: value used to pad the input of binary convolutions
PAD_VALUE = -1.0

__all__ = ["WORD_BITS", "DEFAULT_CLIP_THRESHOLD", "PAD_VALUE", "sign", "to_bits",
           "words_for_bits", "pack_bits", "unpack_bits", "xnor_dot", "match_count",
           "round_half_away", "pack_levels", "unpack_levels"]


def sign(x):
    """Return sign(x) as float32 with sign(0) = +1 (and NaN -> +1)."""
    x = np.asarray(x)
    return np.where(x < 0, -1.0, 1.0).astype(np.float32)


def to_bits(x):
    """Return the bit of each value: 1 iff the value is < 0 (uint8)."""
    return (np.asarray(x) < 0).astype(np.uint8)


def words_for_bits(k):
    """Number of 64-bit words that hold ``k`` bits."""
    return (int(k) + WORD_BITS - 1) // WORD_BITS


def pack_bits(x, axis=-1):
    """Pack ``x`` along ``axis`` into uint64 words (reference implementation).

    The packed axis becomes the last axis, of length ``words_for_bits(x.shape[axis])``.
    """
    x = np.moveaxis(np.asarray(x), axis, -1)
    k = x.shape[-1]
    nw = words_for_bits(k)
    bits = np.zeros(x.shape[:-1] + (nw * WORD_BITS,), dtype=np.uint64)
    bits[..., :k] = to_bits(x)
    bits = bits.reshape(x.shape[:-1] + (nw, WORD_BITS))
    weights = np.left_shift(np.uint64(1), np.arange(WORD_BITS, dtype=np.uint64))
    return (bits * weights).sum(axis=-1, dtype=np.uint64)


def unpack_bits(words, k):
    """Inverse of :func:`pack_bits` along the last axis: return +-1 float32 of length k."""
    words = np.asarray(words, dtype=np.uint64)
    shifts = np.arange(WORD_BITS, dtype=np.uint64)
    bits = (words[..., None] >> shifts) & np.uint64(1)
    bits = bits.reshape(words.shape[:-1] + (-1,))[..., :k]
    return np.where(bits == 1, -1.0, 1.0).astype(np.float32)


def _popcount64(v):
    v = np.asarray(v, dtype=np.uint64)
    return np.unpackbits(v.view(np.uint8), axis=-1).reshape(v.shape + (64,)).sum(-1)


def xnor_dot(a_words, b_words, k):
    """Dot product of the +-1 vectors held in packed rows: ``K - 2 * popcount(a ^ b)``."""
    pc = _popcount64(np.bitwise_xor(a_words, b_words)).sum(axis=-1)
    return (int(k) - 2 * pc).astype(np.int64)


def match_count(a_words, b_words, k):
    """BMXNet's offset output ``(dot + K) / 2 = K - popcount(a ^ b)``."""
    pc = _popcount64(np.bitwise_xor(a_words, b_words)).sum(axis=-1)
    return (int(k) - pc).astype(np.int64)


def round_half_away(v):
    """Round float32 ``v >= 0`` to the nearest integer, halves up (MXNet's ``round``,
    C's ``roundf``; numpy's ``round`` rounds halves to even). ``v - floor(v)`` is exact."""
    v = np.asarray(v, np.float32)
    f = np.floor(v)
    return (f + (v - f >= np.float32(0.5))).astype(np.float32)


def pack_levels(levels, planes, axis=-1):
    """Pack unsigned integer levels along ``axis`` into ``planes`` bit planes: the result
    has the packed axis last, preceded by a planes axis (``[..., planes, words]``)."""
    L = np.moveaxis(np.asarray(levels, np.int64), axis, -1)
    if L.size and (L.min() < 0 or L.max() >= 2 ** planes):
        raise ValueError(f"levels must lie in [0, {2 ** planes - 1}] for {planes} planes")
    # bit i of L as a value < 0 for pack_bits (bit 1 iff value < 0)
    return np.stack([pack_bits(-((L >> i) & 1), axis=-1) for i in range(planes)], axis=-2)


def unpack_levels(words, k):
    """Inverse of :func:`pack_levels`: ``[..., planes, words]`` -> int64 levels ``[..., k]``."""
    words = np.asarray(words, np.uint64)
    bits = (unpack_bits(words, k) < 0).astype(np.int64)  # [..., planes, k]
    weights = (1 << np.arange(words.shape[-2], dtype=np.int64)).reshape(-1, 1)
    return (bits * weights).sum(axis=-2)
