"""Replay of the model-loader regression corpus, ``tests/data/fuzz-regressions/``.

Bethge et al., "BMXNet 2" (2019): the engine loads model files it must treat as hostile.
Every file of the corpus has an entry in its ``manifest.json`` with the error the loader
(``src/runtime/loader.cc``) must raise: ``ModelError`` and a fragment of the message, or
``none`` when the file must load. ``scripts/make_regression_corpus.py`` writes the
generated part from a small valid model: one file per check of the loader, truncations and
bit flips the FlatBuffers verifier rejects; the expected messages come from the loader's
source, not from its output. The C++ side (``tests/cpp/test_loader_regressions.cc``)
replays the same files through the fuzz harness and checks the same messages.
"""
import importlib.util
import json
import os
import re

import numpy as np
import pytest

from bmx import engine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "tests", "data", "fuzz-regressions")
MANIFEST = os.path.join(CORPUS, "manifest.json")
MIN_FILES = 50
# The corpus is committed and replayed on every run (C++ and Python, also under ASan):
# each file stays a few KiB (the one exception: 4097 input indices, 18 KiB).
MAX_FILE_BYTES = 32 << 10
MAX_TOTAL_BYTES = 512 << 10


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "make_regression_corpus", os.path.join(ROOT, "scripts", "make_regression_corpus.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def gen():
    return _load_generator()


@pytest.fixture(scope="module")
def manifest():
    with open(MANIFEST) as f:
        return json.load(f)


def _corpus_files():
    return sorted(f for f in os.listdir(CORPUS) if f.endswith(".bmx"))


def _read(name):
    with open(os.path.join(CORPUS, name), "rb") as f:
        return f.read()


def _replay(load, manifest):
    """Load every .bmx file of the folder with ``load(name)``; return (files run, mismatches)."""
    entries = manifest["files"]
    ran, wrong = 0, []
    for name in _corpus_files():
        ran += 1
        e = entries.get(name)
        if e is None:
            wrong.append(f"{name}: no entry in manifest.json")
            continue
        try:
            load(name)
            got = None
        except Exception as ex:  # noqa: BLE001 - the class is part of what is checked
            got = (type(ex).__name__, str(ex))
        if e["error"] == "none":
            if got is not None:
                wrong.append(f"{name}: must load, raised {got[0]}: {got[1]}")
        elif got is None:
            wrong.append(f"{name}: loaded, expected {e['error']} containing {e['message']!r}")
        elif got[0] != e["error"] or e["message"] not in got[1]:
            wrong.append(f"{name}: raised {got[0]}: {got[1]!r}; expected {e['error']} containing {e['message']!r}")
    return ran, wrong


def test_manifest_and_folder_agree(manifest, gen):
    files = _corpus_files()
    assert sorted(manifest["files"]) == files, "every file needs a manifest entry and every entry a file"
    stray = sorted(set(os.listdir(CORPUS)) - set(files) - {"manifest.json", "README.md"})
    assert stray == [], "files of the corpus end in .bmx"
    assert manifest["count"] == len(files) >= MIN_FILES
    for name, e in manifest["files"].items():
        assert e["error"] in ("ModelError", "none"), name
        assert e["error"] == "none" or e["message"], name
        assert e["description"], name
    # The C++ replay reads the manifest line by line: it must stay in the generator's form
    # (one entry per line, strings without escapes).
    with open(MANIFEST) as f:
        assert f.read() == gen.dumps_manifest(manifest), "rewrite manifest.json with scripts/make_regression_corpus.py"
    sizes = [os.path.getsize(os.path.join(CORPUS, f)) for f in files]
    assert max(sizes) <= MAX_FILE_BYTES and sum(sizes) <= MAX_TOTAL_BYTES


def test_every_check_of_the_loader_has_a_file(manifest):
    """Each failure site of loader.cc has a generated file that trips it."""
    checks = {e.get("check") for e in manifest["files"].values()}
    per_op = {
        "Conv2D": ["arity", "input kind", "input rank", "kernel/stride/pad/dilation", "out_channels range",
                   "groups divide channels", "activation", "window fits the padded input", "output shape",
                   "weight size arithmetic", "reduction size", "weight size", "bias size", "finite weights"],
        "BinaryConv2D": ["arity", "input kind", "input rank", "kernel/stride/pad/dilation", "in_channels",
                         "out_channels range",
                         "groups divide channels", "activation", "window fits the padded input", "output shape",
                         "reduction size", "weight size arithmetic", "weight_bits size", "scale size", "shift size",
                         "finite scale/shift", "zero tail bits"],
        "Sign": ["arity", "input kind", "scale/shift size", "finite scale/shift", "output shape"],
        "Affine": ["arity", "input kind", "scale/shift size", "finite scale/shift", "activation", "output shape"],
        "Relu": ["arity", "input kind", "output shape"],
        "Pool2D": ["arity", "input kind", "input rank", "type", "kernel/stride/pad", "pad < kernel",
                   "window fits the padded input", "ceil_mode windows hold real elements", "output shape"],
        "Concat": ["arity", "input kind", "input rank", "same spatial size", "channel bound", "output shape"],
        "Add": ["arity", "input kind", "same shapes", "output shape"],
        "AddToLastChannels": ["arity", "input kind", "input rank", "same spatial size", "channel count",
                              "output shape"],
        "ChannelShuffle": ["arity", "input kind", "input rank", "groups", "output shape"],
        "Dense": ["arity", "input kind", "units range", "weight size arithmetic", "weight size", "bias size",
                  "finite weights", "output shape"],
        "Flatten": ["arity", "input kind", "output shape"],
        "BinaryDense": ["format version", "arity", "input kind", "units range", "activation",
                        "weight size arithmetic", "weight_bits size", "scale size", "shift size",
                        "finite scale/shift", "zero tail bits", "output shape"],
        "MeanAbsChannels": ["format version", "arity", "input kind", "input rank", "output shape"],
        "Mul": ["format version", "arity", "input kind", "second input of the first's shape or one channel",
                "output shape"],
        "Quantize": ["format version", "arity", "input kind", "input rank", "scale/shift size", "finite scale/shift",
                     "output Levels", "output shape"],
        "KbitConv2D": ["format version", "arity", "input kind", "input rank", "kernel/stride/pad/dilation",
                       "in_channels", "out_channels range", "activation", "window fits the padded input",
                       "output shape", "weight_planes range", "weight size arithmetic", "reduction size",
                       "weight_bits size", "scale size", "shift size", "finite scale/shift", "zero tail bits"],
    }
    graph = ["empty buffer", "size < 8", "file identifier", "size % 4", "version", "values present", "value kind",
             "Levels values need version 3", "value planes",
             "value rank", "value batch 1", "value dimension range", "Bits values 4-D in version 1",
             "elements per value",
             "total value bytes", "one input", "one output", "input index", "output index", "input 4-D Float",
             "ops present", "op type", "op options present", "one op output", "op inputs present",
             "op inputs <= 4096", "op input index", "topological order", "op output index",
             "one producer per value", "output computed", "output != input", "output Float", "num_classes",
             "mean length", "std length"]
    want = {f"{t}: {c}" for t, cs in per_op.items() for c in cs} | {f"load_graph: {c}" for c in graph}
    want.add("FlatBuffers verifier")
    assert sorted(want - checks) == []
    verifier = [n for n, e in manifest["files"].items() if e.get("check") == "FlatBuffers verifier"]
    assert len([n for n in verifier if n.startswith("trunc_")]) >= 5
    assert len([n for n in verifier if n.startswith("flip_")]) >= 10


def test_model_from_path_rejects_every_file_as_expected(manifest):
    ran, wrong = _replay(lambda name: engine.Model(os.path.join(CORPUS, name)), manifest)
    assert wrong == []
    assert ran == manifest["count"] and ran >= MIN_FILES


def test_model_from_bytes_rejects_every_file_as_expected(manifest):
    ran, wrong = _replay(lambda name: engine.Model(_read(name)), manifest)
    assert wrong == []
    assert ran == manifest["count"] and ran >= MIN_FILES


def test_validate_model_rejects_every_file_as_expected(manifest):
    ran, wrong = _replay(lambda name: engine.validate_model(_read(name)), manifest)
    assert wrong == []
    assert ran == manifest["count"] and ran >= MIN_FILES


def test_generator_reproduces_the_committed_corpus(gen, manifest, tmp_path):
    files, entries = gen.write(str(tmp_path))
    committed = {n for n, e in manifest["files"].items() if e["source"] == "generated"}
    assert sorted(files) == sorted(committed), "rerun scripts/make_regression_corpus.py"
    changed = [n for n, data in files.items() if data != _read(n)]
    assert changed == [], "rerun scripts/make_regression_corpus.py"
    assert {n: entries[n] for n in files} == {n: manifest["files"][n] for n in files}


def _prefixes(manifest):
    """Base models the generated files were made from: None (all ops) or the last op kept."""
    out = set()
    for e in manifest["files"].values():
        base = e.get("base", "")
        if base == "base model":
            out.add(None)
        elif re.fullmatch(r"(bytes of )?base ops 0-\d+", base):
            out.add(int(base.rsplit("-", 1)[1]))
    return sorted(out, key=lambda k: -1 if k is None else k)


def test_base_models_load_and_match_the_numpy_interpreter(gen, manifest):
    """Each file is one fault away from a valid model: the models they were made from load,
    run, and agree with the plain-numpy interpreter of the format."""
    from bmx.modelfile import run_model
    prefixes = _prefixes(manifest)
    assert None in prefixes and len(prefixes) >= 5
    x = gen.base_input(batch=2)
    for upto in prefixes:
        data = gen.serialize(gen.base_model(upto))
        engine.validate_model(data)
        y = engine.Model(data).predict(x)
        ref = run_model(data, x)
        # Exact: inputs, weights, scales and shifts are multiples of 1/8 with few bits, so
        # every sum and product is exact in float32 in any order, and the binary conv's
        # match counts are integers.
        np.testing.assert_array_equal(y, ref, err_msg=f"base ops 0-{upto}")
    # Not a degenerate base: the Sign emits both signs, the logits differ everywhere.
    logits, values = run_model(gen.serialize(gen.base_model()), x, return_values=True)
    assert (values[2] > 0).any() and (values[2] < 0).any()
    assert np.unique(logits).size == logits.size


def test_bdense_bases_load_and_match_the_numpy_interpreter(gen, manifest):
    """The version-2 base of the ``bdense_`` files (BinaryDense on 4-D Bits of 70 channels,
    then Sign -> BinaryDense on 2-D values) and its prefix load, run, and agree exactly with
    the plain-numpy interpreter; files labelled version 2 without its ops load too."""
    from bmx.modelfile import read_model, run_model
    bases = {e["base"] for e in manifest["files"].values()}
    assert {"bdense base", "bdense base ops 0-1"} <= bases
    loads = [n for n, e in manifest["files"].items() if e["error"] == "none"]
    assert {"bdense_valid.bmx", f"model_version_{engine.FORMAT_VERSION}_loads.bmx"} <= set(loads)
    x = gen.bdense_input(batch=2)
    for upto in (1, None):
        data = gen.serialize(gen.bdense_model(upto))
        assert read_model(data)["version"] == 2
        engine.validate_model(data)
        np.testing.assert_array_equal(engine.Model(data).predict(x), run_model(data, x),
                                      err_msg=f"bdense base ops 0-{upto}")
    # Not degenerate: the 2-D Sign emits both signs, the logits differ everywhere.
    logits, values = run_model(gen.serialize(gen.bdense_model()), x, return_values=True)
    assert (values[3] > 0).any() and (values[3] < 0).any()
    assert np.unique(logits).size == logits.size


def test_xnor_bases_load_and_match_the_numpy_interpreter(gen, manifest):
    """The version-2 base of the ``xnor_`` files (an XNOR conv: Sign -> BinaryConv2D,
    MeanAbsChannels -> Pool2D avg 3x3, a broadcast and a full-shape Mul), its prefixes and
    the Mul-only variant behind the version-1 Mul file load, run, and agree exactly with
    the plain-numpy interpreter."""
    from bmx.modelfile import read_model, run_model
    bases = {e["base"] for e in manifest["files"].values()}
    assert {"xnor base", "xnor base ops 0-2", "xnor base ops 0-3", "xnor base ops 0-4",
            "xnor base ops 0-1 and a Mul"} <= bases
    assert manifest["files"]["xnor_valid.bmx"]["error"] == "none"
    x = gen.xnor_input(batch=2)
    models = {f"ops 0-{k}": gen.xnor_model(k) for k in (1, 2, 3, 4)}
    models.update({"all": gen.xnor_model(), "square": gen.xnor_square_model()})
    for label, m in models.items():
        data = gen.serialize(m)
        assert read_model(data)["version"] == 2
        engine.validate_model(data)
        np.testing.assert_array_equal(engine.Model(data).predict(x), run_model(data, x),
                                      err_msg=f"xnor base {label}")
    # Not degenerate: both signs reach the binary conv, the magnitudes and their window
    # averages vary, and the XNOR output takes many values.
    y, values = run_model(gen.serialize(gen.xnor_model()), x, return_values=True)
    assert (values[1] > 0).any() and (values[1] < 0).any()
    assert np.unique(values[3]).size > 1 and np.unique(values[4]).size > np.unique(values[3]).size
    assert np.unique(values[5]).size > 50 and np.unique(y).size > 50


def test_kbit_bases_load_and_match_the_numpy_interpreter(gen, manifest):
    """The version-3 base of the ``kbit_`` files (Quantize -> Levels(2) -> KbitConv2D of 2
    weight planes, Sign -> KbitConv2D of 3, both padded) and its prefixes load, run, and
    agree with the plain-numpy interpreter: exactly before the k-bit convs (ops 0-0), to
    float32 rounding after them (the engine folds 1/3 and 2/3 into float32 factors, the
    interpreter sums float32 levels L/3 in float64; the levels themselves agree: dyadic
    Quantize inputs never fall on a rounding tie)."""
    from bmx.modelfile import read_model, run_model
    bases = {e["base"] for e in manifest["files"].values()}
    assert {"kbit base", "kbit base ops 0-2", "kbit base ops 0-4"} <= bases
    assert manifest["files"]["kbit_valid.bmx"]["error"] == "none"
    x = gen.kbit_input(batch=2)
    for upto in gen.KB_PREFIXES + (None,):
        data = gen.serialize(gen.kbit_model(upto))
        assert read_model(data)["version"] == 3
        engine.validate_model(data)
        y, ref = engine.Model(data).predict(x), run_model(data, x)
        if upto == 0:
            np.testing.assert_array_equal(y, ref)
        else:
            np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5, err_msg=f"kbit base ops 0-{upto}")
    # Not degenerate: every level and both signs reach the k-bit convs, their outputs vary.
    y, values = run_model(gen.serialize(gen.kbit_model()), x, return_values=True)
    assert set(np.unique(np.round(values[2] * 3))) == {0, 1, 2, 3}
    assert (values[4] > 0).any() and (values[4] < 0).any()
    assert np.unique(values[3]).size > 50 and np.unique(values[5]).size > 50
    assert np.unique(y).size == y.size
