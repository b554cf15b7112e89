"""Many Python threads calling ``predict`` on one ``bmx.engine.Model`` at once.

The runtime documents (``bmx/engine.h``, ``bmx.engine.Model``) that any number of threads
may call ``predict`` on one Model concurrently: the GIL is released and each concurrent
call borrows its own execution context (activation arena, scratch, worker pool). These
tests start the threads together behind a barrier, mix batch sizes (contexts of different
sizes), thread counts and bad inputs, and compare every result with serial calls: the
engine is deterministic, so the logits must be bit-identical.
"""
import threading

import numpy as np
import pytest

import bmx
from bmx import engine

HW = 32
N_THREADS = 8


@pytest.fixture(scope="module")
def model_bytes():
    """A small MeliusNet (dense + improvement blocks, grouped transition with channel
    shuffle: in-place concat and in-place add in the plan), thumbnail stem, 32x32."""
    import mxnet as mx
    from bmx import model_zoo
    mx.random.seed(9)
    net = model_zoo.meliusnet_flex(block_config=(2, 1), growth_rate=16, init_features=32,
                                   transition_channels=(32,), transition_groups=2, channel_shuffle=2,
                                   classes=10, stem="thumbnail")
    net.initialize(model_zoo.default_initializer())
    net(mx.nd.zeros((1, 3, HW, HW)))
    rng = np.random.default_rng(2)
    for name, p in net.collect_params().items():
        if name.endswith("running_mean"):
            p.set_data(rng.normal(0, 0.5, p.shape).astype(np.float32))
        elif name.endswith("running_var"):
            p.set_data(rng.uniform(0.5, 2.0, p.shape).astype(np.float32))
    return bmx.convert(net, input_shape=(1, 3, HW, HW))


def _inputs(count, seed=0):
    rng = np.random.default_rng(seed)
    # batch sizes 1..4 so concurrent calls need contexts of different sizes
    return [rng.standard_normal((1 + i % 4, 3, HW, HW)).astype(np.float32) for i in range(count)]


def _run_together(fns):
    """Run the callables in threads released together; return their results or raise the
    first exception (with the thread index)."""
    barrier = threading.Barrier(len(fns))
    results = [None] * len(fns)
    errors = []

    def body(i, fn):
        try:
            barrier.wait()
            results[i] = fn()
        except BaseException as e:  # re-raised in the main thread
            errors.append((i, e))

    threads = [threading.Thread(target=body, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a predict() thread hung"
    if errors:
        i, e = errors[0]
        raise AssertionError(f"thread {i} failed: {type(e).__name__}: {e}") from e
    return results


@pytest.mark.parametrize("num_threads", [1, 2])
def test_concurrent_predict_equals_serial(model_bytes, num_threads):
    m = engine.Model(model_bytes, num_threads=num_threads)
    xs = _inputs(3 * N_THREADS)
    serial = [m.predict(x) for x in xs]

    def worker(k):
        # each thread runs several inputs, so calls overlap in every phase
        return [m.predict(xs[j]) for j in range(k, len(xs), N_THREADS)]

    for _ in range(3):
        got = _run_together([lambda k=k: worker(k) for k in range(N_THREADS)])
        for k in range(N_THREADS):
            for out, j in zip(got[k], range(k, len(xs), N_THREADS)):
                np.testing.assert_array_equal(out, serial[j], err_msg=f"thread {k}, input {j}")


def test_concurrent_same_input_same_output(model_bytes):
    m = engine.Model(model_bytes)
    x = _inputs(1, seed=4)[0]
    ref = m.predict(x)
    outs = _run_together([lambda: [m.predict(x) for _ in range(5)]] * (2 * N_THREADS))
    for per_thread in outs:
        for out in per_thread:
            np.testing.assert_array_equal(out, ref)


def test_concurrent_bad_inputs_do_not_disturb_good_calls(model_bytes):
    """Threads feeding bad inputs (NaN, wrong shape, wrong dtype) next to good ones: the
    bad calls raise ValueError, the good ones are unaffected."""
    m = engine.Model(model_bytes)
    xs = _inputs(N_THREADS, seed=5)
    serial = [m.predict(x) for x in xs]
    bad = [np.full((2, 3, HW, HW), np.nan, np.float32), np.zeros((1, 3, HW, HW + 1), np.float32),
           np.zeros((1, 3, HW, HW), np.float64)]

    def good(j):
        return [m.predict(xs[j]) for _ in range(3)]

    def failing(b):
        caught = 0
        for _ in range(3):
            try:
                m.predict(b)
            except ValueError:
                caught += 1
        return caught

    fns = [lambda j=j: good(j) for j in range(N_THREADS)] + [lambda b=b: failing(b) for b in bad]
    res = _run_together(fns)
    for j in range(N_THREADS):
        for out in res[j]:
            np.testing.assert_array_equal(out, serial[j])
    assert res[N_THREADS:] == [3, 3, 3]


def test_set_num_threads_while_predicting(model_bytes):
    """num_threads changed by one thread while others predict: calls already running keep
    their setting, and every result equals the serial one bit for bit. On this model every
    op splits work across threads without changing a summation order; that is not true of
    every model (BinaryDenseNet-28's pointwise float convs on 4x4 maps round 1-3 ulps
    differently with 2 threads: tests/test_engine_model.py allows for it)."""
    m = engine.Model(model_bytes)
    xs = _inputs(N_THREADS, seed=6)
    serial = [m.predict(x) for x in xs]
    stop = threading.Event()

    def toggler():
        n = 0
        while not stop.is_set():
            m.num_threads = 1 + n % 3
            n += 1
        return n

    def worker(j):
        return [m.predict(xs[j]) for _ in range(4)]

    t = threading.Thread(target=toggler)
    t.start()
    try:
        res = _run_together([lambda j=j: worker(j) for j in range(N_THREADS)])
    finally:
        stop.set()
        t.join()
    for j in range(N_THREADS):
        for out in res[j]:
            np.testing.assert_array_equal(out, serial[j])


def test_many_models_concurrently(model_bytes):
    """Loading and running separate Models in parallel (load releases the GIL too)."""
    x = _inputs(1, seed=7)[0]
    ref = engine.Model(model_bytes).predict(x)

    def load_and_run():
        m = engine.Model(model_bytes)
        return m.predict(x)

    for out in _run_together([load_and_run] * N_THREADS):
        np.testing.assert_array_equal(out, ref)


def test_model_freed_while_other_models_run(model_bytes):
    """Dropping Models in some threads while others predict: no use-after-free (this is
    the test that ASan, via make test-asan, makes meaningful)."""
    xs = _inputs(N_THREADS, seed=8)
    ref_model = engine.Model(model_bytes)
    serial = [ref_model.predict(x) for x in xs]

    def churn(j):
        outs = []
        for _ in range(3):
            m = engine.Model(model_bytes)
            outs.append(m.predict(xs[j]))
            del m
        return outs

    res = _run_together([lambda j=j: churn(j) for j in range(N_THREADS)])
    for j in range(N_THREADS):
        for out in res[j]:
            np.testing.assert_array_equal(out, serial[j])
