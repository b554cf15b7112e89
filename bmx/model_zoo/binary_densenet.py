"""BinaryDenseNet, implemented in Gluon.

Bethge et al., "BinaryDenseNet: Developing an Architecture for Binary Neural Networks"
(2019) and "Back to Simplicity" (2019). A DenseNet whose dense layers are binary 3x3
convolutions without bottleneck (growth 64), with full-precision downsampling
(BN -> MaxPool2x2/2 -> ReLU -> FP Conv1x1) and a high reduction rate in the transitions.
:class:`DenseNetBase` is shared with MeliusNet (:mod:`bmx.model_zoo.meliusnet`).
"""
from mxnet.gluon import nn

from .common import ChannelShuffle, add_stem, binary_conv, check_classes, finalize_model

__all__ = ["DenseLayer", "Transition", "DenseNetBase", "BinaryDenseNet", "binarydensenet_spec",
           "transition_features", "make_transition", "get_binarydensenet",
           "binarydensenet_flex", "binarydensenet28", "binarydensenet37",
           "binarydensenet37_dilated", "binarydensenet45"]

#: name -> (dense layers per stage, reduction rates, transition output channels);
#: the channels are ``transition_features(C, r)`` of the rates, hard-coded (spec section 3)
binarydensenet_spec = {
    28: ([6, 6, 6, 5], (2.7, 2.7, 2.2), (160, 192, 256)),
    37: ([6, 8, 12, 6], (3.3, 3.3, 4), (128, 192, 256)),
    45: ([6, 12, 14, 8], (2.7, 3.3, 4), (160, 288, 288)),
}

DOWNSAMPLES = ("fp", "binary")


def transition_features(num_features, reduction):
    """Channels after a transition: ``int(round((C // r) / 32)) * 32`` (multiple of 32)."""
    return int(round((num_features // reduction) / 32)) * 32


class DenseLayer(nn.HybridBlock):
    r"""Binary dense layer: :math:`y = \mathrm{concat}([x, f(x)], \mathrm{dim}=1)` with
    :math:`f = \mathrm{BN} \to \mathrm{sign} \to \mathrm{bconv}_{3\times3}` (``growth_rate``
    outputs, padding = dilation with -1), i.e. ``in_channels + growth_rate`` outputs.

    ``bottleneck=True`` (the design the papers remove, kept for ablations) prepends
    ``BN -> sign -> bconv1x1 (bn_size * growth_rate)``.
    """

    def __init__(self, growth_rate, in_channels, dilation=1, bottleneck=False, bn_size=4,
                 binary=True, bits=1, bits_a=1, clip_threshold=None, **kwargs):
        super().__init__(**kwargs)
        qkw = dict(binary=binary, bits=bits, bits_a=bits_a, clip_threshold=clip_threshold)
        with self.name_scope():
            self.body = nn.HybridSequential(prefix="")
            c_in = in_channels
            if bottleneck:
                self.body.add(nn.BatchNorm(in_channels=c_in),
                              binary_conv(bn_size * growth_rate, 1, in_channels=c_in, **qkw))
                c_in = bn_size * growth_rate
            self.body.add(nn.BatchNorm(in_channels=c_in),
                          binary_conv(growth_rate, 3, 1, dilation, dilation, in_channels=c_in,
                                      **qkw))

    def hybrid_forward(self, F, x):
        return F.concat(x, self.body(x), dim=1)


class Transition(nn.HybridBlock):
    """Transition (downsampling) block between two dense stages.

    ``downsample='fp'`` (the papers'): ``BN -> MaxPool2x2/2 -> ReLU [-> ChannelShuffle]
    -> FP Conv1x1 (groups)``. ``'binary'`` (ablation): ``BN -> MaxPool2x2/2 -> sign ->
    binary Conv1x1``; no ReLU there, since sign(ReLU(x)) would be +1 everywhere.
    ``pool=False`` drops the MaxPool (dilated models). The children are named
    attributes (``bn``, ``pool``, ``conv``), so the parameter names do not depend on
    whether the pool is there: a dilated model loads its plain twin's parameters.
    """

    def __init__(self, out_channels, in_channels, downsample="fp", pool=True, groups=1,
                 shuffle=None, binary=True, bits=1, bits_a=1, clip_threshold=None, **kwargs):
        super().__init__(**kwargs)
        if downsample not in DOWNSAMPLES:
            raise ValueError(f"unknown downsample {downsample!r}; choose one of {DOWNSAMPLES}")
        with self.name_scope():
            self.bn = nn.BatchNorm(in_channels=in_channels)
            self.pool = nn.MaxPool2D(pool_size=2, strides=2) if pool else None
            self.relu = nn.Activation("relu") if downsample == "fp" else None
            self.shuffle = ChannelShuffle(shuffle) if (shuffle and downsample == "fp") else None
            if downsample == "fp":
                self.conv = nn.Conv2D(out_channels, kernel_size=1, groups=groups,
                                      in_channels=in_channels, use_bias=False)
            else:
                self.conv = binary_conv(out_channels, 1, groups=groups, in_channels=in_channels,
                                        binary=binary, bits=bits, bits_a=bits_a,
                                        clip_threshold=clip_threshold)

    def hybrid_forward(self, F, x):
        x = self.bn(x)
        if self.pool is not None:
            x = self.pool(x)
        if self.relu is not None:
            x = self.relu(x)
        if self.shuffle is not None:
            x = self.shuffle(x)
        return self.conv(x)


def make_transition(out_channels, in_channels, prefix="", **kwargs):
    """Build a :class:`Transition` (kwargs: ``downsample``, ``pool``, ``groups``,
    ``shuffle``, ``binary``, ``bits``, ``bits_a``, ``clip_threshold``)."""
    return Transition(out_channels, in_channels, prefix=prefix, **kwargs)


class DenseNetBase(nn.HybridBlock):
    r"""Dense binary network skeleton (BinaryDenseNet, MeliusNet).

    ``stem -> [stage_i -> transition_i]* -> stage_last -> BN -> ReLU -> global AvgPool
    -> Dense(classes)``. A stage is ``block_config[i]`` units (:meth:`_add_unit`), each
    adding ``growth_rate`` channels. Transition ``i`` maps to ``transition_channels[i]``;
    it drops its MaxPool when the next stage is dilated.

    Parameters
    ----------
    block_config : list of int
    growth_rate : int
    init_features : int
        Stem output channels.
    transition_channels : list of int
        ``len(block_config) - 1`` values.
    downsample : {'fp', 'binary'}
    transition_groups : int
        Groups of the FP transition Conv1x1 (MeliusNet-A/B/C).
    channel_shuffle : int or None
        ChannelShuffle groups before the transition conv (MeliusNet-A/B/C: 16).
    dilation : tuple of int
        Per stage; padding = dilation.
    bottleneck, bn_size
        See :class:`DenseLayer`.
    classes, stem, binary, bits, bits_a, clip_threshold
        See :func:`bmx.model_zoo.get_model`.
    """

    def __init__(self, block_config, growth_rate=64, init_features=64, transition_channels=(),
                 downsample="fp", transition_groups=1, channel_shuffle=None, dilation=None,
                 bottleneck=False, bn_size=4, classes=1000, stem="imagenet", binary=True,
                 bits=1, bits_a=1, clip_threshold=1.3, **kwargs):
        super().__init__(**kwargs)
        check_classes(classes)
        block_config = [int(b) for b in block_config]
        transition_channels = [int(c) for c in transition_channels]
        dilation = tuple(dilation) if dilation is not None else (1,) * len(block_config)
        if len(transition_channels) != len(block_config) - 1:
            raise ValueError(f"need {len(block_config) - 1} transition channel counts for "
                             f"block_config {block_config}, got {transition_channels}")
        if len(dilation) != len(block_config):
            raise ValueError(f"need one dilation per stage ({len(block_config)}), got {dilation}")
        self.growth_rate = growth_rate
        self.bottleneck = bottleneck
        self.bn_size = bn_size
        self._qkw = dict(binary=binary, bits=bits, bits_a=bits_a, clip_threshold=clip_threshold)
        self.stage_channels = []
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="")
            add_stem(self.features, stem, init_features)
            c = init_features
            for i, n in enumerate(block_config):
                stage = nn.HybridSequential(prefix=f"stage{i + 1}_")
                with stage.name_scope():
                    for j in range(n):
                        c = self._add_unit(stage, c, dilation[i], j)
                self.features.add(stage)
                self.stage_channels.append(c)
                if i < len(block_config) - 1:
                    out = transition_channels[i]
                    self.features.add(make_transition(
                        out, c, downsample=downsample, pool=dilation[i + 1] == 1,
                        groups=transition_groups, shuffle=channel_shuffle,
                        prefix=f"trans{i + 1}_", **self._qkw))
                    c = out
            self.features.add(nn.BatchNorm(in_channels=c), nn.Activation("relu"),
                              nn.GlobalAvgPool2D(), nn.Flatten())
            self.output = nn.Dense(classes, in_units=c)
        self.num_features = c

    def _add_unit(self, stage, in_channels, dilation, index):
        """Append one unit to ``stage``; return its output channel count."""
        raise NotImplementedError

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))


class BinaryDenseNet(DenseNetBase):
    """BinaryDenseNet (Bethge et al., 2019): every unit is one :class:`DenseLayer`."""

    def _add_unit(self, stage, in_channels, dilation, index):
        stage.add(DenseLayer(self.growth_rate, in_channels, dilation=dilation,
                             bottleneck=self.bottleneck, bn_size=self.bn_size,
                             prefix=f"dense{index + 1}_", **self._qkw))
        return in_channels + self.growth_rate


def _resolve_transitions(block_config, init_features, growth_rate, reduction,
                         transition_channels, units_growth=1):
    if (reduction is None) == (transition_channels is None):
        raise ValueError("give exactly one of reduction and transition_channels")
    if transition_channels is not None:
        return list(transition_channels)
    n_t = len(block_config) - 1
    if isinstance(reduction, (int, float)):
        reduction = [reduction] * n_t
    if len(reduction) != n_t:
        raise ValueError(f"need {n_t} reduction rates, got {list(reduction)}")
    out, c = [], init_features
    for n, r in zip(block_config, reduction):
        c = transition_features(c + n * growth_rate * units_growth, r)
        out.append(c)
    return out


def binarydensenet_flex(block_config, growth_rate=64, init_features=64, reduction=None,
                        transition_channels=None, downsample="fp", bottleneck=False,
                        bn_size=4, dilation=None, classes=1000, stem="imagenet", binary=True,
                        bits=1, bits_a=1, clip_threshold=1.3, pretrained=False, ctx=None,
                        root=None, name=None, **kwargs):
    """BinaryDenseNet of any shape (the poster's ablations).

    Give either ``reduction`` (one rate or one per transition; channels become
    :func:`transition_features`) or ``transition_channels``. ``downsample='fp'|'binary'``,
    ``bottleneck``: see :func:`make_transition`, :class:`DenseLayer`. ``dilation``: one
    value per stage (transitions into dilated stages drop the MaxPool).
    """
    tc = _resolve_transitions(block_config, init_features, growth_rate, reduction,
                              transition_channels)
    net = BinaryDenseNet(block_config, growth_rate=growth_rate, init_features=init_features,
                         transition_channels=tc, downsample=downsample, dilation=dilation,
                         bottleneck=bottleneck, bn_size=bn_size, classes=classes, stem=stem,
                         binary=binary, bits=bits, bits_a=bits_a,
                         clip_threshold=clip_threshold, **kwargs)
    return finalize_model(net, name or "binarydensenet_flex", pretrained, ctx=ctx, root=root)


def get_binarydensenet(num_layers, dilated=False, **kwargs):
    """BinaryDenseNet-``num_layers`` (28, 37, 45) from :data:`binarydensenet_spec`;
    ``dilated=True`` uses dilation (1, 1, 2, 4); kwargs as :func:`binarydensenet_flex`."""
    if num_layers not in binarydensenet_spec:
        raise ValueError(f"no BinaryDenseNet-{num_layers}; options are "
                         f"{sorted(binarydensenet_spec)}")
    block_config, _, channels = binarydensenet_spec[num_layers]
    kwargs.setdefault("name", f"binarydensenet{num_layers}" + ("_dilated" if dilated else ""))
    if dilated:
        kwargs.setdefault("dilation", (1, 1, 2, 4))
    return binarydensenet_flex(block_config, transition_channels=channels, **kwargs)


def binarydensenet28(**kwargs):
    """BinaryDenseNet-28 (Bethge et al., 2019): 4.04 MiB, 2.58e8 OPs (3.59e9 BOPs)."""
    return get_binarydensenet(28, **kwargs)


def binarydensenet37(**kwargs):
    """BinaryDenseNet-37 (Bethge et al., 2019): 5.13 MiB, 2.70e8 OPs."""
    return get_binarydensenet(37, **kwargs)


def binarydensenet37_dilated(**kwargs):
    """BinaryDenseNet-37 with dilation (1, 1, 2, 4): same weights as -37; transitions 2
    and 3 drop the MaxPool, so stages 3 and 4 keep 28x28 maps at 224 (segmentation)."""
    return get_binarydensenet(37, dilated=True, **kwargs)


def binarydensenet45(**kwargs):
    """BinaryDenseNet-45 (Bethge et al., 2019): 7.35 MiB, 3.44e8 OPs."""
    return get_binarydensenet(45, **kwargs)
