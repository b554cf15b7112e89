import os

# Quiet MXNet on the CI machine (2 cores).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    """A fixed-seed numpy generator; the seed is in the test id for reproduction."""
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _seed_mxnet():
    mx.random.seed(42)
    np.random.seed(42)
    yield
