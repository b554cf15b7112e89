"""Tests of the ``bmx-convert`` command line: good inputs write a model and print the
sizes; bad inputs exit with code 2 and a one-line reason, never a traceback."""
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

import bmx
from bmx.converter import main
from bmx.modelfile import read_model, run_model

os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
SHAPE = (1, 3, 16, 16)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A thumbnail-stem zoo model with saved parameters and its exported symbol pair."""
    d = tmp_path_factory.mktemp("cli")
    net = bmx.model_zoo.get_model("meliusnet_a", classes=10, stem="thumbnail")
    mx.random.seed(0)
    net.initialize(bmx.model_zoo.common.default_initializer())
    net(mx.nd.zeros(SHAPE))
    rs = np.random.RandomState(0)
    for p in net.collect_params().values():
        if p.name.endswith(("running_mean", "beta")):
            p.set_data(mx.nd.array(rs.normal(0, 0.3, p.shape)))
        elif p.name.endswith(("running_var", "gamma")):
            p.set_data(mx.nd.array(rs.uniform(0.5, 2, p.shape)))
    net.save_parameters(str(d / "p.params"))
    net.hybridize()
    net(mx.nd.zeros(SHAPE))
    net.export(str(d / "x"))
    return d, net


def _one_line_error(capsys, rc, *words):
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert "\n" not in err and err.startswith("bmx-convert: error:"), err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err


def test_zoo_name_with_params(trained, capsys, tmp_path):
    d, net = trained
    out = tmp_path / "m.bmx"
    rc = main(["meliusnet_a", "--params", str(d / "p.params"), "-o", str(out),
               "--classes", "10", "--stem", "thumbnail", "--input-shape", "1,3,16,16",
               "--mean", "0.5,0.25,0", "--std", "2,2,4"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "float32 size" in text and "packed size" in text and "ratio" in text
    m = read_model(str(out))
    assert m["num_classes"] == 10 and m["values"][m["inputs"][0]]["shape"] == [1, 3, 16, 16]
    assert "meliusnet_a" in m["producer"]
    assert list(m["mean"]) == [0.5, 0.25, 0.0] and list(m["std"]) == [2.0, 2.0, 4.0]
    x = np.random.RandomState(1).randn(2, 3, 16, 16).astype(np.float32)
    ref = net(mx.nd.array(x)).asnumpy()
    np.testing.assert_allclose(run_model(str(out), x), ref, rtol=1e-4,
                               atol=1e-4 * np.abs(ref).max())
    # the printed ratio is float size / file size
    ratio = float(text.split("ratio")[1].split("x")[0])
    assert ratio > 3


def test_symbol_pair(trained, capsys, tmp_path):
    d, net = trained
    out = tmp_path / "s.bmx"
    rc = main(["--symbol", str(d / "x-symbol.json"), "--params", str(d / "x-0000.params"),
               "-o", str(out), "--input-shape", "1,3,16,16"])
    assert rc == 0, capsys.readouterr().err
    a = read_model(str(out))
    assert a["num_classes"] == 10
    x = np.random.RandomState(2).randn(1, 3, 16, 16).astype(np.float32)
    ref = net(mx.nd.array(x)).asnumpy()
    np.testing.assert_allclose(run_model(str(out), x), ref, rtol=1e-4,
                               atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("argv,words", [
    (["nosuchnet", "-o", "{t}/m.bmx"], ["nosuchnet"]),
    (["meliusnet_a", "--params", "{t}/missing.params", "-o", "{t}/m.bmx"], ["missing.params"]),
    (["meliusnet_a", "--input-shape", "1,3,x,4", "-o", "{t}/m.bmx"], ["--input-shape"]),
    (["meliusnet_a", "--input-shape", "1,3,224", "-o", "{t}/m.bmx"], ["--input-shape"]),
    (["meliusnet_a", "--input-shape", "1,3,0,4", "-o", "{t}/m.bmx"], ["--input-shape"]),
    (["meliusnet_a", "--symbol", "{d}/x-symbol.json", "--params", "{d}/x-0000.params",
      "-o", "{t}/m.bmx"], ["not both"]),
    (["--symbol", "{d}/x-symbol.json", "--params", "{d}/x-0000.params", "--classes", "5",
      "-o", "{t}/m.bmx"], ["--classes"]),
    (["--symbol", "{d}/x-symbol.json", "-o", "{t}/m.bmx"], ["--params"]),
    (["--symbol", "{t}/none-symbol.json", "--params", "{d}/x-0000.params", "-o", "{t}/m.bmx"],
     ["none-symbol.json"]),
    (["meliusnet_a", "--params", "{d}/p.params"], ["-o"]),
    (["meliusnet_a", "--params", "{d}/p.params", "-o", "{t}/nodir/m.bmx"], ["nodir"]),
    (["meliusnet_a", "--stem", "weird", "-o", "{t}/m.bmx"], ["weird"]),
    (["meliusnet_a", "--classes", "0", "-o", "{t}/m.bmx"], ["--classes"]),
    (["meliusnet_a", "--mean", "1,2", "-o", "{t}/m.bmx"], ["--mean"]),
    (["meliusnet_a", "--std", "1,x,3", "-o", "{t}/m.bmx"], ["--std"]),
    (["meliusnet_a", "--std", "1,0,3", "-o", "{t}/m.bmx"], ["std"]),
    (["meliusnet_a", "--classes", "ten", "-o", "{t}/m.bmx"], ["--classes"]),
    # imagenet-stem model cannot load thumbnail-stem parameters
    (["meliusnet_a", "--params", "{d}/p.params", "--classes", "10", "-o", "{t}/m.bmx"],
     ["cannot load"]),
    # the symbol graph does not fit this input size
    (["--symbol", "{d}/x-symbol.json", "--params", "{d}/x-0000.params", "--input-shape",
      "1,5,16,16", "-o", "{t}/m.bmx"], ["shape"]),
    # freshly initialized (no --params) but the input is too small for the network
    (["meliusnet_a", "--input-shape", "1,3,2,2", "-o", "{t}/m.bmx"], ["input shape"]),
    ([], ["model"]),
    (["meliusnet_a", "--bogus"], ["--bogus"]),
])
def test_bad_input_exit_2_one_line(trained, capsys, tmp_path, argv, words):
    d, _ = trained
    argv = [a.format(d=d, t=tmp_path) for a in argv]
    rc = main(argv)
    _one_line_error(capsys, rc, *words)
    assert not (tmp_path / "m.bmx").exists()


def test_console_script_bad_input_subprocess(tmp_path):
    """The installed entry point (or ``python -m``) reports without a traceback."""
    cmd = [sys.executable, "-m", "bmx.converter", "nosuchnet", "-o", str(tmp_path / "m.bmx")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "nosuchnet" in lines[0] and "Traceback" not in r.stderr


def test_inspect_module(trained, tmp_path):
    d, _ = trained
    out = tmp_path / "m.bmx"
    assert main(["--symbol", str(d / "x-symbol.json"), "--params", str(d / "x-0000.params"),
                 "-o", str(out), "--input-shape", "1,3,16,16"]) == 0
    r = subprocess.run([sys.executable, "-m", "bmx.modelfile", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "BinaryConv2D" in r.stdout and "format version 1" in r.stdout
    r = subprocess.run([sys.executable, "-m", "bmx.modelfile", str(d / "p.params")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not a bmx model file" in r.stderr
