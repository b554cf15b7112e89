"""The one place where bmx's training API loads MXNet.

Bethge et al., "BMXNet 2" (2019) trains in MXNet Gluon; the engine (:mod:`bmx.engine`,
``bmx-info``) runs without it. An engine-only install (``pip install bmx``) has no MXNet,
so the training API (:mod:`bmx.nn`, :mod:`bmx.model_zoo`, :func:`bmx.convert`,
``bmx-train``) loads it through :func:`require_mxnet`, which turns the bare
``ModuleNotFoundError`` into one that names the extra to install. Call sites write
``from bmx._mxnet import mx`` (a lazy module attribute, PEP 562) in place of
``import mxnet as mx``.
"""
__all__ = ["MXNetMissingError", "require_mxnet", "INSTALL_HINT", "settle", "param_arrays"]

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


def settle():
    """Wait for all queued MXNet work, including in-place weight reorders.

    In an inference pass, MXNet's oneDNN convolution queues an asynchronous in-place
    reorder of its weight into a blocked layout *after* the operator has used it. A read
    issued in that window (``asnumpy``, ``save_parameters``) can meet the array
    mid-conversion and fail with "We can't generate TBlob for MKLDNN data". ``waitall``
    closes the window: the reorder is queued while the convolution still runs, so the
    engine is never idle between the two.
    """
    require_mxnet().nd.waitall()


def param_arrays(params):
    """Numpy copies of Gluon parameters, read after :func:`settle`.

    Parameters
    ----------
    params : dict-like
        name -> ``gluon.Parameter`` (``net.collect_params()`` or a plain dict).

    Returns
    -------
    dict
        name -> ``numpy.ndarray`` (a copy, in the parameter's dtype).
    """
    settle()
    return {name: p.data().asnumpy() for name, p in params.items()}


def __getattr__(name):
    # ``from bmx._mxnet import mx``: import on first use, with the clear error above.
    if name == "mx":
        return require_mxnet()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
