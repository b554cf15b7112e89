"""Gluon binary and quantized layers with BMXNet-v2 semantics.

Bethge et al., "BMXNet 2: An Open Source Framework for Low-bit Networks" (2019) and
"Back to Simplicity: How to Train Accurate BNNs from Scratch?" (2019).

A binary convolution is ``QActivation -> QConv2D``: the input is binarized with
``sign`` (sign(0) = +1, gradient cancelled at ``|x| > t_clip``), padded with the
constant -1, convolved with ``sign(W)`` (identity STE) without padding, and the 1-bit
output is the xnor-popcount match count ``(conv + K) / 2`` with ``K = C_in/groups*kh*kw``.
"""
import numpy as np
from mxnet.gluon import nn

from . import quantizers
from .config import (binary_layer_config, check_activation, check_approximation,
                     check_bits, check_threshold, check_weight_method)

__all__ = ["QActivation", "QConv2D", "QDense", "BinaryConvolution", "activated_conv",
           "set_binary_wd_mult"]

SCALINGS = (None, "weight", "xnor")


def _pair(v, name):
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    v = tuple(int(i) for i in v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v!r}")
    return v


def _half_filter_sizes(F, weight):
    """``K / 2`` per output channel (``K`` = elements of one filter), shape (channels,),
    computed from the weight itself so that it is right under deferred shape inference
    and hybridization."""
    return F.sum(F.ones_like(weight), axis=0, exclude=True) * 0.5


class QActivation(nn.HybridBlock):
    r"""Quantized activation (Bethge et al., BMXNet 2, 2019).

    1 bit, ``det_sign``: forward ``sign(x)`` with sign(0) = +1; backward (STE)
    ``grad * 1[|x| <= t]``. ``approx_sign``: Bi-Real Net's gradient ``2 - 2|x|``, masked
    by the same threshold. k bits, ``round``: clip to [0, 1] and round to ``2^k`` levels
    (STE inside [0, 1]).

    Parameters
    ----------
    bits : int, optional
        Activation bits; default ``binary_layer_config.bits_a``.
    gradient_cancel_threshold : float, optional
        ``t_clip``; default ``binary_layer_config.grad_cancel`` (1.3). ``inf`` disables it.
    method : str, optional
        ``'det_sign'``, ``'approx_sign'`` (1 bit) or ``'round'`` (k bits).
    """

    def __init__(self, bits=None, gradient_cancel_threshold=None, method=None, **kwargs):
        super().__init__(**kwargs)
        cfg = binary_layer_config
        self.bits = check_bits(cfg.bits_a if bits is None else bits, "bits")
        self.threshold = check_threshold(cfg.grad_cancel if gradient_cancel_threshold is None
                                         else gradient_cancel_threshold)
        if method is None:
            method = cfg.activation
            if method not in quantizers.activation_methods(self.bits):
                # the configured method serves the other bit width: that width's default
                method = "det_sign" if self.bits == 1 else "round"
        self.method = check_activation(method, self.bits)
        self._fn = quantizers.get_activation_quantizer(self.method)

    def hybrid_forward(self, F, x):
        if self.bits == 1:
            return self._fn(F, x, threshold=self.threshold)
        return self._fn(F, x, bits=self.bits)

    def __repr__(self):
        return (f"{self.__class__.__name__}(bits={self.bits}, method={self.method!r}, "
                f"gradient_cancel_threshold={self.threshold})")


def _weight_quant(bits, weight_quantization):
    cfg = binary_layer_config
    bits = check_bits(cfg.bits if bits is None else bits, "bits")
    if weight_quantization is None:
        weight_quantization = "det_sign" if bits == 1 else (
            cfg.weight_quantization if cfg.weight_quantization != "det_sign" else "dorefa")
    method = check_weight_method(weight_quantization)
    if not quantizers.weight_method_bits_ok(method, bits):
        raise ValueError(f"weight quantization {method!r} is 1-bit; got bits={bits} "
                         "(use 'dorefa' for k-bit weights)")
    return bits, method


class QConv2D(nn.Conv2D):
    r"""Quantized 2-D convolution (Bethge et al., BMXNet 2, 2019).

    Same signature as :class:`mxnet.gluon.nn.Conv2D` (``use_bias`` defaults to False:
    binary convolutions have no bias) plus the quantizer arguments.

    Forward (1 bit): ``x`` (already binarized by a :class:`QActivation`) is padded with
    ``pad_value`` (-1), convolved without padding with ``sign(W)``; the output is
    ``(conv + K) / 2`` with ``K = C_in/groups * kh * kw`` (the xnor-popcount match count,
    an integer in [0, K]) unless ``no_offset``. Backward: plain STE for the weights.
    k bits: DoReFa weights, plain convolution output.

    Parameters
    ----------
    bits : int, optional
        Weight bits; default ``binary_layer_config.bits``.
    pad_value : float
        Constant used for padding (-1: free after bit-packing).
    no_offset : bool
        Return the +-1 dot product ``conv`` instead of ``(conv + K) / 2``.
    scaling : {None, 'weight', 'xnor'}
        ``'weight'``: output ``conv * mean|W|`` per output channel (no offset);
        ``'xnor'``: XNOR-Net, also scaled by the input magnitude ``K = box(mean_c |x|)``;
        the layer then receives the real-valued input and binarizes it itself.
    weight_quantization : {None, 'det_sign', 'dorefa'}
    gradient_cancel_threshold : float, optional
        Threshold of the input binarization of ``scaling='xnor'``.
    """

    def __init__(self, channels, kernel_size, strides=(1, 1), padding=(0, 0), dilation=(1, 1),
                 groups=1, layout='NCHW', activation=None, use_bias=False,
                 weight_initializer=None, bias_initializer='zeros', in_channels=0,
                 bits=None, pad_value=-1, no_offset=False, scaling=None,
                 weight_quantization=None, gradient_cancel_threshold=None, **kwargs):
        if layout != "NCHW":
            raise ValueError(f"QConv2D supports layout 'NCHW' only, got {layout!r}")
        if scaling not in SCALINGS:
            raise ValueError(f"unknown scaling {scaling!r}; choose one of {SCALINGS}")
        self.bits, self.weight_method = _weight_quant(bits, weight_quantization)
        if use_bias and self.bits == 1:
            raise ValueError("binary (1-bit) QConv2D has no bias: use_bias must be False")
        self.pad_value = float(pad_value)
        self.no_offset = bool(no_offset)
        self.scaling = scaling
        self._qpad = _pair(padding, "padding")
        self._qkernel = _pair(kernel_size, "kernel_size")
        self._xnor_threshold = check_threshold(binary_layer_config.grad_cancel
                                               if gradient_cancel_threshold is None
                                               else gradient_cancel_threshold)
        if scaling == "xnor" and _pair(dilation, "dilation") != (1, 1):
            raise ValueError("scaling='xnor' supports dilation 1 only")
        super().__init__(channels, kernel_size, strides=strides, padding=(0, 0),
                         dilation=dilation, groups=groups, layout=layout, activation=activation,
                         use_bias=use_bias, weight_initializer=weight_initializer,
                         bias_initializer=bias_initializer, in_channels=in_channels, **kwargs)
        self._wquant = quantizers.get_weight_quantizer(self.weight_method)
        if self.bits == 1:
            self.weight.wd_mult = 0.0

    def hybrid_forward(self, F, x, weight, bias=None):
        x_real = x
        if self.scaling == "xnor":
            x = quantizers.det_sign(F, x, threshold=self._xnor_threshold)
        ph, pw = self._qpad
        if ph or pw:
            x = F.pad(x, mode="constant", constant_value=self.pad_value,
                      pad_width=(0, 0, 0, 0, ph, ph, pw, pw))
        wq = self._wquant(F, weight, bits=self.bits)
        if self.bits == 1 and self.scaling is None and not self.no_offset:
            # (conv(x, sign W) + K) / 2 computed as conv(x, sign(W) / 2) + K / 2: the same
            # numbers (halving +-1 is exact, sums of +-1/2 are exact below 2^23), but the
            # offset rides in the convolution's bias instead of two passes over the output.
            y = F.Convolution(x, 0.5 * wq, _half_filter_sizes(F, weight), name="fwd",
                              **dict(self._kwargs, no_bias=False))
        elif bias is None:
            y = F.Convolution(x, wq, name="fwd", **self._kwargs)
        else:
            y = F.Convolution(x, wq, bias, name="fwd", **self._kwargs)
        if self.scaling is not None:
            alpha = F.mean(F.abs(weight), axis=(1, 2, 3)).reshape((1, -1, 1, 1))
            y = F.broadcast_mul(y, alpha)
            if self.scaling == "xnor":
                y = F.broadcast_mul(y, self._input_scale(F, x_real))
        if self.act is not None:
            y = self.act(y)
        return y

    def _input_scale(self, F, x):
        # XNOR-Net's K: mean over channels of |x|, averaged over each kernel window
        # (|x| zero-padded, so border windows see less magnitude, as in the paper).
        a = F.mean(F.abs(x), axis=1, keepdims=True)
        return F.Pooling(a, kernel=self._qkernel, stride=self._kwargs["stride"],
                         pad=self._qpad, pool_type="avg", count_include_pad=True)

    def __repr__(self):
        return (f"{self.__class__.__name__}({self._in_channels or None} -> {self._channels}, "
                f"kernel_size={self._kwargs['kernel']}, stride={self._kwargs['stride']}, "
                f"padding={self._qpad}, dilation={self._kwargs['dilate']}, "
                f"groups={self._kwargs['num_group']}, bits={self.bits}, "
                f"pad_value={self.pad_value}, scaling={self.scaling})")


class QDense(nn.Dense):
    r"""Quantized fully connected layer (Bethge et al., BMXNet 2, 2019).

    Same signature as :class:`mxnet.gluon.nn.Dense` (``use_bias`` defaults to False) plus
    the quantizer arguments. Forward (1 bit): ``(x . sign(W) + K) / 2`` with ``K`` the
    input length, unless ``no_offset``; backward: plain STE for the weights. The input
    is expected to be binarized already (by a :class:`QActivation`).
    """

    def __init__(self, units, activation=None, use_bias=False, flatten=True, dtype='float32',
                 weight_initializer=None, bias_initializer='zeros', in_units=0,
                 bits=None, no_offset=False, weight_quantization=None, **kwargs):
        self.bits, self.weight_method = _weight_quant(bits, weight_quantization)
        if use_bias and self.bits == 1:
            raise ValueError("binary (1-bit) QDense has no bias: use_bias must be False")
        self.no_offset = bool(no_offset)
        super().__init__(units, activation=activation, use_bias=use_bias, flatten=flatten,
                         dtype=dtype, weight_initializer=weight_initializer,
                         bias_initializer=bias_initializer, in_units=in_units, **kwargs)
        self._wquant = quantizers.get_weight_quantizer(self.weight_method)
        if self.bits == 1:
            self.weight.wd_mult = 0.0

    def hybrid_forward(self, F, x, weight, bias=None):
        wq = self._wquant(F, weight, bits=self.bits)
        if self.bits == 1 and not self.no_offset:
            # (x . sign W + K) / 2 as x . (sign(W) / 2) + K / 2 (exact; see QConv2D)
            y = F.FullyConnected(x, 0.5 * wq, _half_filter_sizes(F, weight), no_bias=False,
                                 num_hidden=self._units, flatten=self._flatten, name="fwd")
        else:
            y = F.FullyConnected(x, wq, bias, no_bias=bias is None, num_hidden=self._units,
                                 flatten=self._flatten, name="fwd")
        if self.act is not None:
            y = self.act(y)
        return y


class BinaryConvolution(nn.HybridBlock):
    """``QActivation -> QConv2D`` (Bethge et al., BMXNet 2, 2019): the binary convolution.

    Padding is applied with -1 on the binarized input (free after bit-packing).
    Remaining keyword arguments go to :class:`QConv2D`.
    """

    def __init__(self, channels, kernel_size=3, stride=1, padding=0, dilation=1, groups=1,
                 in_channels=0, bits=None, bits_a=None, activation_method=None,
                 gradient_cancel_threshold=None, prefix=None, params=None, **conv_kwargs):
        super().__init__(prefix=prefix, params=params)
        with self.name_scope():
            self.qact = QActivation(bits=bits_a, gradient_cancel_threshold=gradient_cancel_threshold,
                                    method=activation_method)
            self.qconv = QConv2D(channels, kernel_size, strides=stride, padding=padding,
                                 dilation=dilation, groups=groups, in_channels=in_channels,
                                 bits=bits, **conv_kwargs)

    def hybrid_forward(self, F, x):
        return self.qconv(self.qact(x))


class _XnorConvolution(nn.HybridBlock):
    """XNOR-Net variant: the real input goes to QConv2D, which binarizes it after
    computing the input scale."""

    def __init__(self, channels, kernel_size=3, stride=1, padding=0, dilation=1, groups=1,
                 in_channels=0, bits=None, gradient_cancel_threshold=None, prefix=None,
                 params=None, **conv_kwargs):
        super().__init__(prefix=prefix, params=params)
        with self.name_scope():
            self.qconv = QConv2D(channels, kernel_size, strides=stride, padding=padding,
                                 dilation=dilation, groups=groups, in_channels=in_channels,
                                 bits=bits, scaling="xnor",
                                 gradient_cancel_threshold=gradient_cancel_threshold,
                                 **conv_kwargs)

    def hybrid_forward(self, F, x):
        return self.qconv(x)


def activated_conv(channels, kernel_size=3, stride=1, padding=0, dilation=1, groups=1,
                   in_channels=0, approximation=None, **kwargs):
    """Build the binary convolution chosen by ``binary_layer_config.approximation``
    (or ``approximation``): None -> :class:`BinaryConvolution`; ``'weight'`` -> the
    same with per-channel weight scaling; ``'xnor'`` -> XNOR-Net weight and input scaling.
    """
    approx = check_approximation(binary_layer_config.approximation if approximation is None
                                 else approximation)
    common = dict(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                  groups=groups, in_channels=in_channels)
    if approx == "xnor":
        return _XnorConvolution(channels, **common, **kwargs)
    if approx == "weight":
        return BinaryConvolution(channels, scaling="weight", **common, **kwargs)
    return BinaryConvolution(channels, **common, **kwargs)


def set_binary_wd_mult(block):
    """Set ``wd_mult = 0`` on every BatchNorm parameter and every 1-bit weight of
    ``block`` (the papers' recipe: weight decay only on full-precision weights).
    Returns the names of the parameters changed."""
    changed = []
    for name, p in block.collect_params().items():
        is_bn = any(name.endswith(s) for s in ("_gamma", "_beta", "_running_mean", "_running_var"))
        if is_bn:
            p.wd_mult = 0.0
            changed.append(name)
    for child in _walk(block):
        if isinstance(child, (QConv2D, QDense)) and child.bits == 1:
            child.weight.wd_mult = 0.0
            changed.append(child.weight.name)
    return changed


def _walk(block):
    yield block
    for c in block._children.values():
        yield from _walk(c)
