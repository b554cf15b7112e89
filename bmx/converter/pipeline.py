"""The conversion API: :func:`convert` and :func:`convert_symbol` run the stages
capture -> build -> passes -> verify -> serialise (:func:`_finish`) and write the file."""
import os

import numpy as np

from .. import __version__
from .._cli import write_bytes_atomic as _write_atomic
from .build import _Builder
from .capture import _net_graph, _symbol_graph
from .errors import ConversionError
from .ir import _IR
from .passes import run_passes
from .serialize import _serialize
from .verify import _check_contract, _check_shape, _num_classes


def convert(net=None, input_shape=(1, 3, 224, 224), path=None, *, symbol_file=None,
            params_file=None, producer=None, mean=None, std=None):
    """Convert a Gluon network into a bmx model file (Bethge et al., BMXNet 2, 2019).

    Parameters
    ----------
    net : mxnet.gluon.HybridBlock, optional
        A network of :mod:`bmx.nn` binary layers and the Gluon layers the zoo uses, with
        initialized (trained) parameters. Omit it to convert an exported pair instead.
    input_shape : tuple of int
        ``(N, C, H, W)`` used for shape inference; the file records ``(1, C, H, W)``.
    path : str or os.PathLike, optional
        Also write the file there (atomically: temp file + rename).
    symbol_file, params_file : str, optional
        The ``-symbol.json`` and ``-0000.params`` written by ``net.export``.
    producer : str, optional
        Producer string recorded in the file (default ``"bmx <version> (<model name>)"``).
    mean, std : sequence of float, optional
        Input normalisation recorded for users of the file (not applied by the engine).

    Returns
    -------
    bytes
        The FlatBuffers model (``docs/model-format.md``).

    Raises
    ------
    ConversionError
        (a ValueError) naming the layer or operator that cannot be converted.
    """
    shp = _check_shape(input_shape)
    if net is not None and (symbol_file is not None or params_file is not None):
        raise ConversionError("give either a network or symbol_file/params_file, not both")
    if net is None:
        if symbol_file is None or params_file is None:
            raise ConversionError("give a network, or both symbol_file and params_file")
        return convert_symbol(symbol_file, params_file, shp, path, producer=producer,
                              mean=mean, std=std)
    g = _net_graph(net, shp)
    name = getattr(net, "model_name", None) or net.name
    producer = producer or f"bmx {__version__} ({name})"
    return _finish(g, shp, path, producer, mean, std)


def convert_symbol(symbol_file, params_file, input_shape=(1, 3, 224, 224), path=None, *,
                   producer=None, mean=None, std=None):
    """Convert an exported ``-symbol.json`` + ``.params`` pair (see :func:`convert`)."""
    shp = _check_shape(input_shape)
    g = _symbol_graph(os.fspath(symbol_file), os.fspath(params_file), shp)
    base = os.path.basename(os.fspath(symbol_file))
    base = base[:-len("-symbol.json")] if base.endswith("-symbol.json") else base
    producer = producer or f"bmx {__version__} ({base})"
    return _finish(g, shp, path, producer, mean, std)


def _finish(g, input_shape, path, producer, mean, std):
    """The stages after capture: build the IR, run the passes, verify, serialise, write."""
    ir = run_passes(_IR(_Builder(g).build()))
    num_classes = _num_classes(ir)
    mean, std = _check_contract(ir, input_shape, mean, std)
    data = _serialize(ir, num_classes, producer, mean, std)
    if path is not None:
        _write_atomic(path, data)
    return data


def float_size_bytes(params):
    """float32 size of the parameters a float deployment stores (BatchNorm running statistics
    excluded, as in the papers' size rule): ``4 * sum(sizes)``."""
    n = 0
    for name, arr in params.items():
        if name.endswith(("_running_mean", "_running_var")):
            continue
        n += int(np.prod(arr.shape))
    return 4 * n
