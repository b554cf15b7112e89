"""bmx model zoo: ResNetE, BinaryDenseNet and MeliusNet in the gluoncv style.

Bethge et al., "Back to Simplicity" (2019), "BinaryDenseNet" (2019), "MeliusNet" (2020).
One spec table per family, one generic constructor per family, thin named constructors
and one registry::

    >>> net = bmx.get_model("binarydensenet28", classes=10, stem="thumbnail")
    >>> net.initialize(bmx.model_zoo.default_initializer())

Common keyword arguments: ``classes=1000``, ``stem`` ('imagenet', 'grouped',
'thumbnail'; default 'imagenet' for ResNetE and BinaryDenseNet, 'grouped' for MeliusNet),
``clip_threshold=1.3``, ``bits=1``, ``bits_a=1``, ``binary=True`` (False: the float twin,
same graph with ``nn.Conv2D`` and no sign), ``pretrained=False`` (a path loads local
parameters; True loads ``$MXNET_HOME/models/<name>.params`` or raises; nothing is
downloaded).
"""
from .._mxnet import mx as _mx  # noqa: F401 - names `pip install bmx[train]` if MXNet is missing
from .binary_densenet import (BinaryDenseNet, DenseLayer, DenseNetBase, Transition,
                              binarydensenet28, binarydensenet37, binarydensenet37_dilated, binarydensenet45,
                              binarydensenet_flex, binarydensenet_spec, get_binarydensenet,
                              transition_features)
from .common import STEMS, ChannelShuffle, PretrainedNotFoundError, default_initializer
from .meliusnet import (ImprovementBlock, MeliusNet, get_meliusnet, meliusnet22, meliusnet29,
                        meliusnet42, meliusnet59, meliusnet_a, meliusnet_b, meliusnet_c,
                        meliusnet_flex, meliusnet_spec)
from .resnete import (ResNetE, ResNetEBlock, get_resnete, resnete18, resnete34, resnete_flex,
                      resnete_spec)
from .spec import FLEX_EXAMPLE, check_spec_kwargs, parse_model_spec

__all__ = ["get_model", "get_model_list", "parse_model_spec", "resolve_model_spec", "default_initializer", "STEMS",
           "PretrainedNotFoundError",
           "ResNetE", "ResNetEBlock", "BinaryDenseNet", "DenseLayer", "DenseNetBase", "Transition",
           "MeliusNet", "ImprovementBlock", "ChannelShuffle",
           "resnete_flex", "binarydensenet_flex", "meliusnet_flex",
           "get_resnete", "get_binarydensenet", "get_meliusnet", "transition_features",
           "resnete_spec", "binarydensenet_spec", "meliusnet_spec"]

_models = {
    "resnete18": resnete18,
    "resnete34": resnete34,
    "binarydensenet28": binarydensenet28,
    "binarydensenet37": binarydensenet37,
    "binarydensenet37_dilated": binarydensenet37_dilated,
    "binarydensenet45": binarydensenet45,
    "meliusnet22": meliusnet22,
    "meliusnet29": meliusnet29,
    "meliusnet42": meliusnet42,
    "meliusnet59": meliusnet59,
    "meliusnet_a": meliusnet_a,
    "meliusnet_b": meliusnet_b,
    "meliusnet_c": meliusnet_c,
}


#: constructors of any shape, reachable through a spec ``'constructor:key=value,...'``
_flex = {"binarydensenet_flex": binarydensenet_flex, "meliusnet_flex": meliusnet_flex,
         "resnete_flex": resnete_flex}


def get_model(name, **kwargs):
    """Return the network ``name``: a registered model or a flex spec.

    Parameters
    ----------
    name : str
        Model name, case-insensitive, e.g. ``'binarydensenet28'``, or a spec
        ``'constructor:key=value,...'`` (see :mod:`bmx.model_zoo.spec`), e.g.
        ``'binarydensenet_flex:block_config=(2,2,2),growth_rate=32,reduction=2'``;
        a registered name may take options the same way (``'resnete18:binary=False'``).
    **kwargs
        ``classes``, ``stem``, ``clip_threshold``, ``bits``, ``bits_a``, ``binary``,
        ``pretrained``, ``ctx``, ``root`` and family-specific options; the spec's own
        options win.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid names and constructors), a
        malformed spec, or an option the constructor does not have.
    """
    fn, options = resolve_model_spec(name)
    return fn(**dict(kwargs, **options))


def resolve_model_spec(spec):
    """``spec`` -> ``(constructor, options)`` without building anything; raises ValueError
    as :func:`get_model` does (an unknown name, a malformed spec, an unknown option)."""
    base, options = parse_model_spec(spec)
    key = base.lower()
    fn = _models.get(key) or _flex.get(key)
    if fn is None:
        raise ValueError(f"unknown model {base!r}; valid names: {', '.join(get_model_list())}; "
                         f"or a spec such as {FLEX_EXAMPLE} (constructors: "
                         f"{', '.join(_flex)})")
    if key in _flex and not options:
        raise ValueError(f"{key} needs its shape as options, e.g. {FLEX_EXAMPLE}")
    # named models forward their options to their family's constructor
    family = fn if key in _flex else next(f for k, f in _flex.items() if key.startswith(k[:6]))
    check_spec_kwargs(key, family, options)
    return fn, options


def get_model_list():
    """Names accepted by :func:`get_model`, in registry order."""
    return list(_models)
