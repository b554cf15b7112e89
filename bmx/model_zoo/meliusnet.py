"""MeliusNet, implemented in Gluon.

Bethge et al., "MeliusNet: Can Binary Neural Networks Achieve MobileNet-level
Accuracy?" (2020). Each unit is a DenseBlock (binary 3x3, 64 new channels, concat)
followed by an ImprovementBlock (binary 3x3 whose 64 outputs are *added* to the 64
channels the DenseBlock just created), alternately increasing capacity and improving
quality. Transitions and head are BinaryDenseNet's; MeliusNet-A/B/C shuffle the channels
(16 groups) and use a grouped FP Conv1x1 in the transitions. Default stem: grouped.
"""
from mxnet.gluon import nn

from .binary_densenet import DenseLayer, DenseNetBase, _resolve_transitions
from .common import binary_conv, finalize_model

__all__ = ["ImprovementBlock", "MeliusNet", "meliusnet_spec", "get_meliusnet",
           "meliusnet_flex", "meliusnet22", "meliusnet29", "meliusnet42", "meliusnet59",
           "meliusnet_a", "meliusnet_b", "meliusnet_c"]

#: name -> (units per stage, transition output channels, transition conv groups);
#: groups > 1 come with a ChannelShuffle(16) before the conv (spec section 3)
meliusnet_spec = {
    "22": ([4, 5, 4, 4], (160, 224, 256), 1),
    "29": ([4, 6, 8, 6], (128, 192, 256), 1),
    "42": ([5, 8, 14, 10], (160, 256, 416), 1),
    "59": ([6, 12, 24, 12], (192, 320, 544), 1),
    "a": ([4, 5, 5, 6], (160, 256, 288), 4),
    "b": ([4, 6, 8, 6], (160, 224, 320), 2),
    "c": ([3, 5, 10, 6], (128, 192, 288), 4),
}


class ImprovementBlock(nn.HybridBlock):
    r"""MeliusNet ImprovementBlock: improve the last ``channels`` channels of ``x``.

    With :math:`r = \mathrm{bconv}_{3\times3}(\mathrm{sign}(\mathrm{BN}(x)))` (``channels``
    outputs, padding = dilation with -1) and :math:`C` = ``in_channels``:
    :math:`y = \mathrm{concat}([x_{[0, C-c)}, x_{[C-c, C)} + r], \mathrm{dim}=1)`, built from
    ``slice_axis`` on axis 1, ``+`` and ``concat``; :math:`y = x + r` when ``C == c``.
    """

    def __init__(self, channels, in_channels, dilation=1, binary=True, bits=1, bits_a=1,
                 clip_threshold=None, **kwargs):
        super().__init__(**kwargs)
        if channels > in_channels:
            raise ValueError(f"cannot improve {channels} of {in_channels} channels")
        self.channels = int(channels)
        self.in_channels = int(in_channels)
        with self.name_scope():
            self.body = nn.HybridSequential(prefix="")
            self.body.add(nn.BatchNorm(in_channels=in_channels),
                          binary_conv(channels, 3, 1, dilation, dilation, in_channels=in_channels,
                                      binary=binary, bits=bits, bits_a=bits_a,
                                      clip_threshold=clip_threshold))

    def hybrid_forward(self, F, x):
        r = self.body(x)
        split = self.in_channels - self.channels
        if split == 0:
            return x + r
        keep = F.slice_axis(x, axis=1, begin=0, end=split)
        last = F.slice_axis(x, axis=1, begin=split, end=self.in_channels)
        return F.concat(keep, last + r, dim=1)


class MeliusNet(DenseNetBase):
    """MeliusNet (Bethge et al., 2020): every unit is a :class:`DenseLayer` followed by an
    :class:`ImprovementBlock` on the ``growth_rate`` channels it added."""

    def _add_unit(self, stage, in_channels, dilation, index):
        stage.add(DenseLayer(self.growth_rate, in_channels, dilation=dilation,
                             bottleneck=self.bottleneck, bn_size=self.bn_size,
                             prefix=f"dense{index + 1}_", **self._qkw))
        c = in_channels + self.growth_rate
        stage.add(ImprovementBlock(self.growth_rate, c, dilation=dilation,
                                   prefix=f"improve{index + 1}_", **self._qkw))
        return c


def meliusnet_flex(block_config, growth_rate=64, init_features=64, reduction=None,
                   transition_channels=None, downsample="fp", transition_groups=1,
                   channel_shuffle=None, bottleneck=False, bn_size=4, dilation=None,
                   classes=1000, stem="grouped", binary=True, bits=1, bits_a=1,
                   clip_threshold=1.3, pretrained=False, ctx=None, root=None, name=None,
                   **kwargs):
    """MeliusNet of any shape. Give ``reduction`` (rates; channels become multiples of 32)
    or ``transition_channels``; ``transition_groups`` > 1 groups the FP transition conv,
    ``channel_shuffle`` (default 16 when grouped) shuffles before it."""
    tc = _resolve_transitions(block_config, init_features, growth_rate, reduction,
                              transition_channels)
    if channel_shuffle is None and transition_groups > 1:
        channel_shuffle = 16
    net = MeliusNet(block_config, growth_rate=growth_rate, init_features=init_features,
                    transition_channels=tc, downsample=downsample,
                    transition_groups=transition_groups, channel_shuffle=channel_shuffle,
                    dilation=dilation, bottleneck=bottleneck, bn_size=bn_size, classes=classes,
                    stem=stem, binary=binary, bits=bits, bits_a=bits_a,
                    clip_threshold=clip_threshold, **kwargs)
    return finalize_model(net, name or "meliusnet_flex", pretrained, ctx=ctx, root=root)


def get_meliusnet(variant, **kwargs):
    """MeliusNet ``variant`` ('22', '29', '42', '59', 'a', 'b', 'c') from
    :data:`meliusnet_spec`; kwargs as :func:`meliusnet_flex`."""
    variant = str(variant)
    if variant not in meliusnet_spec:
        raise ValueError(f"no MeliusNet-{variant}; options are {sorted(meliusnet_spec)}")
    block_config, channels, groups = meliusnet_spec[variant]
    kwargs.setdefault("name", "meliusnet" + (variant if variant.isdigit() else "_" + variant))
    return meliusnet_flex(block_config, transition_channels=channels,
                          transition_groups=groups, **kwargs)


def meliusnet22(**kwargs):
    """MeliusNet-22 (Bethge et al., 2020): 3.89 MiB, 2.58e8 OPs (imagenet stem)."""
    return get_meliusnet("22", **kwargs)


def meliusnet29(**kwargs):
    """MeliusNet-29 (Bethge et al., 2020): 5.07 MiB, 2.14e8 OPs (grouped stem)."""
    return get_meliusnet("29", **kwargs)


def meliusnet42(**kwargs):
    """MeliusNet-42 (Bethge et al., 2020): 10.1 MiB, 3.25e8 OPs (grouped stem)."""
    return get_meliusnet("42", **kwargs)


def meliusnet59(**kwargs):
    """MeliusNet-59 (Bethge et al., 2020): 17.39 MiB, 5.32e8 OPs (grouped stem)."""
    return get_meliusnet("59", **kwargs)


def meliusnet_a(**kwargs):
    """MeliusNet-A (Bethge et al., 2020): 4.05 MiB, 1.63e8 OPs, grouped transitions."""
    return get_meliusnet("a", **kwargs)


def meliusnet_b(**kwargs):
    """MeliusNet-B (Bethge et al., 2020): 5.0 MiB, 1.96e8 OPs, grouped transitions."""
    return get_meliusnet("b", **kwargs)


def meliusnet_c(**kwargs):
    """MeliusNet-C (Bethge et al., 2020): 4.46 MiB, 1.50e8 OPs, grouped transitions."""
    return get_meliusnet("c", **kwargs)
