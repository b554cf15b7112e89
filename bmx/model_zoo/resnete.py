"""ResNetE, implemented in Gluon.

Bethge et al., "Back to Simplicity: How to Train Accurate BNNs from Scratch?" (2019).
ResNetE ("E" for *enhanced*) is a binary ResNet in the Bi-Real Net style: every 3x3
convolution is binary and has its own shortcut, so a ResNet-18 basic block (two convs)
becomes two ResNetE blocks and the block counts per stage double (18: 4,4,4,4; 34:
6,8,12,6). The shortcut downsampling stays full precision (AvgPool2x2/2 -> FP Conv1x1
-> BN), the stem and the classifier too.
"""
from mxnet.gluon import nn

from .common import add_stem, binary_conv, check_classes, finalize_model

__all__ = ["ResNetE", "ResNetEBlock", "resnete_spec", "get_resnete", "resnete18",
           "resnete34", "resnete_flex"]

#: name -> (blocks per stage, channels per stage); spec section 3
resnete_spec = {
    18: ([4, 4, 4, 4], [64, 128, 256, 512]),
    34: ([6, 8, 12, 6], [64, 128, 256, 512]),
}

DOWNSAMPLES = ("fp", "binary")


class ResNetEBlock(nn.HybridBlock):
    r"""One ResNetE block: :math:`y = \mathrm{BN}(\mathrm{bconv}_{3\times3,s}(\mathrm{sign}(x)))
    + \mathrm{shortcut}(x)`.

    The shortcut is the identity, or, when the stride is 2 or the channel count changes,
    ``AvgPool2x2/2 -> Conv1x1 -> BN`` (``pool=False``: ``Conv1x1/2 -> BN``). The 1x1
    convolution is full precision (``downsample='fp'``, the paper's choice) or binary
    (``downsample='binary'``: sign -> binary Conv1x1, the ablation).

    Parameters
    ----------
    channels : int
        Output channels.
    stride : int
        Stride of the 3x3 convolution (1 or 2).
    in_channels : int
        Input channels.
    downsample : {'fp', 'binary'}
        Precision of the shortcut convolution when one is needed.
    pool : bool
        Downsample the shortcut with AvgPool2x2/2 before a stride-1 Conv1x1 (True) or
        use a stride-2 Conv1x1 (False).
    binary, bits, bits_a, clip_threshold
        See :func:`bmx.model_zoo.common.binary_conv`.
    """

    def __init__(self, channels, stride, in_channels, downsample="fp", pool=True, binary=True,
                 bits=1, bits_a=1, clip_threshold=None, **kwargs):
        super().__init__(**kwargs)
        if downsample not in DOWNSAMPLES:
            raise ValueError(f"unknown downsample {downsample!r}; choose one of {DOWNSAMPLES}")
        qkw = dict(binary=binary, bits=bits, bits_a=bits_a, clip_threshold=clip_threshold)
        with self.name_scope():
            self.body = nn.HybridSequential(prefix="")
            self.body.add(binary_conv(channels, 3, stride, 1, in_channels=in_channels, **qkw),
                          nn.BatchNorm())
            self.shortcut = None
            if stride != 1 or in_channels != channels:
                self.shortcut = nn.HybridSequential(prefix="sc_")
                conv_stride = stride
                if pool and stride != 1:
                    # ceil_mode keeps the shortcut's map size equal to the strided 3x3's
                    self.shortcut.add(nn.AvgPool2D(pool_size=stride, strides=stride,
                                                   ceil_mode=True, count_include_pad=False))
                    conv_stride = 1
                if downsample == "fp":
                    conv = nn.Conv2D(channels, kernel_size=1, strides=conv_stride,
                                     in_channels=in_channels, use_bias=False)
                else:
                    conv = binary_conv(channels, 1, conv_stride, 0, in_channels=in_channels,
                                       **qkw)
                self.shortcut.add(conv, nn.BatchNorm())

    def hybrid_forward(self, F, x):
        residual = x if self.shortcut is None else self.shortcut(x)
        return self.body(x) + residual


class ResNetE(nn.HybridBlock):
    r"""ResNetE network (Bethge et al., "Back to Simplicity", 2019).

    ``stem`` (+ BN) -> stages of :class:`ResNetEBlock` (stride 2 in the first block of
    every stage but the first) -> ReLU -> global AvgPool -> Dense(classes).

    The BN after the stem (after the max pool for the ImageNet stems) re-centres the
    ReLU output: without it the first ``sign`` would see only non-negative values and
    output +1 everywhere (sign(0) = +1). We keep it for the thumbnail stem too.

    Parameters
    ----------
    layers : list of int
        Blocks per stage.
    channels : list of int
        Channels per stage (the stem outputs ``channels[0]``).
    classes : int
    stem : {'imagenet', 'grouped', 'thumbnail'}
    downsample : {'fp', 'binary'}
    downsample_pool : bool
        AvgPool in the downsampling shortcut (True) or a strided 1x1 conv (False).
    binary, bits, bits_a, clip_threshold
        See :func:`bmx.model_zoo.common.binary_conv`.
    """

    def __init__(self, layers, channels, classes=1000, stem="imagenet", downsample="fp",
                 downsample_pool=True, binary=True, bits=1, bits_a=1, clip_threshold=1.3,
                 **kwargs):
        super().__init__(**kwargs)
        check_classes(classes)
        if len(layers) != len(channels):
            raise ValueError(f"layers and channels differ in length: {layers} vs {channels}")
        qkw = dict(binary=binary, bits=bits, bits_a=bits_a, clip_threshold=clip_threshold)
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="")
            add_stem(self.features, stem, channels[0])
            self.features.add(nn.BatchNorm())
            in_ch = channels[0]
            for i, (n, ch) in enumerate(zip(layers, channels)):
                stage = nn.HybridSequential(prefix=f"stage{i + 1}_")
                with stage.name_scope():
                    for j in range(n):
                        stride = 2 if (i > 0 and j == 0) else 1
                        stage.add(ResNetEBlock(ch, stride, in_ch, downsample=downsample,
                                               pool=downsample_pool, prefix=f"block{j + 1}_",
                                               **qkw))
                        in_ch = ch
                self.features.add(stage)
            self.features.add(nn.Activation("relu"), nn.GlobalAvgPool2D(), nn.Flatten())
            self.output = nn.Dense(classes, in_units=in_ch)

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))


def resnete_flex(layers, channels=(64, 128, 256, 512), classes=1000, stem="imagenet",
                 downsample="fp", downsample_pool=True, binary=True, bits=1, bits_a=1,
                 clip_threshold=1.3, pretrained=False, ctx=None, root=None, name=None,
                 **kwargs):
    """ResNetE with free block counts, channels and downsampling (the poster's ablations).

    ``downsample='fp'|'binary'`` picks the precision of the shortcut Conv1x1,
    ``downsample_pool`` whether an AvgPool2x2/2 precedes it (else the conv has stride 2).
    """
    net = ResNetE(list(layers), list(channels), classes=classes, stem=stem,
                  downsample=downsample, downsample_pool=downsample_pool, binary=binary,
                  bits=bits, bits_a=bits_a, clip_threshold=clip_threshold, **kwargs)
    return finalize_model(net, name or "resnete_flex", pretrained, ctx=ctx, root=root)


def get_resnete(num_layers, **kwargs):
    """ResNetE-``num_layers`` (18 or 34) from :data:`resnete_spec`; kwargs as
    :func:`resnete_flex` (``classes``, ``stem``, ``downsample``, ``binary``, ...)."""
    if num_layers not in resnete_spec:
        raise ValueError(f"no ResNetE-{num_layers}; options are {sorted(resnete_spec)}")
    layers, channels = resnete_spec[num_layers]
    kwargs.setdefault("name", f"resnete{num_layers}")
    return resnete_flex(layers, channels, **kwargs)


def resnete18(**kwargs):
    """ResNetE-18 (Bethge et al., 2019): 16 binary blocks, 4.00 MiB, 1.63e8 OPs."""
    return get_resnete(18, **kwargs)


def resnete34(**kwargs):
    """ResNetE-34 (Bethge et al., 2019): 32 binary blocks, 5.23 MiB, 1.92e8 OPs."""
    return get_resnete(34, **kwargs)
