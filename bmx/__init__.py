"""bmx: binary neural networks in MXNet Gluon with a fast xnor-popcount C++ engine.

Bethge et al., "Back to Simplicity: How to Train Accurate BNNs from Scratch?" (2019)
and "BinaryDenseNet" (2019). Train 1-bit networks with :mod:`bmx.nn` and
:mod:`bmx.model_zoo`, convert them with :func:`bmx.convert`, run them with
:mod:`bmx.engine`.
"""
__version__ = "0.1.0"

from . import convention  # noqa: F401
from . import nn  # noqa: F401

_LAZY = {
    "model_zoo": ("bmx.model_zoo", None),
    "get_model": ("bmx.model_zoo", "get_model"),
    "summary": ("bmx.model_summary", "summary"),
    "engine": ("bmx.engine", None),
    "convert": ("bmx.converter", "convert"),
}


def __getattr__(name):
    # Lazy: the zoo, converter and engine load only when used (keeps `import bmx` light).
    if name in _LAZY:
        import importlib
        mod_name, attr = _LAZY[name]
        mod = importlib.import_module(mod_name)
        return mod if attr is None else getattr(mod, attr)
    raise AttributeError(f"module 'bmx' has no attribute {name!r}")
