"""The installed C++ package: ``cmake --install`` into a temporary prefix, build
``examples/cpp`` against it with ``find_package(bmx)``, and check that ``bmx_classify``
prints the same top-5 as :class:`bmx.engine.Model` and fails cleanly on bad input."""
import os
import shutil
import subprocess

import mxnet as mx
import numpy as np
import pytest

import bmx
from bmx.engine import Model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


def _run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def classify(tmp_path_factory):
    if shutil.which("cmake") is None:
        pytest.skip("cmake not available")
    tmp = tmp_path_factory.mktemp("cpp_api")
    build, prefix, ex = tmp / "build", tmp / "prefix", tmp / "example"
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    jobs = os.environ.get("BMX_TEST_JOBS", "2")
    _run(["cmake", "-S", ROOT, "-B", build, *gen, "-DCMAKE_BUILD_TYPE=Release", "-DBMX_BUILD_TESTS=OFF",
          "-DBMX_BUILD_EXAMPLES=OFF", "-DBMX_BUILD_PYTHON=OFF", f"-DCMAKE_INSTALL_PREFIX={prefix}"])
    _run(["cmake", "--build", build, "-j", jobs])
    _run(["cmake", "--install", build])
    assert (prefix / "include" / "bmx" / "engine.h").exists()
    assert (prefix / "lib" / "cmake" / "bmx" / "bmxConfig.cmake").exists()
    # The example only sees the installed package.
    _run(["cmake", "-S", os.path.join(ROOT, "examples", "cpp"), "-B", ex, *gen,
          f"-DCMAKE_PREFIX_PATH={prefix}"])
    _run(["cmake", "--build", ex, "-j", jobs])
    exe = ex / "bmx_classify"
    assert exe.exists()
    return exe


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    mx.random.seed(3)
    net = bmx.get_model("resnete18", classes=10, stem="thumbnail")
    net.initialize(mx.init.Xavier(magnitude=2))
    net(mx.nd.zeros((1, 3, 32, 32)))
    net.hybridize()
    path = tmp_path_factory.mktemp("model") / "resnete18.bmx"
    path.write_bytes(bmx.convert(net, input_shape=(1, 3, 32, 32)))
    return path


def _top5(out):
    rows = [line.split() for line in out.strip().splitlines() if not line.startswith("image")]
    return [(int(i), float(v)) for _, i, v in rows]


def test_example_prints_python_top5(classify, model_file, tmp_path):
    x = np.random.RandomState(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    tensor = tmp_path / "x.f32"
    x.tofile(tensor)
    logits = Model(str(model_file)).predict(x)[0]
    want = np.argsort(-logits, kind="stable")[:5]
    for threads in ("1", "2"):
        r = _run([classify, model_file, tensor, "--threads", threads])
        got = _top5(r.stdout)
        assert [i for i, _ in got] == [int(i) for i in want]
        np.testing.assert_allclose([v for _, v in got], logits[want], rtol=1e-5, atol=1e-5)


def test_example_batch_file(classify, model_file, tmp_path):
    x = np.random.RandomState(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    tensor = tmp_path / "x3.f32"
    x.tofile(tensor)
    r = _run([classify, model_file, tensor])
    assert r.stdout.count("image") == 3
    logits = Model(str(model_file)).predict(x)
    assert _top5(r.stdout)[0][0] == int(np.argmax(logits[0]))


@pytest.mark.parametrize("case", ["missing model", "missing tensor", "short tensor", "ragged tensor",
                                  "not a model", "truncated model", "nan", "no args", "bad threads",
                                  "unknown flag"])
def test_example_bad_input_exit_2(classify, model_file, tmp_path, case):
    good = tmp_path / "good.f32"
    np.zeros((1, 3, 32, 32), np.float32).tofile(good)
    args = {
        "missing model": [tmp_path / "nope.bmx", good],
        "missing tensor": [model_file, tmp_path / "nope.f32"],
        "no args": [],
        "bad threads": [model_file, good, "--threads", "zero"],
        "unknown flag": [model_file, good, "--fast"],
    }.get(case)
    if args is None:
        f = tmp_path / "f"
        if case == "short tensor":
            np.zeros(100, np.float32).tofile(f)
            args = [model_file, f]
        elif case == "ragged tensor":
            f.write_bytes(b"\0" * 4098)
            args = [model_file, f]
        elif case == "not a model":
            args = [good, good]
        elif case == "truncated model":
            f.write_bytes(model_file.read_bytes()[:1000])
            args = [f, good]
        elif case == "nan":
            x = np.zeros((1, 3, 32, 32), np.float32)
            x[0, 0, 0, 0] = np.nan
            x.tofile(f)
            args = [model_file, f]
    r = subprocess.run([classify, *args], capture_output=True, text=True)
    assert r.returncode == 2, (case, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bmx_classify: "), (case, r.stderr)
    assert r.stdout == ""
