"""Helpers of :mod:`bmx.converter`: reading a model file back (:mod:`.reader`) and a
plain-numpy reference interpreter of it (:mod:`.interpreter`), the independent oracle of
the converter tests and a debugging aid for the C++ engine."""
from .reader import read_model, describe  # noqa: F401
from .interpreter import run_model  # noqa: F401
