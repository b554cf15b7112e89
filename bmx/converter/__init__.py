"""Convert Gluon binary networks into packed bmx model files (Bethge et al., "BMXNet 2", 2019).

Binary layers run as xnor-popcount on bit-packed weights and activations. :func:`convert`
runs the stages, one module each: capture (``capture``, ``graph``: the MXNet symbol graph
of a HybridBlock or of an exported ``-symbol.json`` + ``.params`` pair, with parameters
and shapes) -> build ops (``build``: one IR op per ``bmx.nn`` quantized block, checked on
its real weights and probe inputs, or per Gluon operator) -> passes (``passes.PASSES``:
pattern rewrites, BatchNorm and ReLU folding, checks) -> verify (``verify``: the reader
contract's limits) -> serialise (``serialize``: the FlatBuffers file of
``docs/model-format.md``, written atomically). The ``bmx-convert`` command is ``cli``.

Anything the converter does not understand fails with a :class:`ConversionError` (a
ValueError) naming the layer or operator.
"""
import os

os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")  # quiet the probe evaluations

from .errors import ConversionError  # noqa: E402
from .pipeline import convert, convert_symbol, float_size_bytes  # noqa: E402
from .serialize import FILE_IDENTIFIER, FORMAT_VERSION, pack_binary_weight  # noqa: E402
from .cli import main  # noqa: E402

__all__ = ["FORMAT_VERSION", "FILE_IDENTIFIER", "ConversionError", "convert",
           "convert_symbol", "float_size_bytes", "pack_binary_weight", "main"]
