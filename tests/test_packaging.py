"""Packaging: the wheel built by `pip wheel .` in an isolated build environment installs
into a fresh virtual environment without MXNet, where the engine runs a model converted
by the full install and gives bit-identical logits; the training API names the extra to
install when MXNet is missing."""
import json
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Kept between runs (build/ is ignored by git): the CMake tree of the wheel build, so a
# rerun recompiles only what changed, and the numpy/flatbuffers wheels of the venv.
CACHE = os.path.join(ROOT, "build", "packaging")


def _run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(cmd, **kw)


def _no_mxnet(code):
    """Run ``code`` in a fresh interpreter of the full install with MXNet unimportable."""
    return _run([sys.executable, "-c", "import sys; sys.modules['mxnet'] = None\n" + code], cwd=ROOT)


def test_import_bmx_and_engine_do_not_load_mxnet():
    r = _run([sys.executable, "-c", "import bmx, sys; import bmx.engine, bmx.info, bmx.modelfile; "
              "print('mxnet' in sys.modules)"], cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stdout + r.stderr


@pytest.mark.parametrize("what,code", [
    ("bmx.nn", "import bmx.nn"),
    ("bmx.model_zoo", "import bmx\nbmx.get_model('resnete18')"),
    ("bmx.convert", "import bmx\nbmx.convert(symbol_file='x-symbol.json', params_file='x.params', input_shape=(1, 3, 8, 8))"),
])
def test_training_api_without_mxnet_names_the_extra(what, code):
    r = _no_mxnet(code)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("bmx._mxnet.MXNetMissingError:"), r.stderr[-2000:]
    assert "pip install 'bmx[train]'" in last


@pytest.mark.parametrize("prog,code", [
    ("bmx-train", "from bmx.train import main\nsys.exit(main(['--dataset', 'digits', '--epochs', '1']))"),
    ("bmx-convert", "from bmx.converter import main\nsys.exit(main(['resnete18', '-o', 'x.bmx']))"),
])
def test_clis_without_mxnet_say_so_in_one_line(prog, code, tmp_path):
    """The CLIs report a missing MXNet like any bad input: one line, exit code 2."""
    r = _run([sys.executable, "-c", "import sys; sys.modules['mxnet'] = None\n" + code],
             cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: ")
    assert "pip install 'bmx[train]'" in lines[0] and "Traceback" not in r.stderr


def _wheel_metadata(whl):
    with zipfile.ZipFile(whl) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        eps = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
        so = next(i for i in z.infolist() if re.match(r"bmx/_engine.*\.so$", i.filename))
    return names, meta, eps, so


@pytest.mark.slow
def test_engine_only_install_matches_full_install(tmp_path):
    # 1. The wheel, built as a user would: pip's isolated build environment installs the
    #    build requirements of pyproject.toml.
    dist = tmp_path / "dist"
    env = dict(os.environ, BMX_BUILD_DIR=os.path.join(CACHE, "cmake"))
    r = _run([sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "-w", str(dist)], env=env, timeout=3600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (whl,) = dist.glob("bmx-*.whl")
    names, meta, eps, so = _wheel_metadata(whl)
    assert "bmx/info.py" in names and "bmx/fb/Model.py" in names and "bmx/_mxnet.py" in names
    requires = re.findall(r"^Requires-Dist: (.*)$", meta, re.M)
    core = [q for q in requires if "extra ==" not in q]
    assert sorted(re.split(r"[ ><=;]", q)[0] for q in core) == ["flatbuffers", "numpy"], core
    assert any(q.startswith("mxnet==1.9.1") and 'extra == "train"' in q for q in requires), requires
    for script in ("bmx-info", "bmx-convert", "bmx-train", "bmx-bench", "bmx-launch", "bmx-eval"):
        assert f"{script} = " in eps, eps
    print(f"\nwheel {whl.name}: {whl.stat().st_size / 2**20:.2f} MiB; {so.filename} "
          f"{so.file_size / 2**20:.2f} MiB ({so.compress_size / 2**20:.2f} MiB compressed)")

    # 2. numpy and flatbuffers wheels for the venv (downloaded once, then reused).
    house = os.path.join(CACHE, "wheelhouse")
    os.makedirs(house, exist_ok=True)
    have = os.listdir(house)
    if not any(n.startswith("numpy-") for n in have) or not any(n.startswith("flatbuffers-") for n in have):
        r = _run([sys.executable, "-m", "pip", "download", "--only-binary=:all:", "-d", house,
                  "numpy", "flatbuffers"], timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]

    # 3. A fresh venv with the engine-only install, offline.
    venv = tmp_path / "venv"
    r = _run([sys.executable, "-m", "venv", str(venv)], timeout=600)
    assert r.returncode == 0, r.stderr
    vpy = str(venv / "bin" / "python")
    r = _run([vpy, "-m", "pip", "install", "-q", "--no-index", "--find-links", house,
              "--find-links", str(dist), "bmx"], timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    # 4. A model converted by the full install, and its logits here.
    import mxnet as mx
    from mxnet.gluon import nn

    import bmx
    mx.random.seed(11)
    net = nn.HybridSequential()
    with net.name_scope():
        net.add(nn.Conv2D(16, 3, padding=1, use_bias=False), nn.BatchNorm())
        net.add(bmx.nn.BinaryConvolution(32, kernel_size=3, padding=1), nn.BatchNorm())
        net.add(nn.MaxPool2D(2), bmx.nn.BinaryConvolution(32, kernel_size=3, padding=1), nn.BatchNorm())
        net.add(nn.Activation("relu"), nn.GlobalAvgPool2D(), nn.Dense(10))
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 16, 16)))
    model = tmp_path / "model.bmx"
    bmx.convert(net, input_shape=(1, 3, 16, 16), path=str(model), mean=[120.0, 110.0, 100.0], std=[60.0, 50.0, 40.0])
    raw = np.random.default_rng(5).uniform(0, 255, (8, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "raw.npy", raw)
    full = bmx.engine.Model(str(model))
    expect = full.predict(full.preprocess(raw))

    # 5. The same in the engine-only venv (cwd and environment keep the source tree away).
    script = (
        "import json, sys, numpy as np\n"
        "import bmx\n"
        "from bmx import engine\n"
        f"m = engine.Model({str(model)!r})\n"
        f"y = m.predict(m.preprocess(np.load({str(tmp_path / 'raw.npy')!r})))\n"
        f"np.save({str(tmp_path / 'venv_logits.npy')!r}, y)\n"
        "print(json.dumps({'file': bmx.__file__, 'numpy': np.__version__,\n"
        "                  'mxnet_loaded': 'mxnet' in sys.modules}))\n")
    venv_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    r = _run([vpy, "-c", script], cwd=str(tmp_path), env=venv_env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["file"].startswith(str(venv)) and not info["mxnet_loaded"], info
    got = np.load(tmp_path / "venv_logits.npy")
    # Same sources, compiler and kernels on the same CPU: the logits are bit-identical.
    assert got.dtype == expect.dtype and got.tobytes() == expect.tobytes()
    print(f"engine-only venv (numpy {info['numpy']}): logits of 8 images bit-identical to the full install")

    # 6. No MXNet there, and the training API says how to get it; bmx-info works.
    r = _run([vpy, "-c", "import mxnet"], cwd=str(tmp_path), env=venv_env)
    assert r.returncode != 0 and "No module named 'mxnet'" in r.stderr
    r = _run([vpy, "-c", "import bmx.nn"], cwd=str(tmp_path), env=venv_env)
    assert r.returncode != 0 and "pip install 'bmx[train]'" in r.stderr.strip().splitlines()[-1], r.stderr
    r = _run([str(venv / "bin" / "bmx-info"), str(model)], cwd=str(tmp_path), env=venv_env)
    assert r.returncode == 0 and "BinaryConv2D" in r.stdout, r.stderr


def test_sdist_carries_the_cmake_project(tmp_path):
    """A source distribution must build the extension: it needs the CMake project, the
    C++ sources and the schema (MANIFEST.in), not only the Python package."""
    import tarfile
    r = _run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path)], cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    (sdist,) = list(tmp_path.glob("bmx-*.tar.gz"))
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for need in ("CMakeLists.txt", "src/CMakeLists.txt", "src/schema/bmx_model.fbs",
                 "src/include/bmx/engine.h", "src/runtime/loader.cc", "src/python/module.cc",
                 "setup.py", "pyproject.toml", "bmx/engine.py"):
        assert need in names, need
    assert not [n for n in names if n.endswith((".so", ".o", ".a"))]
