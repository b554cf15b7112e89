import os

# Quiet MXNet on the CI machine (2 cores).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bmx._mxnet import param_arrays  # noqa: E402


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


# --------------------------------------------------------------------------------------
# Parameters away from their initial values. A parameter that still holds its initializer
# value (a zero bias, gamma = 1, beta = 0, running mean 0 / var 1) hides faults: a dropped
# bias or shift, a mean subtracted with the wrong sign and a gamma ignored all compute the
# same numbers on it. Equivalence tests perturb EVERY parameter and check that they did.

def param_snapshot(net):
    """Copies of every parameter of ``net`` (name -> float32 numpy array)."""
    return param_arrays(net.collect_params())


def randomize_all_parameters(net, seed, negative_gamma=0.25):
    """Move every parameter of ``net`` away from where it is.

    BatchNorm: running mean + N(0, 0.3), running var x U(0.5, 2), beta + N(0, 0.2),
    gamma x U(0.5, 1.5) with a random sign on a ``negative_gamma`` share of the channels
    (a negative BN scale turns a folded ``x >= threshold`` into ``x <= threshold``, a
    max-pool after BN no longer commutes with it). Biases + N(0, 0.1). Weights + N(0, 0.3
    std): a binary weight keeps its magnitude's role but about a tenth of the signs flip.

    Parameters
    ----------
    net : mxnet.gluon.Block
        An initialized network.
    seed : int
        Seed of the numpy generator that draws the perturbations.
    negative_gamma : float
        Share of BatchNorm channels whose gamma becomes negative.
    """
    rs = np.random.RandomState(seed)
    params = net.collect_params()
    for name, v in param_arrays(params).items():
        p, v = params[name], v.astype(np.float64)
        if name.endswith("running_mean"):
            v = v + rs.normal(0, 0.3, v.shape)
        elif name.endswith("running_var"):
            v = v * rs.uniform(0.5, 2.0, v.shape)
        elif name.endswith("gamma"):
            sign = np.where(rs.uniform(size=v.shape) < negative_gamma, -1.0, 1.0)
            v = v * rs.uniform(0.5, 1.5, v.shape) * sign
        elif name.endswith("beta"):
            v = v + rs.normal(0, 0.2, v.shape)
        elif name.endswith("bias"):
            v = v + rs.normal(0, 0.1, v.shape)
        else:
            v = v + rs.normal(0, 0.3 * (v.std() + 1e-3), v.shape)
        p.set_data(mx.nd.array(v.astype(np.float32)))


def assert_all_moved(net, before, max_unchanged=1e-4):
    """Every parameter differs from its value in ``before`` (a :func:`param_snapshot`) in
    all but a ``max_unchanged`` share of its elements (a continuous perturbation leaves an
    element unchanged only when it is below half an ulp of it: probability ~1e-7), and no
    bias, beta or running mean is all zero, no gamma or running variance all one."""
    for name, v in param_arrays(net.collect_params()).items():
        same = float((v == before[name]).mean())
        assert same <= max_unchanged, f"{name}: {same:.2%} of the elements kept their value"
        if name.endswith(("bias", "beta", "running_mean")):
            assert np.any(v != 0), f"{name} is all zero"
        if name.endswith(("gamma", "running_var")):
            assert np.any(v != 1), f"{name} is all one"


def assert_logits_match(got, ref, round_tol, flip_tol, what=""):
    """Engine logits against Gluon's for a batch of images, image by image, relative to the
    batch's largest |logit|. Returns the per-image deviations.

    A binary network's logits agree to float32 rounding (``round_tol``) unless an inner
    sign reads a value that lies within rounding of 0: then the two sides may binarize it
    differently, a discrete change that the rest of the network carries to the logits (a
    few 1e-6 .. 1e-5 of max|logit|, more on small maps). Such images are rare (measured:
    at most 2 in 16), so at most a quarter of the batch (and at least one image) may exceed
    ``round_tol``, none ``flip_tol``, and every argmax must agree.
    """
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    dev = np.abs(got - ref).reshape(len(ref), -1).max(axis=1) / np.abs(ref).max()
    flipped = int((dev > round_tol).sum())
    print(f"[logits] {what}: per-image max|got-ref|/max|ref| {np.array2string(dev, precision=1)}"
          f"; {flipped} image(s) above {round_tol:g}")
    assert (dev <= flip_tol).all(), f"{what}: deviations {dev} above {flip_tol:g}"
    assert flipped <= max(1, len(ref) // 4), f"{what}: {flipped} images above {round_tol:g}: {dev}"
    assert (got.reshape(len(ref), -1).argmax(1) == ref.reshape(len(ref), -1).argmax(1)).all(), what
    return dev
