"""bmx-bench gemm: output format on a tiny subset. Never asserts a speed; asserts what every
measurement satisfies whatever the load (derived fields consistent, timed spins at least
as long as they spin)."""
import json
import math

import pytest

from bmx import bench, engine
from bmx.bench import gemm


def test_bdn37_shapes():
    shapes = gemm.binarydensenet37_shapes()
    assert len(shapes) == 6 + 8 + 12 + 6
    assert shapes[0] == {"name": "stage1.layer0", "c_in": 64, "h": 56, "w": 56, "M": 64, "K": 576, "N": 3136}
    assert max(s["K"] for s in shapes) == 896 * 9  # last dense layer of stage 3
    assert shapes[-1]["N"] == 49 and shapes[-1]["c_in"] == 256 + 5 * 64


def test_gemm_json_on_tiny_subset(capsys):
    bench.main(["gemm", "--json", "--layers", "31", "--threads", "1", "2", "--repeat", "1", "--kernels", "auto"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["benchmark"] == "gemm"
    assert len(doc["results"]) == 2
    r = doc["results"][0]
    for key in ("layer", "M", "N", "K", "kernel", "kernel_name", "threads", "numpy_gmacs", "gemm_gmacs",
                "conv_gmacs", "gemm_vs_numpy", "conv_vs_numpy", "gemm_scaling", "conv_scaling",
                "py_gemm_gmacs", "py_conv_gmacs", "py_gemm_scaling", "py_conv_scaling"):
        assert key in r
    assert r["layer"] == "stage4.layer5" and (r["M"], r["N"], r["K"]) == (64, 49, 576 * 9)
    assert all(v > 0 for v in (r["numpy_gmacs"], r["gemm_gmacs"], r["conv_gmacs"]))
    assert r["kernel_name"] == engine.auto_kernel()
    # ratios and scalings are derived from the same timings as the rates
    assert r["gemm_vs_numpy"] == pytest.approx(r["gemm_gmacs"] / r["numpy_gmacs"], rel=1e-9)
    assert r["conv_vs_numpy"] == pytest.approx(r["conv_gmacs"] / r["numpy_gmacs"], rel=1e-9)
    assert r["threads"] == 1 and r["gemm_scaling"] == 1.0 and r["conv_scaling"] == 1.0
    assert doc["summary"][0]["kernel"] == "auto"
    for key in ("min_gemm_scaling_2t", "min_conv_scaling_2t", "min_py_gemm_scaling_2t", "min_py_conv_scaling_2t",
                "layers_below_target_gemm_2t"):
        assert key in doc["summary"][0]
    assert "blas" in doc["machine"]
    fj = doc["fork_join"]
    # Each timed call spins on steady_clock until work_us has passed, so the work alone takes
    # at least work_us, and a 2-thread call (pool or bare handshake: both chunks must end)
    # at least that too: inline + overhead >= work_us, whatever the load. Upper bounds catch
    # a unit slip (s or ns for us): the 4 us spin is below 100x even at 1/20 of a core, and
    # a handshake below 100 ms even behind a niced process on a full machine.
    work = fj["work_us"]
    assert work == 4.0
    assert work <= fj["inline_us"] < 100 * work, fj
    for k in ("pool_us", "bare_us"):
        assert math.isfinite(fj[k]) and fj["inline_us"] + fj[k] >= work, (k, fj)
        assert fj[k] < 1e5, (k, fj)
    r2 = [r for r in doc["results"] if r["threads"] == 2][0]
    assert 0 < r2["gemm_scaling_bound"] <= 2.0001 and 0 < r2["conv_scaling_bound"] <= 2.0001


def test_gemm_table_output(capsys):
    bench.main(["gemm", "--layers", "31", "--threads", "1", "--repeat", "1", "--kernels", "all"])
    out = capsys.readouterr().out
    assert "stage4.layer5" in out and "summary" in out
