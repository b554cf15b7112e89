"""The path from a training run to a prediction: ``bmx-train`` -> ``bmx-convert RUN_DIR`` ->
``bmx.engine.Model`` / ``bmx-eval``, and the command-line behaviour around it (resume of a
finished run, model specs everywhere, clear errors, fast ``--help``)."""
import json
import os
import resource
import subprocess
import sys
import warnings

import mxnet as mx
import numpy as np
import pytest

import bmx
from bmx import converter, evaluate
from bmx import train as bt
from bmx.train.cli import _Hooks
from bmx.train.loop import _Job
from bmx.data import get_dataset
from bmx.engine import Model

TINY = ("binarydensenet_flex:block_config=(1,1),growth_rate=16,init_features=16,"
        "transition_channels=(16,)")
BASE = ["--model", TINY, "--dataset", "digits", "--image-size", "8", "--batch-size", "64",
        "--quiet", "--no-plot", "--lr", "0.01"]
BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert bt.run(BASE + ["--epochs", "2", "--seed", "3", "--save-dir", str(out)]) == 0
    return out


def _gluon(run_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mx.gluon.SymbolBlock.imports(str(run_dir / "model-symbol.json"), ["data"],
                                            str(run_dir / "model-0000.params"))


def test_convert_run_dir_records_shape_and_normalisation(run_dir, tmp_path, capsys):
    out = tmp_path / "m.bmx"
    assert converter.main([str(run_dir), "-o", str(out)]) == 0
    m = Model(str(out))
    run = json.load(open(run_dir / "run.json"))
    assert m.input_shape == (1,) + tuple(run["image_shape"]) == (1, 1, 8, 8)
    # the mean/std that turn raw digits pixels (0..16) into the network's inputs
    assert m.mean == pytest.approx(run["preprocess"]["mean"], rel=1e-7)
    assert m.std == pytest.approx(run["preprocess"]["std"], rel=1e-7)
    # the run's test split: engine predictions equal Gluon's, image by image
    ds = get_dataset("digits", image_size=8)
    g = _gluon(run_dir)(mx.nd.array(ds.test_x)).asnumpy()
    e = m.predict(ds.test_x)
    np.testing.assert_array_equal(e.argmax(1), g.argmax(1))
    # preprocess() of the raw pixels gives the dataset's inputs (same float32 arithmetic)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    _, raw, _, _ = train_test_split(d.images, d.target, test_size=0.2, stratify=d.target,
                                    random_state=0)
    np.testing.assert_array_equal(m.preprocess(raw), ds.test_x)


def test_convert_run_dir_best_and_defaults(run_dir, tmp_path):
    assert converter.main([str(run_dir), "--best", "-o", str(tmp_path / "b.bmx")]) == 0
    best = Model(str(tmp_path / "b.bmx"))
    assert "best epoch" in best.producer and best.mean
    net = bt.build_model(TINY, 10, stem="thumbnail")
    net.load_parameters(str(run_dir / "best.params"))
    ds = get_dataset("digits", image_size=8)
    g = net(mx.nd.array(ds.test_x)).asnumpy()
    np.testing.assert_array_equal(best.predict(ds.test_x).argmax(1), g.argmax(1))


@pytest.mark.parametrize("extra, msg", [
    (["--input-shape", "1,1,8,8"], "--input-shape does not go with a run directory"),
    (["--classes", "10"], "--classes does not go with a run directory"),
])
def test_convert_run_dir_refuses_conflicting_flags(run_dir, tmp_path, capsys, extra, msg):
    assert converter.main([str(run_dir), "-o", str(tmp_path / "x.bmx")] + extra) == 2
    assert msg in capsys.readouterr().err


def test_convert_not_a_run_dir(tmp_path, capsys):
    assert converter.main([str(tmp_path), "-o", str(tmp_path / "x.bmx")]) == 2
    assert "not a bmx-train run directory (no run.json)" in capsys.readouterr().err


def test_convert_flex_spec_and_zoo_mismatch_named(tmp_path, capsys):
    spec = "binarydensenet_flex:block_config=(1,1),growth_rate=16,init_features=16,reduction=1"
    assert converter.main([spec, "--classes", "10", "--stem", "thumbnail", "--input-shape",
                           "1,3,16,16", "-o", str(tmp_path / "f.bmx")]) == 0
    assert Model(str(tmp_path / "f.bmx")).num_classes == 10
    net = bmx.get_model("resnete18", classes=10, stem="thumbnail")
    net.initialize()
    net(mx.nd.zeros((1, 3, 16, 16)))
    net.save_parameters(str(tmp_path / "r.params"))
    capsys.readouterr()
    assert converter.main(["resnete18", "--params", str(tmp_path / "r.params"), "--stem",
                           "thumbnail", "-o", str(tmp_path / "r.bmx")]) == 2
    err = capsys.readouterr().err
    assert "output.weight has shape (10, 512) in the file but (1000, 512)" in err
    assert "--classes 10" in err
    assert converter.main(["resnete18", "--params", str(tmp_path / "r.params"), "--classes",
                           "10", "-o", str(tmp_path / "r.bmx")]) == 2
    assert "another --stem" in capsys.readouterr().err


def test_get_model_takes_specs_and_names_typos():
    net = bmx.get_model("binarydensenet_flex:block_config=(1,1),growth_rate=32,reduction=1",
                        classes=3, stem="thumbnail")
    net.initialize()
    assert net(mx.nd.zeros((2, 1, 8, 8))).shape == (2, 3)
    with pytest.raises(ValueError, match="no option 'growthrate' \\(did you mean 'growth_rate'"):
        bmx.get_model("binarydensenet_flex:block_config=(2,2),growthrate=32,reduction=2")
    with pytest.raises(ValueError, match="needs its shape as options"):
        bmx.get_model("binarydensenet_flex")
    twin = bmx.get_model("resnete18:binary=False", classes=10)
    assert not any(type(b).__name__ == "QConv2D" for b in _blocks(twin))


def _blocks(b):
    yield b
    for c in b._children.values():
        yield from _blocks(c)


def test_resume_of_a_finished_run_is_a_no_op(run_dir):
    before = open(run_dir / "summary.json").read()
    p = subprocess.run([sys.executable, "-m", "bmx.train"] + BASE +
                       ["--epochs", "2", "--seed", "3", "--save-dir", str(run_dir), "--resume"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "already finished 2 of --epochs 2; nothing to do" in lines[0]
    assert "Traceback" not in p.stderr
    assert open(run_dir / "summary.json").read() == before


def test_bmx_eval_counts_engine_gluon_disagreements(run_dir, tmp_path, capsys):
    model = tmp_path / "m.bmx"
    assert converter.main([str(run_dir), "-o", str(model)]) == 0
    capsys.readouterr()
    assert evaluate.main([str(model), "--dataset", "digits", "--run", str(run_dir),
                          "--out", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    rep = json.load(open(tmp_path / "ev" / "eval.json"))
    ds = get_dataset("digits", image_size=8)
    e = Model(str(model)).predict(ds.test_x).argmax(1)
    g = _gluon(run_dir)(mx.nd.array(ds.test_x)).asnumpy().argmax(1)
    assert rep["images"] == 360 and rep["correct"] == int((e == ds.test_y).sum())
    assert rep["engine_gluon_disagreements"] == int((e != g).sum()) == 0
    m = np.array(rep["confusion"])
    assert m.sum() == 360 and np.trace(m) == rep["correct"]
    assert (m.sum(1) == np.bincount(ds.test_y, minlength=10)).all()
    assert (tmp_path / "ev" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert "differ on 0 of 360" in out


def test_init_from_copies_a_same_structure_network(tmp_path, capsys):
    twin = tmp_path / "twin"
    assert bt.run(BASE + ["--epochs", "1", "--float-twin", "--save-dir", str(twin)]) == 0
    init = tmp_path / "init"
    hooks = _Hooks(on_batch=lambda e, b: _stop_after_init(e, b))
    with pytest.raises(_Stop):
        bt.run(BASE + ["--epochs", "1", "--init-from", str(twin / "best.params"),
                       "--save-dir", str(init)], hooks=hooks)
    src = list(mx.nd.load(str(twin / "best.params")).values())
    got = [p.data().asnumpy() for p in _Stop.net_params]
    assert len(src) == len(got)
    for a, b in zip(src, got):
        np.testing.assert_array_equal(a.asnumpy(), b)
    capsys.readouterr()
    assert bt.run(BASE + ["--epochs", "1", "--init-from", str(tmp_path / "nope.params"),
                          "--save-dir", str(init)]) == 2
    assert "--init-from" in capsys.readouterr().err


class _Stop(Exception):
    net_params = None


def _stop_after_init(epoch, batch):
    # the network is reachable from the frames of bmx.train.loop, through the run's _Job;
    # read its parameters before the first step changes them
    import inspect
    frame = inspect.currentframe().f_back
    while frame is not None:
        job = next((v for v in frame.f_locals.values() if isinstance(v, _Job)), None)
        if job is not None:
            break
        frame = frame.f_back
    assert job is not None, "no _Job in the frames that called on_batch"
    _Stop.net_params = list(job.net.collect_params().values())
    raise _Stop


@pytest.mark.parametrize("cmd, msg", [
    (["bmx-trian", "--dataset", "digits"], "command not found: bmx-trian"),
    (["bmx-train", "--dataset", "digits"], "needs --kvstore dist_sync"),
])
def test_launch_refuses_bad_commands(cmd, msg):
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    p = subprocess.run([sys.executable, "-m", "bmx.launch", "-n", "2", "--"] + cmd,
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2 and msg in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("module", ["bmx.train", "bmx.converter", "bmx.bench", "bmx.launch",
                                    "bmx.evaluate"])
def test_cli_help_and_version_are_fast_and_load_no_mxnet(module):
    code = (f"import sys, runpy; sys.argv = ['x', '--version']\n"
            f"try:\n    runpy.run_module('{module}', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "print('mxnet' in sys.modules)")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "False"
    assert bmx.__version__ in p.stdout
    # CPU seconds of the child, not wall time (which a loaded machine stretches): MXNet's
    # import alone costs ~2.5 s of CPU here, a CLI without it ~0.15 s.
    assert cpu < 1.0, cpu
