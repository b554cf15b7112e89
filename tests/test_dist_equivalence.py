"""dist_sync data parallelism computes what one process computes: 2 workers with batch B
each (bmx.train.dist._DistSync over MXNet's parameter server, started by bmx.launch)
against one process with batch 2B on the same samples in the same order (Li et al., "Scaling
Distributed Machine Learning with the Parameter Server", 2014; Goyal et al., "Accurate,
Large Minibatch SGD", 2017: the summed gradient of the two halves is the gradient of the
whole batch).

The network has no BatchNorm: its batch statistics would make B and 2B differ on purpose.
The optimizer is SGD with momentum, not Adam: Adam divides by sqrt(v), which turns a
gradient that is ~0 up to rounding into a full step of either sign, so a few ulps of
summation order could move a weight by 2 * lr; SGD moves it by lr times those ulps.
"""
import os
import sys
import textwrap

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

import bmx
from bmx import launch as bl

B, STEPS, WORKERS = 16, 8, 2
LR, MOMENTUM = 0.05, 0.9
EPS32 = float(np.finfo(np.float32).eps)

# The worker: every process of the job runs it; for the scheduler and the server, MXNet's
# import runs their loop and exits. Workers take rows [2Bs + rB, 2Bs + (r+1)B) of step s.
WORKER = textwrap.dedent("""
    import sys
    import mxnet as mx
    import numpy as np
    from mxnet import autograd, gluon, nd
    sys.path.insert(0, sys.argv[2])
    from test_dist_equivalence import B, STEPS, WORKERS, LR, MOMENTUM, make_net
    from bmx.train.dist import _DistSync

    d = sys.argv[1]
    kv = mx.kv.create("dist_sync")
    rank, n = kv.rank, kv.num_workers
    assert n == WORKERS, n
    net = make_net()
    net.load_parameters(d + "/init.params")
    data = np.load(d + "/data.npz")
    trainer = gluon.Trainer(net.collect_params(), "sgd",
                            {"learning_rate": LR, "momentum": MOMENTUM}, kvstore=None)
    sync = _DistSync(kv, net, mx.cpu())
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    for s in range(STEPS):
        lo = s * B * n + rank * B
        x, y = nd.array(data["x"][lo:lo + B]), nd.array(data["y"][lo:lo + B])
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        sync.allreduce_grads()
        trainer.step(B * n)  # as bmx-train: the summed gradient of B * n samples
    mx.nd.waitall()
    net.save_parameters(d + f"/rank{rank}.params")
""")


def make_net():
    """A small binary net without BatchNorm: float conv, sign + binary conv (bmx.nn), ReLU,
    Dense; initialized so that every weight and bias is nonzero."""
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 3, padding=1, in_channels=1),
            bmx.nn.BinaryConvolution(16, kernel_size=3, padding=1, in_channels=8),
            nn.Activation("relu"), nn.Flatten(), nn.Dense(10, in_units=16 * 8 * 8))
    return net


def _reference(d, data):
    """One process, batch 2B: the same steps on the concatenated batches."""
    net = make_net()
    net.load_parameters(str(d / "init.params"))
    trainer = gluon.Trainer(net.collect_params(), "sgd",
                            {"learning_rate": LR, "momentum": MOMENTUM}, kvstore=None)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    bb = B * WORKERS
    for s in range(STEPS):
        x = nd.array(data["x"][s * bb:(s + 1) * bb])
        y = nd.array(data["y"][s * bb:(s + 1) * bb])
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(bb)
    return net


def test_two_workers_equal_one_process_with_double_batch(tmp_path):
    rs = np.random.RandomState(7)
    data = {"x": rs.randn(STEPS * B * WORKERS, 1, 8, 8).astype(np.float32),
            "y": rs.randint(0, 10, STEPS * B * WORKERS).astype(np.float32)}
    np.savez(tmp_path / "data.npz", **data)
    mx.random.seed(3)
    net = make_net()
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    for p in net.collect_params().values():
        if p.name.endswith("bias"):
            p.set_data(mx.nd.array(rs.normal(0, 0.1, p.shape)))
    init = {k: p.data().asnumpy().copy() for k, p in net._collect_params_with_prefix().items()}
    assert all(np.all(v != 0) for v in init.values())
    net.save_parameters(str(tmp_path / "init.params"))
    (tmp_path / "worker.py").write_text(WORKER)
    here = os.path.dirname(os.path.abspath(__file__))
    rc = bl.launch([sys.executable, str(tmp_path / "worker.py"), str(tmp_path), here],
                   num_workers=WORKERS, num_servers=1, timeout=240)
    assert rc == 0, f"bmx.launch exit code {rc} (worker output above)"

    ref = _reference(tmp_path, data)
    got = [make_net() for _ in range(WORKERS)]
    for r, g in enumerate(got):
        g.load_parameters(str(tmp_path / f"rank{r}.params"))
    # structural names ("1.qconv.weight"), the same in every instance of make_net()
    params = lambda n: {k: p.data().asnumpy() for k, p in n._collect_params_with_prefix().items()}  # noqa: E731
    ref_p, got_p = params(ref), [params(g) for g in got]
    assert sorted(ref_p) == sorted(init) == sorted(got_p[0]) and len(ref_p) == 5
    worst = 0.0
    for name, want in ref_p.items():
        # every worker applied the same summed gradient: the same bits
        for r in range(1, WORKERS):
            np.testing.assert_array_equal(got_p[r][name], got_p[0][name], err_msg=name)
        # Expected: the server adds the two halves' gradient sums, which rounds differently
        # from one sum over 2B: a few float32 ulps of the gradient per step. SGD turns that
        # into lr * (a few ulps of g), mostly below an ulp of w, so a weight moves to the
        # other neighbour of a rounding boundary at most about once per step: <= STEPS ulps,
        # STEPS * eps32 * max|w| (8 steps: 9.5e-7 of max|w|; measured 1.05e-6). The
        # tolerance is 4x that.
        tol = 4 * STEPS * EPS32 * np.abs(want).max()
        dev = np.abs(got_p[0][name] - want).max()
        worst = max(worst, dev / np.abs(want).max())
        assert dev <= tol, (name, dev, tol)
        # and training moved them: the comparison is not one of initial values
        assert np.abs(want - init[name]).max() > 100 * tol, name
    print(f"\n[dist equivalence] {WORKERS} workers x batch {B} vs 1 x {B * WORKERS}, {STEPS} SGD "
          f"steps: max|dist - single| / max|w| = {worst:.2e} "
          f"(tolerance {4 * STEPS * EPS32:.1e})")
