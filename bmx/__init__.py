"""bmx: binary neural networks in MXNet Gluon with a fast xnor-popcount C++ engine.

Bethge et al., "Back to Simplicity: How to Train Accurate BNNs from Scratch?" (2019)
and "BinaryDenseNet" (2019). Train 1-bit networks with :mod:`bmx.nn` and
:mod:`bmx.model_zoo`, convert them with :func:`bmx.convert`, run them with
:mod:`bmx.engine`.
"""
__version__ = "0.1.0"

import os as _os

# MXNet's OpenMP operators use one thread per two cores unless told otherwise, which
# leaves half of a small machine idle during training. Set before MXNet loads (bmx's
# CLIs import bmx first); an explicit OMP_NUM_THREADS wins.
_os.environ.setdefault("OMP_NUM_THREADS", str(len(_os.sched_getaffinity(0))))

from . import convention  # noqa: F401

_LAZY = {
    "nn": ("bmx.nn", None),
    "model_zoo": ("bmx.model_zoo", None),
    "get_model": ("bmx.model_zoo", "get_model"),
    "summary": ("bmx.model_summary", "summary"),
    "engine": ("bmx.engine", None),
    "convert": ("bmx.converter", "convert"),
}


def __getattr__(name):
    # Lazy: the layers, zoo, converter and engine load only when used, so `import bmx`
    # (and a CLI's --help) does not load MXNet.
    if name in _LAZY:
        import importlib
        mod_name, attr = _LAZY[name]
        mod = importlib.import_module(mod_name)
        return mod if attr is None else getattr(mod, attr)
    raise AttributeError(f"module 'bmx' has no attribute {name!r}")
