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


def pytest_sessionstart(session):
    # make test-asan runs the suite against a sanitized extension: make sure it is the
    # one imported (not the regular build in bmx/).
    expect = os.environ.get("BMX_EXPECT_ENGINE_DIR")
    if expect:
        import bmx._engine
        loaded = os.path.dirname(os.path.realpath(bmx._engine.__file__))
        if loaded != os.path.realpath(expect):
            raise pytest.UsageError(f"bmx._engine loaded from {loaded}, expected {expect}")
