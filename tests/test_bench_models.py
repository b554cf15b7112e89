"""bmx-bench models: output format and behaviour on tiny inputs (never asserts timings)."""
import json

import numpy as np
import pytest

from bmx import bench
from bmx.bench import models as bench_models

KINDS = ("packing", "binary_conv", "float_conv", "bn_threshold", "pool", "concat", "other")


def test_models_engine_only_json_with_profile(capsys):
    rc = bench.main(["models", "--json", "--models", "resnete18", "--image", "32", "--threads", "1", "2",
                     "--repeat", "2", "--warmup", "0", "--no-mxnet", "--profile"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["benchmark"] == "models" and doc["models"] == ["resnete18"] and doc["threads"] == [1, 2]
    assert doc["machine"]["kernel"] and "cpu_features" in doc["machine"]
    rows = doc["results"]
    assert [(r["model"], r["threads"]) for r in rows] == [("resnete18", 1), ("resnete18", 2)]
    for r in rows:
        assert r["bmx_ms"] > 0 and len(r["bmx_samples_ms"]) == 2
        # the reported time is the median (the default --stat) of the reported samples
        assert r["bmx_ms"] == pytest.approx(float(np.median(r["bmx_samples_ms"])), rel=1e-12)
        assert isinstance(r["bmx_busy_threads"], int) and r["model_bytes"] > 0
        assert "mxnet_float_ms" not in r  # --no-mxnet
    assert rows[0]["bmx_scaling"] == pytest.approx(1.0)
    assert rows[1]["bmx_scaling"] == pytest.approx(rows[0]["bmx_ms"] / rows[1]["bmx_ms"], rel=1e-12)
    assert rows[0]["model_bytes"] == rows[1]["model_bytes"]
    assert doc["summary"][0]["model"] == "resnete18" and "2" in doc["summary"][0]["bmx_scaling"]
    profs = doc["profile"]
    assert [(p["model"], p["threads"]) for p in profs] == [("resnete18", 1), ("resnete18", 2)]
    for p in profs:
        assert tuple(p["kinds"]) == KINDS
        assert sum(v["share"] for v in p["kinds"].values()) == pytest.approx(1.0)
        assert sum(v["ms"] for v in p["kinds"].values()) == pytest.approx(p["total_ms"])
        layers = p["binary_conv_layers"]
        assert len(layers) == 16  # ResNetE-18: one binary 3x3 conv per block, 4 x 4 blocks
        first = layers[0]
        # stage 1 at 32 / 4 = 8 pixels square: M = 64 outputs, K = 64 * 9
        assert (first["M"], first["N"], first["K"]) == (64, 64, 576)
        assert layers[-1]["M"] == 512 and layers[-1]["K"] == 512 * 9
        assert all(l["gmacs"] > 0 and l["gemm_gmacs"] > 0 for l in layers)
        assert p["binary_conv_summary"]["target"] == bench_models.LAYER_RATE_TARGET


@pytest.mark.slow
def test_models_table_with_mxnet(capsys):
    rc = bench.main(["models", "--models", "binarydensenet28", "--image", "32", "--threads", "1", "2",
                     "--repeat", "1", "--warmup", "0"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "binarydensenet28" in out and "mx-float" in out and "targets:" in out


@pytest.mark.slow
def test_models_json_with_mxnet_counts_threads(capsys):
    bench.main(["models", "--json", "--models", "meliusnet22", "--image", "32", "--threads", "1", "2",
                "--repeat", "3", "--warmup", "0"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["machine"]["mxnet"]
    for r in doc["results"]:
        for kind in ("float", "binary"):
            assert r[f"mxnet_{kind}_ms"] > 0
            assert r[f"{kind}_vs_bmx"] == pytest.approx(r[f"mxnet_{kind}_ms"] / r["bmx_ms"])
            assert isinstance(r[f"mxnet_{kind}_busy_threads"], int)  # a count (load-dependent)


def test_models_kbit_row_against_the_one_bit_model(capsys):
    """A ``:wWaA`` entry builds the zoo model with k-bit weights and activations (its file
    holds Quantize and KbitConv2D) and the summary gives its time over the 1-bit one's."""
    rc = bench.main(["models", "--json", "--models", "binarydensenet28", "binarydensenet28:w2a2",
                     "--image", "32", "--threads", "1", "--repeat", "2", "--warmup", "0", "--no-mxnet"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["models"] == ["binarydensenet28", "binarydensenet28:w2a2"]
    ms = {r["model"]: r["bmx_ms"] for r in doc["results"]}
    one, two = doc["summary"]
    assert "vs_1bit" not in one
    assert two["vs_1bit"]["1"] == pytest.approx(ms["binarydensenet28:w2a2"] / ms["binarydensenet28"])
    # the 2-bit file is larger: 2 bits per conv weight
    sizes = {r["model"]: r["model_bytes"] for r in doc["results"]}
    assert sizes["binarydensenet28:w2a2"] > sizes["binarydensenet28"]


@pytest.mark.parametrize("name, want", [("resnete18", ("resnete18", 1, 1)),
                                        ("BinaryDenseNet28:W2A3", ("binarydensenet28", 2, 3)),
                                        ("binarydensenet28:w5a2", None), ("binarydensenet28:w2", None),
                                        ("binarydensenet28:", None)])
def test_parse_model(name, want):
    assert bench_models.parse_model(name) == want


def test_mxnet_env_sets_every_thread_knob():
    env = bench_models._mxnet_env(2)
    for k in ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        assert env[k] == "2"
    assert env["MXNET_CPU_WORKER_NTHREADS"] == "1"


@pytest.mark.parametrize("argv, msg", [
    (["models", "--models", "nosuchnet"], "unknown model"),
    (["models", "--models", "resnete18:w9a1"], "unknown model"),
    (["models", "--threads", "0"], ">= 1"),
    (["models", "--repeat", "0"], ">= 1"),
    (["models", "--warmup", "-1"], ">= 0"),
    (["models", "--warmup", "nan"], ">= 0"),
    (["models", "--image", "16"], ">= 32"),
])
def test_models_bad_flags(capsys, argv, msg):
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("bmx-bench: error:") and msg in err and err.count("\n") == 1
