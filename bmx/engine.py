"""bmx.engine: the C++ xnor-popcount inference engine (re-exports ``bmx._engine``).

Bethge et al., "BMXNet 2" (2019): bit-packed binary layers computed with xor and
popcount. This thin module documents and validates the compiled functions.
"""
from . import _engine

__version__ = _engine.__version__
WORD_BITS = _engine.WORD_BITS
