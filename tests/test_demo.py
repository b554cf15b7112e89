"""The main job (``make demo``, bmx.demo): train a 1-bit BinaryDenseNet on digits, convert
it and run the engine (Bethge et al., "Back to Simplicity", 2019). A shortened run here;
the full default run is marked slow."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = ("gluon_test_accuracy", "engine_test_accuracy", "float_size_bytes", "packed_size_bytes",
        "gluon_ms_per_image", "engine_ms_per_image", "train_time_s", "epochs", "model")


def _demo(out, *extra, timeout=600):
    p = subprocess.run([sys.executable, "-m", "bmx.demo", "--out", str(out), "--quiet", *extra],
                       capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    return p


def _check(out, p, epochs):
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    rep = json.load(open(out / "report.json"))
    for k in KEYS:
        assert k in rep, k
    assert rep["epochs"] == epochs and rep["bits"] == 1 and rep["stem"] == "thumbnail"
    assert rep["test_images"] == 360
    assert rep["gluon_test_accuracy"] >= 0.90
    # the engine predicts Gluon's class on every test image (compared image by image)
    assert len(rep["gluon_predictions"]) == len(rep["engine_predictions"]) == 360
    assert rep["engine_predictions"] == rep["gluon_predictions"]
    assert rep["predictions_differing"] == 0
    assert rep["test_correct_engine"] == sum(
        p == y for p, y in zip(rep["engine_predictions"], rep["labels"]))
    # the packed file is much smaller than the float parameters
    assert 0 < rep["packed_size_bytes"] < rep["float_size_bytes"] / 3
    assert rep["gluon_ms_per_image"] > 0 and rep["engine_ms_per_image"] > 0
    assert "Gluon" in p.stdout and "engine" in p.stdout
    return rep


def test_demo_short(tmp_path):
    out = tmp_path / "demo-out"
    p = _demo(out, "--epochs", "4")
    rep = _check(out, p, 4)
    assert (out / "train" / "model-symbol.json").is_file()
    assert (out / "digits-binarydensenet.bmx").stat().st_size == rep["packed_size_bytes"]


@pytest.mark.slow
def test_demo_default(tmp_path):
    """Exactly what ``make demo`` runs (default epochs), within the 10-minute budget."""
    out = tmp_path / "demo-out"
    p = _demo(out, timeout=600)
    rep = _check(out, p, 12)
    assert rep["total_time_s"] < 600
