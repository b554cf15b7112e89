"""Building blocks shared by the bmx model zoo.

Bethge et al., "Back to Simplicity: How to Train Accurate BNNs from Scratch?" (2019),
"BinaryDenseNet" (2019) and "MeliusNet" (2020).

Every network of the zoo is built only from standard Gluon layers (``nn.Conv2D``,
``nn.BatchNorm``, ``nn.Activation('relu')``, pooling, ``nn.Dense``, ``nn.Flatten``,
``nn.HybridSequential``), :mod:`bmx.nn` binary layers and the small custom blocks of this
package, whose ``hybrid_forward`` uses only ``concat(dim=1)``, ``+``, ``slice_axis`` on
axis 1 and reshape/transpose. So every model hybridizes, exports, and its symbol graph
can be read by the converter.
"""
import os

import mxnet as mx
import numpy as np
from mxnet.gluon import nn

from .. import nn as bnn
from ..nn.config import binary_layer_config

__all__ = ["STEMS", "PretrainedNotFoundError", "default_initializer", "ChannelShuffle",
           "add_stem", "binary_conv", "finalize_model", "load_pretrained"]

#: stem variants (spec section 3)
STEMS = ("imagenet", "grouped", "thumbnail")


def default_initializer():
    """He-normal initializer used by the papers' recipe:
    ``Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)``."""
    return mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)


class ChannelShuffle(nn.HybridBlock):
    r"""ShuffleNet channel shuffle (Zhang et al., 2018), used in MeliusNet-A/B/C transitions.

    For ``x`` of shape ``(N, C, H, W)`` and ``g = groups`` (``C % g == 0``), output channel
    ``j * g + i`` is input channel ``i * (C / g) + j``: reshape to ``(N, g, C/g, H, W)``,
    transpose the two channel axes, reshape back. Parameter-free.
    """

    def __init__(self, groups=16, **kwargs):
        super().__init__(**kwargs)
        if int(groups) < 1:
            raise ValueError(f"groups must be >= 1, got {groups!r}")
        self.groups = int(groups)

    def hybrid_forward(self, F, x):
        x = F.reshape(x, shape=(0, -4, self.groups, -1, -2))
        x = F.transpose(x, axes=(0, 2, 1, 3, 4))
        return F.reshape(x, shape=(0, -3, -2))

    def __repr__(self):
        return f"{self.__class__.__name__}(groups={self.groups})"


def check_classes(classes):
    """Reject a classifier size that is not a positive int (MXNet would build a 0-unit
    Dense and fail much later, or not at all)."""
    if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)) or classes < 1:
        raise ValueError(f"classes must be a positive int, got {classes!r}")


def add_stem(seq, stem, channels=64):
    """Append the stem layers (spec section 3) to the HybridSequential ``seq``.

    ``imagenet``: Conv7x7/2 -> BN -> ReLU -> MaxPool3x3/2 pad 1 (output 56x56 at 224).
    ``grouped`` (MeliusNet): Conv3x3/2 (c/2) -> BN -> ReLU -> Conv3x3 (c/2, groups 4) -> BN
    -> ReLU -> Conv3x3 (c, groups 8) -> BN -> ReLU -> MaxPool3x3/2 pad 1.
    ``thumbnail`` (inputs below ~50 px): Conv3x3/1 -> BN -> ReLU (no downsampling).
    All stem convolutions are full precision without bias.
    """
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}; choose one of {STEMS}")
    if stem == "imagenet":
        seq.add(nn.Conv2D(channels, kernel_size=7, strides=2, padding=3, use_bias=False))
    elif stem == "grouped":
        half = channels // 2
        if half % 8 or channels % 8:
            raise ValueError(f"the grouped stem needs channels divisible by 16, got {channels}")
        seq.add(nn.Conv2D(half, kernel_size=3, strides=2, padding=1, use_bias=False),
                nn.BatchNorm(), nn.Activation("relu"),
                nn.Conv2D(half, kernel_size=3, strides=1, padding=1, groups=4, use_bias=False),
                nn.BatchNorm(), nn.Activation("relu"),
                nn.Conv2D(channels, kernel_size=3, strides=1, padding=1, groups=8,
                          use_bias=False))
    else:
        seq.add(nn.Conv2D(channels, kernel_size=3, strides=1, padding=1, use_bias=False))
    seq.add(nn.BatchNorm(), nn.Activation("relu"))
    if stem != "thumbnail":
        seq.add(nn.MaxPool2D(pool_size=3, strides=2, padding=1))


def binary_conv(channels, kernel_size=3, stride=1, padding=0, dilation=1, groups=1,
                in_channels=0, binary=True, bits=1, bits_a=1, clip_threshold=None):
    """A binary convolution (``QActivation -> QConv2D`` via :func:`bmx.nn.activated_conv`,
    -1 padding, no bias), or with ``binary=False`` its float twin: a plain ``nn.Conv2D``
    with the same geometry, zero padding and no sign (the speed/accuracy baseline)."""
    if not binary:
        return nn.Conv2D(channels, kernel_size=kernel_size, strides=stride, padding=padding,
                         dilation=dilation, groups=groups, in_channels=in_channels,
                         use_bias=False)
    kwargs = dict(bits=bits, gradient_cancel_threshold=clip_threshold)
    if binary_layer_config.approximation != "xnor":
        kwargs["bits_a"] = bits_a  # the xnor variant binarizes inside QConv2D
    return bnn.activated_conv(channels, kernel_size=kernel_size, stride=stride,
                              padding=padding, dilation=dilation, groups=groups,
                              in_channels=in_channels, **kwargs)


class PretrainedNotFoundError(FileNotFoundError, ValueError):
    """No local parameter file for ``pretrained`` (bmx never downloads weights).
    Both a ``FileNotFoundError`` and a ``ValueError``."""


def _pretrained_root():
    return os.path.join(os.environ.get("MXNET_HOME", os.path.join("~", ".mxnet")), "models")


def load_pretrained(net, name, pretrained, ctx=None, root=None):
    """Load local parameters into ``net``. Nothing is ever downloaded.

    ``pretrained`` is False (nothing), a path to a ``.params`` file, or True: then
    ``<root>/<name>.params`` must exist (``root`` defaults to ``$MXNET_HOME/models``,
    i.e. ``~/.mxnet/models``).
    """
    if pretrained is False or pretrained is None:
        return net
    if pretrained is True:
        root = os.path.expanduser(root or _pretrained_root())
        path = os.path.join(root, f"{name}.params")
        if not os.path.isfile(path):
            raise PretrainedNotFoundError(
                f"no pretrained parameters for {name!r}: bmx downloads nothing and "
                f"{path} does not exist; pass pretrained='<path to .params>' (e.g. a "
                "checkpoint written by net.save_parameters) or put the file there")
    elif isinstance(pretrained, (str, os.PathLike)):
        path = os.fspath(pretrained)
        if not os.path.isfile(path):
            raise PretrainedNotFoundError(f"pretrained parameter file {path!r} does not exist")
    else:
        raise ValueError(f"pretrained must be False, True or a path, got {pretrained!r}")
    net.load_parameters(path, ctx=ctx or mx.cpu())
    return net


def finalize_model(net, name, pretrained=False, ctx=None, root=None):
    """Common end of every constructor: zero weight decay for BN and binary weights
    (:func:`bmx.nn.set_binary_wd_mult`), then optional local parameters."""
    bnn.set_binary_wd_mult(net)
    net.model_name = name
    return load_pretrained(net, name, pretrained, ctx=ctx, root=root)
