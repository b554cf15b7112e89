"""Faults during training and file writes: nothing is lost.

* A ``bmx-train`` process killed with SIGKILL in the middle of an epoch leaves the last
  checkpoint (``checkpoint.json`` + the epoch files it names) byte-for-byte intact and
  loadable; ``--resume`` continues from it and ends with exactly the parameters of an
  uninterrupted run (CPU, same seed).
* SIGKILL in the middle of writing a checkpoint file (the epoch's ``.params`` or the
  commit point ``checkpoint.json``) leaves the previous checkpoint usable.
* A write that fails midway (disk full, simulated by a writer that stops half-way and
  raises) leaves the old file intact and no temporary file behind: checkpoints
  (``bmx.train``), converted model files (``bmx.convert(path=...)``), the exported model
  (``model-symbol.json`` / ``model-0000.params``).
"""
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import bmx

MODEL = "binarydensenet_flex:block_config=(1,1),growth_rate=16,init_features=16,transition_channels=(32,)"
TRAIN_ARGS = ["--model", MODEL, "--dataset", "digits", "--batch-size", "64", "--seed", "3",
              "--quiet", "--no-plot"]
RUN_TIMEOUT = 600


def _args(save_dir, epochs=3, *extra):
    return TRAIN_ARGS + ["--epochs", str(epochs), "--save-dir", str(save_dir)] + list(extra)


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _checkpoint(save_dir):
    with open(os.path.join(save_dir, "checkpoint.json")) as f:
        ck = json.load(f)
    files = {k: os.path.join(save_dir, ck[k]) for k in ("params", "states", "rng")}
    return ck, files


def _snapshot(save_dir):
    ck, files = _checkpoint(save_dir)
    return ck["epoch"], {k: _digest(p) for k, p in files.items()}, _digest(os.path.join(save_dir, "checkpoint.json"))


def _assert_loadable(params_path):
    import mxnet as mx
    arrays = mx.nd.load(params_path)
    assert arrays, params_path
    for name, a in arrays.items():
        assert np.isfinite(a.asnumpy()).all(), name


def _temp_debris(save_dir):
    return sorted(n for n in os.listdir(save_dir) if n.startswith(".tmp") or n.endswith(".tmp"))


# A driver around bmx.train.run: on_batch hooks mark progress and slow the second epoch
# down so that the test's SIGKILL lands in its middle; KILL_IN_WRITE makes the process
# SIGKILL itself half-way through writing the named file of the second checkpoint.
DRIVER = textwrap.dedent("""
    import os, signal, sys, time
    from bmx import _cli, train
    from bmx.train import checkpoint
    from bmx.train.cli import _Hooks
    marker, kill_in_write, argv = sys.argv[1], sys.argv[2], sys.argv[3:]

    def on_batch(epoch, i):
        if epoch == 1 and i == 3:
            open(marker, "w").close()
        if epoch == 1 and i >= 3 and kill_in_write == "-":
            time.sleep(0.5)

    if kill_in_write != "-":
        # the one atomic write: checkpoint files through bmx.train.checkpoint's name for
        # it, JSON (checkpoint.json) through bmx._cli.write_json
        real = _cli.atomic_write
        seen = {}

        def atomic_write(path, write_fn, *a, **kw):
            name = os.path.basename(path)
            key = name if name == "checkpoint.json" else (
                name.rsplit(".", 1)[-1] if name.startswith("ckpt-") else None)
            seen[key] = seen.get(key, 0) + 1
            if key == kill_in_write and seen[key] == 2:
                def dying(tmp):
                    write_fn(tmp)
                    with open(tmp, "r+b") as f:
                        f.truncate(os.path.getsize(tmp) // 2)
                        f.flush()
                        os.fsync(f.fileno())
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(path, dying, *a, **kw)
            return real(path, write_fn, *a, **kw)
        checkpoint._atomic_write = _cli.atomic_write = atomic_write

    sys.exit(train.run(argv, hooks=_Hooks(on_batch=on_batch)))
""")


def _start_driver(tmp_path, save_dir, kill_in_write="-", epochs=3):
    marker = tmp_path / "second-epoch-started"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, "-c", DRIVER, str(marker), kill_in_write] + _args(save_dir, epochs),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return p, marker


def _train_cli(*argv):
    exe = os.path.join(os.path.dirname(sys.executable), "bmx-train")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([exe] + list(argv), capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env)


def _final_params(save_dir):
    import mxnet as mx
    ck, files = _checkpoint(save_dir)
    return ck["epoch"], {k: v.asnumpy() for k, v in mx.nd.load(files["params"]).items()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the same run without interruption."""
    d = tmp_path_factory.mktemp("uninterrupted")
    p = _train_cli(*_args(d))
    assert p.returncode == 0, p.stderr
    return _final_params(d)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume(tmp_path, uninterrupted):
    save = tmp_path / "run"
    p, marker = _start_driver(tmp_path, save)
    deadline = time.time() + RUN_TIMEOUT
    while not marker.exists():
        assert p.poll() is None, f"training ended early (rc {p.returncode}):\n{p.communicate()[1]}"
        assert time.time() < deadline, "the second epoch never started"
        time.sleep(0.05)
    before = _snapshot(save)
    os.kill(p.pid, signal.SIGKILL)
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL

    # The epoch-1 checkpoint is exactly what it was before the kill, and loadable.
    after = _snapshot(save)
    assert after == before
    assert after[0] == 0, "checkpoint.json should name the first epoch"
    ck, files = _checkpoint(save)
    _assert_loadable(files["params"])
    assert _temp_debris(save) == []

    r = _train_cli(*_args(save, 3, "--resume"))
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stderr and "continuing with epoch 2 of 3" in r.stderr, r.stderr
    epoch, params = _final_params(save)
    assert epoch == 2
    ref_epoch, ref = uninterrupted
    assert ref_epoch == 2 and params.keys() == ref.keys()
    for k in ref:
        np.testing.assert_array_equal(params[k], ref[k], err_msg=k)
    with open(save / "log.csv") as f:
        assert [ln.split(",")[0] for ln in f.read().split()[1:]] == ["1", "2", "3"]
    assert _temp_debris(save) == []


@pytest.mark.slow
@pytest.mark.parametrize("target", ["params", "checkpoint.json"])
def test_sigkill_while_writing_checkpoint(tmp_path, target):
    """The process dies half-way through writing the second epoch's ``target``: the first
    epoch's checkpoint stays the committed one, is intact, and --resume works from it."""
    save = tmp_path / "run"
    p, _ = _start_driver(tmp_path, save, kill_in_write=target)
    _, err = p.communicate(timeout=RUN_TIMEOUT)
    assert p.returncode == -signal.SIGKILL, err
    ck, files = _checkpoint(save)
    assert ck["epoch"] == 0
    for f in files.values():
        assert os.path.getsize(f) > 0
    _assert_loadable(files["params"])
    # The half-written file is a temp file (it was never renamed over anything).
    debris = _temp_debris(save)
    assert len(debris) == 1, os.listdir(save)
    r = _train_cli(*_args(save, 2, "--resume"))
    assert r.returncode == 0, r.stderr
    assert "continuing with epoch 2 of 2" in r.stderr, r.stderr
    assert _checkpoint(save)[0]["epoch"] == 1
    _assert_loadable(_checkpoint(save)[1]["params"])


# ---------------------------------------------------------------------------------------
# Failing writes (exceptions), in process


def _half_then_fail(write_fn):
    """A writer that writes the real content, cuts it in half and fails like a full disk."""
    def w(tmp):
        write_fn(tmp)
        with open(tmp, "r+b") as f:
            f.truncate(os.path.getsize(tmp) // 2)
        raise OSError(errno.ENOSPC, "No space left on device (simulated)")
    return w


def test_train_atomic_write_failure_keeps_old_file(tmp_path):
    from bmx.train import checkpoint
    target = tmp_path / "checkpoint.json"
    target.write_text('{"epoch": 0}\n')
    listing = sorted(os.listdir(tmp_path))

    def write_new(tmp):
        with open(tmp, "w") as f:
            f.write('{"epoch": 1, "padding": "' + "x" * 10000 + '"}\n')

    with pytest.raises(OSError, match="No space left"):
        checkpoint._atomic_write(str(target), _half_then_fail(write_new))
    assert target.read_text() == '{"epoch": 0}\n'
    assert sorted(os.listdir(tmp_path)) == listing
    # and a write that succeeds replaces the file completely
    checkpoint._atomic_write(str(target), write_new)
    assert json.loads(target.read_text())["epoch"] == 1
    assert sorted(os.listdir(tmp_path)) == listing


def test_checkpoint_write_failure_in_training_keeps_previous(tmp_path, monkeypatch):
    """bmx.train.run in process with the second checkpoint's .params write failing
    half-way: the run fails, the first checkpoint is untouched and complete, no temp files;
    --resume then finishes the run. The fault goes where the checkpoint files are written
    (bmx.train.checkpoint looks up its _atomic_write)."""
    from bmx import train
    from bmx.train import checkpoint
    save = tmp_path / "run"
    real = checkpoint._atomic_write
    calls = {"params": 0}

    def flaky(path, write_fn, *a, **kw):
        if os.path.basename(path).startswith("ckpt-") and path.endswith(".params"):
            calls["params"] += 1
            if calls["params"] == 2:
                return real(path, _half_then_fail(write_fn), *a, **kw)
        return real(path, write_fn, *a, **kw)

    monkeypatch.setattr(checkpoint, "_atomic_write", flaky)
    with pytest.raises(OSError, match="No space left"):
        train.run(_args(save, 2))
    assert calls["params"] == 2  # the fault was injected
    monkeypatch.setattr(checkpoint, "_atomic_write", real)
    ck, files = _checkpoint(save)
    assert ck["epoch"] == 0
    _assert_loadable(files["params"])
    assert _temp_debris(save) == []
    assert train.run(_args(save, 2, "--resume")) == 0
    assert _checkpoint(save)[0]["epoch"] == 1
    assert _temp_debris(save) == []


@pytest.fixture(scope="module")
def small_net():
    import mxnet as mx
    from bmx import model_zoo
    net = model_zoo.resnete_flex(layers=(1, 1), channels=(8, 16), classes=10, stem="thumbnail")
    net.initialize(model_zoo.default_initializer())
    net(mx.nd.zeros((1, 3, 16, 16)))
    return net


class _HalfWriter:
    """File object whose write() writes half the data and then fails (disk full)."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        self._f.write(data[: len(data) // 2])
        self._f.flush()
        raise OSError(errno.ENOSPC, "No space left on device (simulated)")

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def test_convert_write_failure_keeps_old_model(tmp_path, small_net, monkeypatch):
    from bmx import _cli, engine
    path = tmp_path / "model.bmx"
    old = bmx.convert(small_net, input_shape=(1, 3, 16, 16), path=path)
    assert path.read_bytes() == old
    listing = sorted(os.listdir(tmp_path))
    real_open = open
    # the files of the one atomic write (bmx._cli) fill the disk half-way
    monkeypatch.setattr(_cli, "open", lambda *a, **k: _HalfWriter(real_open(*a, **k)),
                        raising=False)
    with pytest.raises(OSError, match="No space left"):
        bmx.convert(small_net, input_shape=(1, 3, 8, 8), path=path)
    monkeypatch.delattr(_cli, "open")
    assert path.read_bytes() == old
    assert sorted(os.listdir(tmp_path)) == listing
    assert engine.Model(str(path)).input_shape == (1, 3, 16, 16)


def test_convert_write_interrupted_keeps_old_model(tmp_path, small_net, monkeypatch):
    """KeyboardInterrupt (Ctrl-C) during the write: same guarantee."""
    from bmx import converter
    path = tmp_path / "model.bmx"
    old = bmx.convert(small_net, input_shape=(1, 3, 16, 16), path=path)
    listing = sorted(os.listdir(tmp_path))

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(converter.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bmx.convert(small_net, input_shape=(1, 3, 8, 8), path=path)
    assert path.read_bytes() == old
    assert sorted(os.listdir(tmp_path)) == listing


def test_atomic_writes_keep_normal_permissions(tmp_path, small_net):
    """Temp file + rename must not change what a plain open() would give: mode 0666 minus
    the umask (tempfile.mkstemp creates 0600, which makes model files and checkpoints
    unreadable to the group/others who are meant to use them)."""
    from bmx.train import checkpoint
    umask = os.umask(0o022)
    try:
        path = tmp_path / "model.bmx"
        bmx.convert(small_net, input_shape=(1, 3, 16, 16), path=path)
        ck = tmp_path / "checkpoint.json"

        def w(tmp):
            with open(tmp, "w") as f:
                f.write("{}\n")
        checkpoint._atomic_write(str(ck), w)
        modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (path, ck)}
    finally:
        os.umask(umask)
    assert modes == {"model.bmx": "0o644", "checkpoint.json": "0o644"}


def test_export_failure_keeps_old_exported_model(tmp_path, monkeypatch):
    """The exported model (model-symbol.json + model-0000.params, the input of bmx-convert)
    is a model file too: a failure while re-exporting (here: after a resumed run) must
    leave the previous export intact."""
    import mxnet as mx
    from bmx import train
    save = tmp_path / "run"
    assert train.run(_args(save, 1)) == 0
    exported = save / "model-0000.params"
    old = exported.read_bytes()
    real_save = mx.nd.save

    def failing_save(fname, data):
        if os.path.basename(str(fname)) == "model-0000.params":
            with open(fname, "wb") as f:
                f.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device (simulated)")
        return real_save(fname, data)

    monkeypatch.setattr(mx.nd, "save", failing_save)
    monkeypatch.setattr(mx.ndarray, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        train.run(_args(save, 2, "--resume"))
    monkeypatch.undo()
    assert exported.read_bytes() == old
    assert _temp_debris(save) == []


# ---------------------------------------------------------------------------------------
# Damaged checkpoints: --resume reports them, it does not crash


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("one-epoch")
    p = _train_cli(*_args(d, 1))
    assert p.returncode == 0, p.stderr
    return d


@pytest.mark.slow
@pytest.mark.parametrize("part", ["params", "states", "rng"])
def test_resume_from_damaged_checkpoint_is_a_clear_error(tmp_path, one_epoch_run, part):
    import shutil
    save = tmp_path / "run"
    shutil.copytree(one_epoch_run, save)
    _, files = _checkpoint(save)
    with open(files[part], "r+b") as f:
        f.truncate(100)
    r = _train_cli(*_args(save, 2, "--resume"))
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith("bmx-train: error:"), r.stderr
    assert os.path.basename(files[part]) in lines[0], lines[0]
