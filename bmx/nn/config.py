"""Global binary-layer configuration (BMXNet-v2's ``binary_layer_config``).

Bethge et al., "BMXNet 2" (2019). Layers whose quantizer arguments are ``None`` read
these values when they are constructed; :func:`set_binary_layer_config` changes them
inside a ``with`` block and restores the previous values on exit.
"""
import contextlib
import math

from ..convention import DEFAULT_CLIP_THRESHOLD

APPROXIMATIONS = (None, "weight", "xnor")


def _registry():
    # the quantizer registry is the one list of methods and the bit widths they serve
    # (imported here, not at the top: bmx.nn.quantizers imports this module)
    from . import quantizers
    return quantizers


def check_bits(bits, name="bits"):
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise ValueError(f"{name} must be an integer >= 1, got {bits!r}")
    if bits < 1 or bits > 32:
        raise ValueError(f"{name} must be in [1, 32], got {bits}")
    return bits


def check_threshold(t):
    try:
        t = float(t)
    except (TypeError, ValueError):
        raise ValueError(f"gradient cancel threshold must be a number >= 0, got {t!r}") from None
    if math.isnan(t) or t < 0:
        raise ValueError(f"gradient cancel threshold must be >= 0 (inf disables it), got {t}")
    return t


def check_activation(method, bits_a):
    allowed = _registry().activation_methods(bits_a)
    if method not in allowed:
        raise ValueError(f"unknown activation method {method!r} for {bits_a} bit(s); "
                         f"choose one of {allowed}")
    return method


def check_weight_method(method):
    methods = _registry().weight_methods()
    if method not in methods:
        raise ValueError(f"unknown weight quantization {method!r}; choose one of {methods}")
    return method


def check_approximation(approx):
    if approx == "":
        approx = None
    if approx not in APPROXIMATIONS:
        raise ValueError(f"unknown approximation {approx!r}; choose one of {APPROXIMATIONS}")
    return approx


class BinaryLayerConfig:
    """Defaults read by :mod:`bmx.nn` layers.

    Attributes
    ----------
    bits : int
        Weight bits (1 = binary, sign).
    bits_a : int
        Activation bits (1 = binary, sign).
    grad_cancel : float
        Straight-through gradient-cancelling threshold ``t_clip`` (default 1.3).
    activation : str
        1-bit activation method: ``'det_sign'`` or ``'approx_sign'`` (k bits: ``'round'``).
    weight_quantization : str
        ``'det_sign'`` (1 bit) or ``'dorefa'`` (k bits).
    approximation : str or None
        Scaling used by :func:`activated_conv`: None, ``'weight'`` or ``'xnor'``.
    """

    _FIELDS = ("bits", "bits_a", "grad_cancel", "activation", "weight_quantization",
               "approximation")

    def __init__(self):
        self.bits = 1
        self.bits_a = 1
        self.grad_cancel = DEFAULT_CLIP_THRESHOLD
        self.activation = "det_sign"
        self.weight_quantization = "det_sign"
        self.approximation = None

    def as_dict(self):
        return {f: getattr(self, f) for f in self._FIELDS}

    def __repr__(self):
        return "BinaryLayerConfig(" + ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items()) + ")"


binary_layer_config = BinaryLayerConfig()


@contextlib.contextmanager
def set_binary_layer_config(bits=None, bits_a=None, grad_cancel=None, activation=None,
                            weight_quantization=None, approximation=None):
    """Temporarily change :data:`binary_layer_config`; arguments left ``None`` keep
    their value. The previous values are restored on exit, also after an exception.

    Examples
    --------
    >>> with set_binary_layer_config(grad_cancel=1.0):
    ...     act = QActivation()   # gradient cancelled at |x| > 1.0
    """
    cfg = binary_layer_config
    old = cfg.as_dict()
    new = dict(old)
    if bits is not None:
        new["bits"] = check_bits(bits, "bits")
    if bits_a is not None:
        new["bits_a"] = check_bits(bits_a, "bits_a")
    if grad_cancel is not None:
        new["grad_cancel"] = check_threshold(grad_cancel)
    if activation is not None:
        new["activation"] = activation
    elif new["bits_a"] != 1 and new["activation"] in _registry().activation_methods(1):
        new["activation"] = "round"
    elif new["bits_a"] == 1 and new["activation"] in _registry().activation_methods(2):
        new["activation"] = "det_sign"
    check_activation(new["activation"], new["bits_a"])
    if weight_quantization is not None:
        new["weight_quantization"] = check_weight_method(weight_quantization)
    elif new["bits"] != 1:
        new["weight_quantization"] = "dorefa"
    if approximation is not None:
        new["approximation"] = check_approximation(approximation)
    for k, v in new.items():
        setattr(cfg, k, v)
    try:
        yield cfg
    finally:
        for k, v in old.items():
            setattr(cfg, k, v)
