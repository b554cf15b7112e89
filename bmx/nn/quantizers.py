"""Quantizers of bmx, registered by name (Larq style).

Bethge et al., "BMXNet 2" (2019); Courbariaux et al. (2016) for the straight-through
estimator (STE); Liu et al., "Bi-Real Net" (2018) for ``approx_sign``; Zhou et al.,
"DoReFa-Net" (2016) for ``dorefa``.

Each quantizer is ``fn(F, x, **params)`` built from stock MXNet operators, so it
hybridizes and exports. The forward value is computed exactly (``BlockGrad(q) +
(s - BlockGrad(s))`` adds an exact zero), the gradient is that of the surrogate ``s``.
"""
from .config import check_bits, check_threshold

_ACTIVATION_QUANTIZERS = {}  # name -> (fn, one_bit)
_WEIGHT_QUANTIZERS = {}


def register_activation_quantizer(name, one_bit):
    """Register ``fn(F, x, **params)`` as activation quantizer ``name``; ``one_bit``: it
    serves 1-bit activations (True) or k-bit ones (False)."""
    def deco(fn):
        _ACTIVATION_QUANTIZERS[name] = (fn, bool(one_bit))
        return fn
    return deco


def register_weight_quantizer(name, one_bit):
    """Register a weight quantizer; ``one_bit``: 1-bit only (True) or any bit width (False)."""
    def deco(fn):
        _WEIGHT_QUANTIZERS[name] = (fn, bool(one_bit))
        return fn
    return deco


def activation_methods(bits):
    """Names of the activation quantizers that serve ``bits``-bit activations."""
    return tuple(n for n, (_, one) in _ACTIVATION_QUANTIZERS.items() if one == (bits == 1))


def weight_methods():
    """Names of the registered weight quantizers."""
    return tuple(_WEIGHT_QUANTIZERS)


def weight_method_bits_ok(name, bits):
    """Whether weight quantizer ``name`` can produce ``bits``-bit weights."""
    return bits == 1 or not _WEIGHT_QUANTIZERS[name][1]


def get_activation_quantizer(name):
    try:
        return _ACTIVATION_QUANTIZERS[name][0]
    except KeyError:
        raise ValueError(f"unknown activation quantizer {name!r}; registered: "
                         f"{sorted(_ACTIVATION_QUANTIZERS)}") from None


def get_weight_quantizer(name):
    try:
        return _WEIGHT_QUANTIZERS[name][0]
    except KeyError:
        raise ValueError(f"unknown weight quantizer {name!r}; registered: "
                         f"{sorted(_WEIGHT_QUANTIZERS)}") from None


def _ste(F, value, surrogate):
    """Forward ``value`` exactly, backward the gradient of ``surrogate``."""
    return F.BlockGrad(value) + (surrogate - F.BlockGrad(surrogate))


def _sign(F, x):
    # sign(0) = +1 (MXNet's F.sign gives 0 at 0): 2 * (x >= 0) - 1
    return 2 * (x >= 0) - 1


def _masked_identity(F, x, threshold):
    """Surrogate whose gradient is ``1[|x| <= threshold]`` (MXNet's clip is inclusive)."""
    if threshold == float("inf"):
        return x
    return F.clip(x, -threshold, threshold)


@register_activation_quantizer("det_sign", one_bit=True)
def det_sign(F, x, threshold=1.3):
    r"""Deterministic sign with gradient cancelling.

    Forward: :math:`q(x) = +1` if :math:`x \ge 0` else :math:`-1` (sign(0) = +1).
    Backward (STE): :math:`\partial q / \partial x = 1_{|x| \le t}`.
    """
    threshold = check_threshold(threshold)
    return _ste(F, _sign(F, x), _masked_identity(F, x, threshold))


@register_activation_quantizer("approx_sign", one_bit=True)
def approx_sign(F, x, threshold=1.3):
    r"""Sign with Bi-Real Net's piecewise-polynomial gradient.

    Forward: sign(x) with sign(0) = +1.
    Backward: :math:`(2 - 2|x|) \cdot 1_{|x| \le 1} \cdot 1_{|x| \le t}`.
    """
    threshold = check_threshold(threshold)
    xm = _masked_identity(F, x, threshold)
    g = F.clip(xm, -1, 1)
    surrogate = 2 * g - g * F.abs(g)
    return _ste(F, _sign(F, x), surrogate)


@register_activation_quantizer("round", one_bit=False)
def round_quantize(F, x, bits=2):
    r"""k-bit uniform activation quantizer.

    Forward: :math:`q(x) = \mathrm{round}((2^k - 1)\,\mathrm{clip}(x, 0, 1)) / (2^k - 1)`,
    exactly :math:`2^k` levels in [0, 1].
    Backward (STE): :math:`1_{0 \le x \le 1}`.
    """
    bits = check_bits(bits)
    n = float(2 ** bits - 1)
    c = F.clip(x, 0, 1)
    return _ste(F, F.round(c * n) / n, c)


@register_weight_quantizer("det_sign", one_bit=True)
def weight_det_sign(F, w, bits=1):
    r"""Binary weights. Forward: sign(w), sign(0) = +1. Backward: identity (plain STE)."""
    return _ste(F, _sign(F, w), w)


@register_weight_quantizer("dorefa", one_bit=False)
def weight_dorefa(F, w, bits=2):
    r"""DoReFa-Net k-bit weights.

    Forward: :math:`w_t = \tanh(w) / (2 \max|\tanh(w)|) + 1/2`,
    :math:`q = 2\,\mathrm{round}((2^k-1) w_t) / (2^k-1) - 1`: :math:`2^k` levels in [-1, 1].
    Backward: STE through the rounding (gradient of :math:`2 w_t - 1`).
    """
    bits = check_bits(bits)
    if bits == 1:
        return weight_det_sign(F, w)
    n = float(2 ** bits - 1)
    t = F.tanh(w)
    m = F.max(F.abs(t))  # shape (1,); the epsilon keeps zero weights finite
    # elemwise_div (not broadcast_div) so that the weight's shape can be inferred backwards
    # from the convolution under deferred initialisation (in_channels not given)
    wt = F.elemwise_div(t, F.broadcast_add(F.zeros_like(t), 2 * m + 1e-12)) + 0.5
    return _ste(F, 2 * F.round(wt * n) / n - 1, 2 * wt - 1)
