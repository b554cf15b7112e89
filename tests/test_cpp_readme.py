"""The README's C++ lines compile and run: ``tests/cpp/readme_snippet.cpp`` holds them
verbatim (plus the ``std::string``, ``std::filesystem::path`` and ``Model::from_bytes``
forms), is compiled with ``-Wall -Wextra -Wpedantic -Werror`` by g++ and clang++, and,
linked against the installed package as the README describes (``find_package(bmx)``), must
load a converted model and print the logits of :class:`bmx.engine.Model`."""
import os
import re
import shutil
import subprocess

import mxnet as mx
import numpy as np
import pytest

import bmx
from bmx.engine import Model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
SNIPPET = os.path.join(ROOT, "tests", "cpp", "readme_snippet.cpp")
INCLUDE = os.path.join(ROOT, "src", "include")
# The README line that must keep compiling (it was ambiguous once: g++ warned and picked a
# buffer constructor, clang++ refused it).
README_LINE = 'bmx::Model m("m.bmx", 1); auto y = m.predict(x, batch);'
WARNINGS = ["-Wall", "-Wextra", "-Wpedantic", "-Werror"]
COMPILERS = ["g++", "clang++"]


def _run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _compiler(name):
    path = shutil.which(name)
    if path is None:
        # `make test` installs clang for its TSan step (scripts/test-tsan.sh).
        pytest.skip(f"{name} not installed (apt-get install -y {'clang' if 'clang' in name else 'g++'})")
    return path


def _readme_cpp_spans():
    """Inline code spans of README.md that are C++ code of the engine API (an include or
    a statement; fenced blocks are shell), with line breaks inside a span read as spaces
    as Markdown does."""
    with open(README, encoding="utf-8") as f:
        text = re.sub(r"```.*?```", "", f.read(), flags=re.S)
    spans = [" ".join(s.split()) for s in re.findall(r"`([^`]+)`", text)]
    return [s for s in spans if s.startswith("#include <bmx/") or ("bmx::" in s and s.endswith(";"))]


def test_readme_cpp_lines_are_in_snippet():
    spans = _readme_cpp_spans()
    assert README_LINE in spans, f"README.md no longer shows {README_LINE!r}; C++ spans: {spans}"
    with open(SNIPPET, encoding="utf-8") as f:
        source = f.read()
    for span in spans:
        assert span in source, f"README.md C++ span not compiled by {SNIPPET}: {span!r}"


@pytest.mark.parametrize("cxx", COMPILERS)
def test_snippet_compiles_warning_free(cxx):
    r = _run([_compiler(cxx), "-std=c++17", *WARNINGS, "-fsyntax-only", f"-I{INCLUDE}", SNIPPET])
    assert r.stderr == ""


# Statements compiled inside the same file; the control proves the include path and flags
# work, so the failures below are the statements' own.
_PROBE = """#include <bmx/engine.h>
#include <vector>
int main() {{
  std::vector<unsigned char> b(8);
  {stmt}
  return m.num_ops() + static_cast<int>(b.size());
}}
"""
_PROBES = {
    "control": ('bmx::Model m("m.bmx", 1);', True),
    "removed buffer constructor": ("bmx::Model m(b.data(), b.size());", False),
    "removed buffer constructor with threads": ("bmx::Model m(b.data(), b.size(), 1);", False),
    "literal nullptr path": ("bmx::Model m(nullptr);", False),
}


@pytest.mark.parametrize("case", list(_PROBES))
@pytest.mark.parametrize("cxx", COMPILERS)
def test_buffer_constructor_and_nullptr_do_not_compile(cxx, case, tmp_path):
    stmt, compiles = _PROBES[case]
    src = tmp_path / "probe.cc"
    src.write_text(_PROBE.format(stmt=stmt))
    r = subprocess.run([_compiler(cxx), "-std=c++17", *WARNINGS, "-fsyntax-only", f"-I{INCLUDE}", str(src)],
                       capture_output=True, text=True)
    if compiles:
        assert r.returncode == 0 and r.stderr == "", r.stderr
    else:
        assert r.returncode != 0, f"{stmt} compiled with {cxx}"
        # The error is the statement's own (line 5), e.g. clang's "no matching constructor"
        # or gcc's "invalid conversion from 'unsigned char*' to 'const char*'".
        assert re.search(r"probe\.cc:5:\d+: error: ", r.stderr), r.stderr


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    """bmx_core built and installed into a temporary prefix (the README's cmake lines)."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake not available")
    tmp = tmp_path_factory.mktemp("cpp_readme")
    build, prefix = tmp / "build", tmp / "prefix"
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    _run(["cmake", "-S", ROOT, "-B", build, *gen, "-DCMAKE_BUILD_TYPE=Release", "-DBMX_BUILD_TESTS=OFF",
          "-DBMX_BUILD_EXAMPLES=OFF", "-DBMX_BUILD_PYTHON=OFF", f"-DCMAKE_INSTALL_PREFIX={prefix}"])
    _run(["cmake", "--build", build, "-j", os.environ.get("BMX_TEST_JOBS", "2")])
    _run(["cmake", "--install", build])
    return prefix


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A directory holding ``m.bmx`` (the README's file name), a converted ResNetE-18."""
    mx.random.seed(3)
    net = bmx.get_model("resnete18", classes=10, stem="thumbnail")
    net.initialize(mx.init.Xavier(magnitude=2))
    net(mx.nd.zeros((1, 3, 32, 32)))
    net.hybridize()
    d = tmp_path_factory.mktemp("readme_model")
    (d / "m.bmx").write_bytes(bmx.convert(net, input_shape=(1, 3, 32, 32)))
    return d


def _parse(stdout):
    rows = {}
    for line in stdout.strip().splitlines():
        key, _, rest = line.partition(" ")
        rows[key] = rest
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("cxx", COMPILERS)
def test_snippet_runs_like_python_engine(cxx, prefix, model_dir, tmp_path):
    compiler = _compiler(cxx)
    project = tmp_path / "project"
    project.mkdir()
    (project / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\n"
        "project(readme_snippet LANGUAGES CXX)\n"
        "set(CMAKE_CXX_STANDARD 17)\nset(CMAKE_CXX_STANDARD_REQUIRED ON)\nset(CMAKE_CXX_EXTENSIONS OFF)\n"
        "find_package(bmx REQUIRED)\n"
        f"add_executable(readme_snippet \"{SNIPPET}\")\n"
        f"target_compile_options(readme_snippet PRIVATE {' '.join(WARNINGS)})\n"
        "target_link_libraries(readme_snippet PRIVATE bmx::bmx_core)\n")
    build = tmp_path / "build"
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    _run(["cmake", "-S", project, "-B", build, *gen, f"-DCMAKE_CXX_COMPILER={compiler}",
          f"-DCMAKE_PREFIX_PATH={prefix}"])
    _run(["cmake", "--build", build])

    batch = 2
    x = np.random.RandomState(0).standard_normal((batch, 3, 32, 32)).astype(np.float32)
    x.tofile(tmp_path / "x.f32")
    r = _run([build / "readme_snippet", tmp_path / "x.f32", str(batch)], cwd=model_dir)
    rows = _parse(r.stdout)

    assert rows["input_shape"] == " ".join(map(str, Model(str(model_dir / "m.bmx")).input_shape))
    # Threads each form was loaded with in the snippet.
    for key, threads in (("readme", 1), ("string", 1), ("filesystem_path", 2), ("from_bytes", 1)):
        want = Model(str(model_dir / "m.bmx"), num_threads=threads).predict(x)
        got = np.array(rows[key].split(), dtype=np.float32).reshape(want.shape)
        # Exact: the same engine code on the same file, input and thread count is
        # deterministic (tests/test_engine_model.py compares repeated 2-thread calls with
        # array_equal), and %.9g round-trips float32.
        np.testing.assert_array_equal(got, want, err_msg=f"{cxx} {key}")
    assert rows["null_path"] == "error model path is a null pointer"
