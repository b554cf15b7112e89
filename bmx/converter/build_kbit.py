"""Build stage, k-bit blocks (Zhou et al., DoReFa-Net, 2016; Bethge et al., BMXNet 2,
2019): a QActivation with k-bit activations -> ``quant``, a QConv2D that reads k-bit
activations or has k-bit (DoReFa) weights -> ``kconv``.

As for the 1-bit blocks, nothing is taken on trust: the activation is run in MXNet on a
probe and must equal ``round(clip(x, 0, 1) * n) / n`` exactly; the weight path is run on
the real weights and must give levels ``2 L / n - 1`` (or ``c * sign(W)`` for 1-bit
weights); the output must be an affine map per channel of the convolution.
"""
import numpy as np

from ..convention import round_half_away
from .errors import ConversionError
from .ir import _Op

#: most bit planes of a k-bit value or weight (core/kbgemm: kMaxKbitPlanes)
MAX_PLANES = 4


def levels_of(x, bits):
    """The activation quantizer's integer levels ``round(clip(x, 0, 1) * n)`` (float32)."""
    n = np.float32(2 ** bits - 1)
    return round_half_away(np.clip(np.asarray(x, np.float32), 0, 1) * n)


def kbit_probe(shape):
    """A probe for k-bit activations: values around [0, 1], exact ties of 2-bit rounding,
    both zeros, the clip borders."""
    probe = np.random.RandomState(3).uniform(-0.5, 1.5, size=shape).astype(np.float32)
    special = np.array([0.0, -0.0, 1.0, 0.5, 1 / 6, 0.5 / 15, 1.0 + 1e-7, -1e-38, 5 / 6, 2.0],
                       np.float32)
    flat = probe.reshape(-1)
    flat[:min(flat.size, special.size)] = special[:flat.size]
    return probe


def match_activation_bits(got, probe, bits_options):
    """The first ``k`` of ``bits_options`` whose quantizer gives exactly ``got`` on
    ``probe``, or None."""
    for k in bits_options:
        n = np.float32(2 ** k - 1)
        if np.array_equal(got, levels_of(probe, k) / n):
            return k
    return None


def quant_op(builder, name, data, shape, bits):
    if not 1 <= bits <= MAX_PLANES:
        raise ConversionError(f"QActivation {name!r} has {bits}-bit activations: the engine "
                              f"runs 1 to {MAX_PLANES} bits")
    return _Op("quant", name, [builder.ref(data)], shape, bits=bits, scale=None, shift=None)


def weight_levels(name, W, wq, bits_options):
    """``(levels, planes)`` with ``wq == 2 * levels / (2^planes - 1) - 1`` for the first
    planes count of ``bits_options`` that fits (DoReFa weights), to float32 rounding."""
    wq = np.asarray(wq, np.float64)
    for p in bits_options:
        if p < 2 or p > MAX_PLANES:
            continue
        n = 2 ** p - 1
        L = np.clip(np.floor((wq + 1) * n / 2 + 0.5), 0, n)
        # MXNet computes 2 * round(.) / n - 1 in float32: ~1e-7
        if np.abs(2 * L / n - 1 - wq).max(initial=0) <= 1e-6:
            return L.astype(np.int64), p
    raise ConversionError(f"QConv2D {name!r}: its weights are neither c * sign(W) nor DoReFa "
                          f"levels 2 L / (2^k - 1) - 1 with k in 2..{MAX_PLANES}; cannot convert")


def kconv_op(builder, name, data, out_shape, geometry, W_levels, w_planes, scale, shift,
             activation):
    """The ``kconv`` IR op (groups 1): weights as unsigned levels [C_out, C_in, KH, KW]
    (1 plane: bit 1 iff w < 0)."""
    kernel, stride, pad, dilation, groups, cout = geometry
    if groups != 1:
        raise ConversionError(f"QConv2D {name!r}: k-bit convolutions with groups = {groups} "
                              "are not supported (groups 1 only)")
    return _Op("kconv", name, [builder.ref(data)], out_shape, L=W_levels, w_planes=w_planes,
               cin=W_levels.shape[1], cout=cout, kernel=kernel, stride=stride, pad=pad,
               dilation=dilation, scale=scale, shift=shift, activation=activation)
