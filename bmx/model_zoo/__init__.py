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

__all__ = ["get_model", "get_model_list", "default_initializer", "STEMS",
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


def get_model(name, **kwargs):
    """Return the network registered as ``name`` (see :func:`get_model_list`).

    Parameters
    ----------
    name : str
        Model name, case-insensitive, e.g. ``'binarydensenet28'``.
    **kwargs
        ``classes``, ``stem``, ``clip_threshold``, ``bits``, ``bits_a``, ``binary``,
        ``pretrained``, ``ctx``, ``root`` and family-specific options.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the valid names.
    """
    key = str(name).lower()
    if key not in _models:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(get_model_list())}")
    return _models[key](**kwargs)


def get_model_list():
    """Names accepted by :func:`get_model`, in registry order."""
    return list(_models)
