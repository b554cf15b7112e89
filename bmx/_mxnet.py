"""The one place where bmx's training API loads MXNet.

Bethge et al., "BMXNet 2" (2019) trains in MXNet Gluon; the engine (:mod:`bmx.engine`,
``bmx-info``) runs without it. An engine-only install (``pip install bmx``) has no MXNet,
so the training API (:mod:`bmx.nn`, :mod:`bmx.model_zoo`, :func:`bmx.convert`,
``bmx-train``) loads it through :func:`require_mxnet`, which turns the bare
``ModuleNotFoundError`` into one that names the extra to install. Call sites write
``from bmx._mxnet import mx`` (a lazy module attribute, PEP 562) in place of
``import mxnet as mx``.
"""
__all__ = ["MXNetMissingError", "require_mxnet", "INSTALL_HINT"]

#: what to run to get the training stack (quoted: the brackets are a shell glob)
INSTALL_HINT = "pip install 'bmx[train]'"


class MXNetMissingError(ImportError):
    """MXNet (the training stack) is not installed or cannot be imported."""


def require_mxnet(feature="bmx's training API (bmx.nn, bmx.model_zoo, bmx.convert, bmx-train)"):
    """Import and return the ``mxnet`` module, or fail with an error naming the extra.

    Parameters
    ----------
    feature : str, optional
        What needs MXNet, for the message.

    Returns
    -------
    module
        The ``mxnet`` module.

    Raises
    ------
    MXNetMissingError
        An ``ImportError`` when MXNet is not installed or fails to import (MXNet 1.9.1
        needs numpy < 1.24: it uses ``np.bool``, which numpy 1.24 removed).
    """
    try:
        import mxnet
    except ImportError as e:
        raise MXNetMissingError(
            f"{feature} needs MXNet, which is not installed here ({e}); install the "
            f"training stack with: {INSTALL_HINT}. The engine (bmx.engine, bmx-info) works "
            "without it.", name="mxnet") from e
    except AttributeError as e:
        if "numpy" not in str(e):
            raise
        import numpy
        raise MXNetMissingError(
            f"{feature} needs MXNet, which fails to import with numpy {numpy.__version__} "
            f"({e}): MXNet 1.9.1 needs numpy < 1.24; install the pinned training stack "
            f"with: {INSTALL_HINT}", name="mxnet") from e
    return mxnet


def __getattr__(name):
    # ``from bmx._mxnet import mx``: import on first use, with the clear error above.
    if name == "mx":
        return require_mxnet()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
