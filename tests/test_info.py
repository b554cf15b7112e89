"""bmx-info (bmx/info.py) on a converted tiny model: the summary agrees with the file reader
and with figures computed from the Gluon network, the DOT output parses with Graphviz,
bad input exits 2 with one line, and it runs with MXNet unimportable."""
import os
import re
import shutil
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

import bmx
from bmx import info
from bmx.modelfile import read_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IN_SHAPE = (1, 3, 8, 8)
MEAN, STD = [0.25, 0.5, 0.75], [2.0, 3.0, 4.0]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A float stem, one binary 3x3 conv (16 -> 32 channels), pooling and a classifier."""
    mx.random.seed(3)
    net = nn.HybridSequential()
    with net.name_scope():
        net.add(nn.Conv2D(16, 3, padding=1, use_bias=False), nn.BatchNorm())
        net.add(bmx.nn.BinaryConvolution(32, kernel_size=3, padding=1), nn.BatchNorm())
        net.add(nn.Activation("relu"), nn.MaxPool2D(2), nn.GlobalAvgPool2D(), nn.Dense(10))
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros(IN_SHAPE))
    path = str(tmp_path_factory.mktemp("info") / "tiny.bmx")
    bmx.convert(net, input_shape=IN_SHAPE, path=path, mean=MEAN, std=STD)
    return path, net


def _rows(text):
    """The per-op table rows of bmx-info's output: (index, type, name, output shape)."""
    rows = []
    for ln in text.splitlines():
        m = re.match(r"^\s*(\d+)\s+(\w+)\s+(\S+)\s+[\d,]+\s+\d+\s+(\[[\d, ]+\])", ln)
        if m:
            rows.append((int(m[1]), m[2], m[3], m[4]))
    return rows


def test_summary_matches_reader_and_network(tiny_model, capsys):
    path, net = tiny_model
    assert info.main([path]) == 0
    out = capsys.readouterr().out
    ref = read_model(path)
    expect = [(i, op["type"], op["name"], str(ref["values"][op["outputs"][0]]["shape"]))
              for i, op in enumerate(ref["ops"])]
    assert _rows(out) == expect
    assert [t for _, t, _, _ in expect].count("BinaryConv2D") == 1
    assert f"{os.path.getsize(path)} bytes" in out
    assert ref["producer"] and f"producer:   {ref['producer']}" in out
    assert "mean:       [0.25, 0.5, 0.75]" in out and "std:        [2, 3, 4]" in out

    # Independent figures from the Gluon parameters: the binary conv's weights are 1 bit
    # each, its MACs are C_out*H*W * C_in*3*3 at batch 1 (padding 1 keeps 8x8).
    (wname,) = [k for k in net.collect_params() if "binaryconvolution" in k and k.endswith("weight")]
    wshape = net.collect_params()[wname].shape
    s = info.summarize(ref)
    assert s["binary_weights"] == int(np.prod(wshape)) == 32 * 16 * 9
    assert s["binary_macs"] == 32 * 8 * 8 * 16 * 9
    assert f"{s['binary_weights']} binary (1 bit" in out
    bits = {op["type"]: op["bits"] for op in s["ops"]}
    assert bits["Sign"] == 1 and bits["BinaryConv2D"] == 32  # Sign writes packed bits


def test_binary_dense_counts_as_binary(tmp_path):
    """A binary classifier (QActivation -> QDense): its weights and MACs count as binary,
    units x C*H*W each, as the Gluon parameters give them."""
    mx.random.seed(4)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(5, 3, padding=1), nn.BatchNorm(), bmx.nn.QActivation(), bmx.nn.QDense(7))
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros(IN_SHAPE))
    s = info.summarize(read_model(bmx.convert(net, IN_SHAPE)))
    assert s["binary_weights"] == s["binary_macs"] == int(np.prod(net[3].weight.shape)) == 7 * 5 * 8 * 8


def test_kbit_conv_counts_by_the_papers_rule():
    """A 2-bit-activation, 3-bit-weight conv: its weights count at 3 bits (size), its MACs
    as binary MACs, its BOPs as MACs x 3 x 2 (Zhou et al., DoReFa-Net, 2016), as
    bmx.summary counts the Gluon net; the Levels value shows 2 bits."""
    mx.random.seed(5)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(5, 3, padding=1), nn.BatchNorm(),
            bmx.nn.BinaryConvolution(6, 3, padding=1, bits=3, bits_a=2), nn.Flatten())
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros(IN_SHAPE))
    model = read_model(bmx.convert(net, IN_SHAPE))
    s = info.summarize(model)
    k = 5 * 3 * 3
    macs = 6 * IN_SHAPE[2] * IN_SHAPE[3] * k
    assert s["binary_weights"] == 6 * k and s["binary_weight_bits"] == 3 * 6 * k
    assert s["binary_macs"] == macs and s["bops"] == macs * 3 * 2
    assert {op["type"]: op["bits"] for op in s["ops"]}["Quantize"] == 2
    assert bmx.summary(net, IN_SHAPE).bops == s["bops"]
    out = info.format_summary(model)
    assert "binary (1 to 4 bits" in out and "BOPs (k-bit MACs x bits_w x bits_a)" in out


def test_dot_parses_with_graphviz(tiny_model, tmp_path):
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz)")
    path, _ = tiny_model
    dot_file, svg_file = tmp_path / "net.dot", tmp_path / "net.svg"
    assert info.main([path, "-q", "--dot", str(dot_file), "--svg", str(svg_file)]) == 0
    r = subprocess.run(["dot", "-Tsvg"], input=dot_file.read_bytes(), capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    ref = read_model(path)
    svg = r.stdout.decode()
    # one node per op plus input and output; one edge per op input plus the output edge
    assert svg.count('class="node"') == len(ref["ops"]) + 2
    assert svg.count('class="edge"') == sum(len(op["inputs"]) for op in ref["ops"]) + 1
    for op in ref["ops"]:
        assert op["name"] in svg
    assert "<svg" in svg_file.read_text() and svg_file.read_text().count('class="node"') == len(ref["ops"]) + 2


def test_svg_without_graphviz_says_how_to_install(tiny_model, tmp_path, monkeypatch, capsys):
    path, _ = tiny_model
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot here
    assert info.main([path, "--svg", str(tmp_path / "x.svg")]) == 2
    err = capsys.readouterr().err
    assert "apt-get install graphviz" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.svg").exists()


@pytest.mark.parametrize("case", ["missing", "directory", "garbage", "truncated"])
def test_bad_input_exits_2_with_one_line(tiny_model, tmp_path, capsys, case):
    path, _ = tiny_model
    bad = tmp_path / "bad.bmx"
    if case == "directory":
        bad = tmp_path
    elif case == "garbage":
        bad.write_bytes(b"not a model at all, just some bytes")
    elif case == "truncated":
        bad.write_bytes(open(path, "rb").read()[:100])
    assert info.main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bmx-info: error: ") and len(err.strip().splitlines()) == 1


def test_cli_version_and_no_mxnet(tiny_model):
    path, _ = tiny_model
    # MXNet made unimportable: bmx-info must not need it.
    code = ("import sys; sys.modules['mxnet'] = None\n"
            "from bmx.info import main\n"
            f"rc = main([{path!r}])\n"
            "assert 'mxnet' not in [m for m, v in sys.modules.items() if v is not None]\n"
            "sys.exit(rc)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "BinaryConv2D" in r.stdout
    r = subprocess.run([sys.executable, "-m", "bmx.info", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == f"bmx-info {bmx.__version__}"
