"""Read and run a bmx model file in numpy (the reference interpreter the engine is tested against)."""
from .reader import read_model, describe  # noqa: F401
from .interpreter import run_model  # noqa: F401
