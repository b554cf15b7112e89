"""Every command and snippet of README.md runs: the fenced ``bash`` and ``python`` blocks in
document order in one scratch directory (as a reader would type them, with ``.venv/bin`` on
``PATH``), the inline ``make`` targets exist, the inline ``bmx-*`` programs answer
``--help``. The C++ lines are compiled by tests/test_cpp_readme.py."""
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
BIN = os.path.dirname(sys.executable)

#: README commands not run here, each with the test that covers it
NOT_RUN = {
    "make demo": "tests/test_demo.py::test_demo_default runs the same module (python -m bmx.demo)",
    "make test": "the suite itself: CI runs exactly this (.ci/run)",
    "pip install .": "tests/test_packaging.py installs the wheel into a fresh venv without MXNet",
    "pip install '.[train]'": "make env installs the same pins (requirements.txt) and the package",
}


def _readme():
    with open(README, encoding="utf-8") as f:
        return f.read()


def _blocks():
    """(language, code) of every fenced block, in document order."""
    return re.findall(r"```(\w+)\n(.*?)```", _readme(), flags=re.S)


def _commands(code):
    """Shell lines of a block: continuations joined, trailing comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    out = []
    for line in joined.splitlines():
        cmd = re.sub(r"\s+#.*$", "", line).strip()
        if cmd and not cmd.startswith("#"):
            out.append(cmd)
    return out


def _env():
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    env["MPLBACKEND"] = "Agg"
    return env


def test_readme_has_what_this_test_reads():
    langs = [lang for lang, _ in _blocks()]
    assert langs.count("bash") >= 2 and langs.count("python") >= 3, langs
    for cmd in NOT_RUN:
        assert any(cmd in _commands(code) for lang, code in _blocks() if lang == "bash"), cmd


@pytest.mark.slow
def test_readme_blocks_run_in_order(tmp_path):
    """The blocks as a reader runs them: train on digits, convert, evaluate, load the file
    from Python, build the layer and zoo examples."""
    ran = []
    for lang, code in _blocks():
        if lang == "bash":
            for cmd in _commands(code):
                if cmd in NOT_RUN:
                    continue
                p = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=_env(),
                                   capture_output=True, text=True, timeout=900)
                assert p.returncode == 0, f"{cmd}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
                ran.append(cmd)
        elif lang == "python":
            p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(),
                               capture_output=True, text=True, timeout=600)
            assert p.returncode == 0, f"{code}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
            ran.append(code.splitlines()[0])
    # what the first python block prints: the input shape and five predicted classes
    assert (tmp_path / "digits.bmx").is_file() and (tmp_path / "tiny.bmx").is_file()
    assert any(c.startswith("bmx-eval") for c in ran)


def _inline_spans():
    text = re.sub(r"```.*?```", "", _readme(), flags=re.S)
    return [" ".join(s.split()) for s in re.findall(r"`([^`]+)`", text)]


def test_readme_inline_make_targets_exist():
    targets = {s.split()[1] for s in _inline_spans() if re.fullmatch(r"make [\w-]+", s)}
    assert {"test-fast", "build", "env"} <= targets, targets
    for t in targets:
        p = subprocess.run(["make", "-n", t], cwd=ROOT, capture_output=True, text=True,
                           env=_env(), timeout=60)
        assert p.returncode == 0, f"make {t}: {p.stderr}"


def test_readme_inline_programs_answer_help():
    progs = {s.split()[0] for s in _inline_spans() if re.match(r"bmx-[a-z]+( |$)", s)}
    progs |= {m for s in _inline_spans() for m in re.findall(r"\b(bmx-[a-z]+)\b", s)
              if s.startswith("bmx-")}
    assert {"bmx-train", "bmx-convert", "bmx-eval", "bmx-bench"} <= progs, progs
    for prog in sorted(progs):
        exe = shutil.which(prog, path=BIN)
        assert exe is not None, f"{prog} is not installed in {BIN} (pip install -e .)"
        p = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and "usage" in p.stdout.lower(), prog
