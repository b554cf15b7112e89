"""``bmx-bench models``: whole networks at batch 1, the bmx engine on the converted model
against MXNet on the float twin and on the Gluon binary model, on the same CPU.

MXNet runs in one subprocess per thread count (its thread settings must be in the
environment before it is imported); the first also converts the models, so the engine is
measured in a process where MXNet never computed anything.
"""
import argparse
import json
import os
import platform
import re
import sys

import numpy as np

from .._cli import UsageError, int_at_least
from .common import cpu_name, float_at_least, loadavg, time_runs
from .gemm import gemm_rate

#: networks measured by default (batch 1, 224x224)
MODELS = ("resnete18", "binarydensenet28", "binarydensenet28:w2a2", "binarydensenet37", "meliusnet22")
#: targets of whole networks: engine vs MXNet float twin at 1 thread, 2 threads vs 1 (bmx)
MODEL_TARGET = 5.0
MODEL_SCALING_TARGET = 1.7
#: binary convs inside a model vs binary_gemm alone on the same M, N, K
LAYER_RATE_TARGET = 0.6


def add_parser(sub):
    """Add the ``models`` subcommand to ``sub`` (argparse subparsers)."""
    p = sub.add_parser(
        "models", help="whole networks: bmx engine vs MXNet (float twin and Gluon binary model)",
        description=(
            "Whole networks at batch 1: (a) the bmx engine on the converted model, (b) MXNet on\n"
            "the float twin (get_model(name, binary=False), hybridized), (c) MXNet on the Gluon\n"
            "binary model (hybridized); medians of --repeat runs after a warm-up, the ratios\n"
            "(b)/(a) and (c)/(a), and each thread count's speed-up over one thread. Weights are\n"
            "random (He-normal, BatchNorm statistics drawn at random): speed does not depend on\n"
            "them. MXNet runs in one subprocess per thread count (OMP_NUM_THREADS etc. must be\n"
            "set before it is imported); the threads that really used the CPU are counted from\n"
            "/proc and reported. --profile adds the engine's time per op kind and the rate of\n"
            "every binary convolution against binary_gemm alone on the same M, N, K."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    p.add_argument("--threads", type=int_at_least(1), nargs="+", default=[1, 2], help="thread counts (default: 1 2)")
    p.add_argument("--repeat", type=int_at_least(1), default=20,
                   help="timed runs per measurement, after the warm-up (default 20)")
    p.add_argument("--stat", choices=("median", "min"), default="median",
                   help="statistic over the runs: median (default) or min (least disturbed run)")
    p.add_argument("--models", nargs="+", default=list(MODELS), metavar="NAME",
                   help="model zoo names, a suffix :wWaA for W-bit weights and A-bit activations "
                        "(1 to 4; e.g. binarydensenet28:w2a2) (default: " + " ".join(MODELS) + ")")
    p.add_argument("--profile", action="store_true",
                   help="also report the engine's time per op kind and per-layer binary conv rates")
    p.add_argument("--no-mxnet", dest="mxnet", action="store_false",
                   help="measure the bmx engine only (models are still converted with MXNet)")
    p.add_argument("--image", type=int_at_least(32), default=224, help="input resolution, >= 32 (default 224)")
    p.add_argument("--warmup", type=float_at_least(0.0), default=0.5,
                   help="seconds of warm-up per measurement, at least 3 runs (default 0.5)")
    p.add_argument("--seed", type=int, default=0)
    return p


# ---------------------------------------------------------------------------------------
# MXNet side: one subprocess per thread count

def _randomize_bn(net, rng):
    """Non-trivial BatchNorm statistics and affine parameters (seeded)."""
    import mxnet as mx
    for name, prm in net.collect_params().items():
        shape = prm.shape
        if name.endswith("running_mean") or name.endswith("beta"):
            prm.set_data(mx.nd.array(rng.normal(0.0, 0.2, shape).astype(np.float32)))
        elif name.endswith("running_var"):
            prm.set_data(mx.nd.array(rng.uniform(0.5, 2.0, shape).astype(np.float32)))
        elif name.endswith("gamma"):
            prm.set_data(mx.nd.array(rng.uniform(0.5, 1.5, shape).astype(np.float32)))

def parse_model(name):
    """``(zoo name, weight bits, activation bits)`` of a ``--models`` entry: a zoo name,
    optionally with ``:wWaA`` (e.g. ``binarydensenet28:w2a2``); None when malformed."""
    base, sep, bits = name.lower().partition(":")
    if not sep:
        return base, 1, 1
    m = re.fullmatch(r"w([1-4])a([1-4])", bits)
    return (base, int(m.group(1)), int(m.group(2))) if m else None


def _build_net(name, binary, shape, seed):
    import mxnet as mx
    from ..model_zoo import get_model
    from ..model_zoo.common import default_initializer
    mx.random.seed(seed)
    base, bits, bits_a = parse_model(name)
    net = get_model(base, bits=bits, bits_a=bits_a) if binary else get_model(base, binary=False)
    net.initialize(default_initializer())
    net(mx.nd.zeros(shape))  # deferred shapes
    _randomize_bn(net, np.random.default_rng(seed))
    return net

def _mxnet_worker(spec_json):
    """Subprocess body: MXNet timings (and, if asked, the converted models) for one thread
    count. The environment (OMP_NUM_THREADS, ...) was set by the parent before this
    process imported MXNet. Prints one JSON line on stdout."""
    spec = json.loads(spec_json)
    import mxnet as mx
    shape = (spec["batch"], 3, spec["image"], spec["image"])
    x = mx.nd.array(np.random.default_rng(spec["seed"]).standard_normal(shape).astype(np.float32))
    out = {"threads": spec["threads"], "mxnet": mx.__version__, "models": {}}
    try:
        feats = mx.runtime.Features()
        out["mxnet_features"] = {k: feats.is_enabled(k) for k in ("MKLDNN", "OPENMP", "BLAS_OPEN", "BLAS_MKL")}
    except Exception:  # pragma: no cover - older MXNet
        out["mxnet_features"] = {}
    for name in spec["models"]:
        res = {}
        net_b = _build_net(name, True, shape, spec["seed"])
        if spec.get("convert_dir"):
            from ..converter import convert
            data = convert(net_b, input_shape=(1, 3, spec["image"], spec["image"]))
            path = os.path.join(spec["convert_dir"], name + ".bmx")
            with open(path, "wb") as f:
                f.write(data)
            res["model_bytes"] = len(data)
        if spec.get("measure", True):
            for kind, net in (("binary", net_b), ("float", _build_net(name, False, shape, spec["seed"]))):
                net.hybridize(static_alloc=True, static_shape=True)
                t, samples, busy, util = time_runs(lambda: net(x).wait_to_read(), spec["repeat"], spec["warmup"],
                                                    spec["stat"])
                res[kind] = {"seconds": t, "samples": samples, "busy_threads": busy, "cpu_util": util}
        out["models"][name] = res
    print(json.dumps(out))
    return 0

def _mxnet_env(threads):
    env = dict(os.environ)
    t = str(threads)
    # Every knob MXNet 1.x and its libraries read: one engine worker (ops run one at a time),
    # and `threads` OpenMP threads inside each op (oneDNN, OpenBLAS, MXNet's own kernels).
    env.update({"OMP_NUM_THREADS": t, "MXNET_OMP_MAX_THREADS": t, "MKL_NUM_THREADS": t,
                "OPENBLAS_NUM_THREADS": t, "MXNET_CPU_WORKER_NTHREADS": "1",
                "MXNET_CPU_PRIORITY_NTHREADS": "1", "MXNET_MP_WORKER_NTHREADS": "1"})
    return env

def _run_worker(spec, threads):
    import subprocess
    spec = dict(spec, threads=threads)
    code = "import sys; from bmx.bench.models import _mxnet_worker; sys.exit(_mxnet_worker(sys.argv[1]))"
    cmd = [sys.executable, "-c", code, json.dumps(spec)]
    proc = subprocess.run(cmd, env=_mxnet_env(threads), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"MXNet worker ({threads} threads) failed with code {proc.returncode}:\n{tail}")
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------------------
# engine side

def _binary_conv_layers(data):
    """(op name, M = C_out, N = output pixels, K = C_in/groups * KH * KW) of every binary conv
    in a model file."""
    from ..modelfile.reader import read_model
    m = read_model(data)
    layers = []
    for op in m["ops"]:
        if op["type"] != "BinaryConv2D":
            continue
        o = op["options"]
        out = m["values"][op["outputs"][0]]["shape"]
        kh, kw = o["kernel"]
        layers.append({"name": op["name"], "M": int(o["outchannels"]), "N": int(out[2] * out[3]),
                       "K": int(o["inchannels"] // o["groups"] * kh * kw)})
    return layers

def _profile_engine(name, data, threads, x, args, gemm_cache):
    from .. import engine
    model = engine.Model(data, num_threads=threads)
    for _ in range(3):
        model.predict(x)
    model.profiling = True
    model.reset_profile()
    runs = max(args.repeat, 5)
    for _ in range(runs):
        model.predict(x)
    kinds = model.profile()
    per_op = dict(model.profile(per_op=True))
    total = sum(kinds.values())
    doc = {"model": name, "threads": threads, "runs": runs, "total_ms": total / runs * 1e3,
           "kinds": {k: {"ms": v / runs * 1e3, "share": v / total if total else 0.0} for k, v in kinds.items()}}
    layers = []
    for lay in _binary_conv_layers(data):
        key = next((k for k in per_op if k.startswith(lay["name"] + " (")), None)
        if key is None or per_op[key] <= 0:
            continue
        macs = float(lay["M"]) * lay["N"] * lay["K"]
        rate = macs / (per_op[key] / runs) / 1e9
        g = gemm_rate(lay["M"], lay["N"], lay["K"], threads, args.repeat, gemm_cache)
        layers.append(dict(lay, ms=per_op[key] / runs * 1e3, gmacs=rate, gemm_gmacs=g, vs_gemm=rate / g))
    doc["binary_conv_layers"] = layers
    if layers:
        macs = sum(float(l["M"]) * l["N"] * l["K"] for l in layers)
        t_layers = sum(l["ms"] for l in layers) / 1e3
        t_gemm = sum(float(l["M"]) * l["N"] * l["K"] / (l["gemm_gmacs"] * 1e9) for l in layers)
        doc["binary_conv_summary"] = {"gmacs": macs / t_layers / 1e9, "gemm_gmacs": macs / t_gemm / 1e9,
                                      "vs_gemm": t_gemm / t_layers,
                                      "min_vs_gemm": min(l["vs_gemm"] for l in layers),
                                      "target": LAYER_RATE_TARGET}
    return doc


def _check_models(names):
    """The zoo names of ``names``, lower-cased, duplicates dropped (order kept)."""
    from ..model_zoo import get_model_list
    known = get_model_list()
    bad = [m for m in names if parse_model(m) is None or parse_model(m)[0] not in known]
    if bad:
        raise UsageError(f"unknown model(s) {', '.join(bad)}; known: {', '.join(known)} "
                         "(optionally with :wWaA, bits 1 to 4)")
    return list(dict.fromkeys(m.lower() for m in names))


def _mxnet_side(spec, threads, with_mxnet):
    """MXNet timings by thread count (only the conversion without ``with_mxnet``) and the
    converted models' bytes by name."""
    import tempfile
    mx_by_t = {}
    with tempfile.TemporaryDirectory(prefix="bmx-bench-") as tmp:
        # The first worker also converts the models; the engine is measured here, in a
        # process where MXNet never computed anything (no OpenMP threads spinning).
        for i, t in enumerate(threads if with_mxnet else threads[:1]):
            mx_by_t[t] = _run_worker(dict(spec, convert_dir=tmp if i == 0 else None, measure=with_mxnet), t)
        blobs = {}
        for name in spec["models"]:
            with open(os.path.join(tmp, name + ".bmx"), "rb") as f:
                blobs[name] = f.read()
    return mx_by_t, blobs


def _time_engine(blob, threads, x, args):
    from .. import engine
    per_t = {}
    for t in threads:
        predict = engine.Model(blob, num_threads=t).predict  # the next one replaces (frees) it
        sec, samples, busy, util = time_runs(lambda: predict(x), args.repeat, args.warmup, args.stat)
        per_t[t] = {"seconds": sec, "samples": samples, "busy_threads": busy, "cpu_util": util}
    return per_t


def _model_rows(name, threads, base_t, per_t, mx_by_t, with_mxnet):
    """Result rows of one model, one per thread count."""
    rows = []
    for t in threads:
        r = {"model": name, "threads": t, "model_bytes": mx_by_t[threads[0]]["models"][name].get("model_bytes"),
             "bmx_ms": per_t[t]["seconds"] * 1e3, "bmx_busy_threads": per_t[t]["busy_threads"],
             "bmx_cpu_util": per_t[t]["cpu_util"],
             "bmx_scaling": per_t[base_t]["seconds"] / per_t[t]["seconds"]}
        if with_mxnet:
            mx_res = mx_by_t[t]["models"][name]
            for kind in ("float", "binary"):
                m = mx_res[kind]
                r[f"mxnet_{kind}_ms"] = m["seconds"] * 1e3
                r[f"mxnet_{kind}_busy_threads"] = m["busy_threads"]
                r[f"mxnet_{kind}_cpu_util"] = m["cpu_util"]
                r[f"{kind}_vs_bmx"] = m["seconds"] / per_t[t]["seconds"]
                r[f"mxnet_{kind}_scaling"] = (mx_by_t[base_t]["models"][name][kind]["seconds"] / m["seconds"])
        r["bmx_samples_ms"] = [s * 1e3 for s in per_t[t]["samples"]]
        rows.append(r)
    return rows


def run_models(args):
    """Run the ``models`` benchmark; returns the result document (also printed)."""
    from .. import engine
    models = _check_models(args.models)
    threads = sorted(set(args.threads))
    base_t = 1 if 1 in threads else threads[0]
    spec = {"models": models, "image": args.image, "batch": 1, "repeat": args.repeat, "seed": args.seed,
            "warmup": args.warmup, "stat": args.stat}
    load_before = loadavg()
    mx_by_t, blobs = _mxnet_side(spec, threads, args.mxnet)
    x = np.random.default_rng(args.seed).standard_normal((1, 3, args.image, args.image)).astype(np.float32)
    first = mx_by_t[threads[0]]
    results, profiles, gemm_cache = [], [], {}
    for name in models:
        per_t = _time_engine(blobs[name], threads, x, args)
        results += _model_rows(name, threads, base_t, per_t, mx_by_t, args.mxnet)
        if args.profile:
            for t in threads:
                profiles.append(_profile_engine(name, blobs[name], t, x, args, gemm_cache))
    doc = {
        "benchmark": "models", "image": args.image, "batch": 1, "repeat": args.repeat, "stat": args.stat,
        "threads": threads, "models": models,
        "machine": {"cpu": cpu_name(), "cpu_features": engine.cpu_features(), "kernel": engine.auto_kernel(),
                    "cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                    "mxnet": first.get("mxnet"), "mxnet_features": first.get("mxnet_features")},
        "load_average": {"before": load_before, "after": loadavg()},
        "results": results,
        "summary": _models_summary(results, threads, base_t, args.mxnet),
    }
    if args.profile:
        doc["profile"] = profiles
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        _print_models(doc, base_t, args.mxnet)
    return doc


def _models_summary(results, threads, base_t, with_mxnet):
    out = []
    for name in dict.fromkeys(r["model"] for r in results):
        rows = {r["threads"]: r for r in results if r["model"] == name}
        e = {"model": name, "bmx_ms": {str(t): rows[t]["bmx_ms"] for t in threads}}
        if with_mxnet:
            e["float_vs_bmx"] = {str(t): rows[t]["float_vs_bmx"] for t in threads}
            e["binary_vs_bmx"] = {str(t): rows[t]["binary_vs_bmx"] for t in threads}
            e["float_target"] = MODEL_TARGET
        e["bmx_scaling"] = {str(t): rows[t]["bmx_scaling"] for t in threads if t != base_t}
        one_bit = {r["threads"]: r for r in results if r["model"] == parse_model(name)[0]}
        if name != parse_model(name)[0] and one_bit:
            # the k-bit model's time over the 1-bit one of the same architecture
            e["vs_1bit"] = {str(t): rows[t]["bmx_ms"] / one_bit[t]["bmx_ms"] for t in threads}
        e["scaling_target"] = MODEL_SCALING_TARGET
        out.append(e)
    return out

def _print_models(doc, base_t, with_mxnet):
    m = doc["machine"]
    print(f"bmx-bench models: batch 1, {doc['image']}x{doc['image']}, {doc['stat']} of {doc['repeat']} runs; "
          f"{m['cpu']} ({m['cores']} cores) [{m['cpu_features']}]; kernel {m['kernel']}; MXNet {m['mxnet']} "
          f"(oneDNN {'on' if (m.get('mxnet_features') or {}).get('MKLDNN') else 'off'}); "
          f"load average {doc['load_average']['before']} -> {doc['load_average']['after']}")
    print("ms per image; x = MXNet time / bmx time; s = speed-up over "
          f"{base_t} thread(s); busy = threads that used >= 25% of the wall time")
    head = f"{'model':<23}{'thr':>4}{'bmx ms':>9}{'s':>6}{'busy':>5}"
    if with_mxnet:
        head += f"{'mx-float':>10}{'x':>7}{'busy':>5}{'mx-binary':>11}{'x':>7}{'busy':>5}"
    print(head)
    for r in doc["results"]:
        line = (f"{r['model']:<23}{r['threads']:>4}{r['bmx_ms']:>9.2f}{r['bmx_scaling']:>6.2f}"
                f"{r['bmx_busy_threads']:>5}")
        if with_mxnet:
            line += (f"{r['mxnet_float_ms']:>10.2f}{r['float_vs_bmx']:>6.1f}x{r['mxnet_float_busy_threads']:>5}"
                     f"{r['mxnet_binary_ms']:>11.2f}{r['binary_vs_bmx']:>6.1f}x{r['mxnet_binary_busy_threads']:>5}")
        print(line)
    for e in doc["summary"]:
        if "vs_1bit" in e:
            ratios = ", ".join(f"{v:.2f}x at {t} thread(s)" for t, v in e["vs_1bit"].items())
            print(f"{e['model']}: {ratios} the time of {parse_model(e['model'])[0]} (1-bit)")
    print(f"\ntargets: bmx >= {MODEL_TARGET:g}x faster than the MXNet float twin at 1 thread; "
          f"2 threads >= {MODEL_SCALING_TARGET:g}x over 1 (binarydensenet28, resnete18)")
    for p in doc.get("profile", []):
        kinds = "  ".join(f"{k} {v['ms']:.2f} ({100 * v['share']:.0f}%)" for k, v in p["kinds"].items())
        print(f"\nprofile {p['model']} @ {p['threads']} thread(s): {p['total_ms']:.2f} ms  |  {kinds}")
        s = p.get("binary_conv_summary")
        if s:
            print(f"  binary convs: {s['gmacs']:.0f} G MAC/s in the model vs {s['gemm_gmacs']:.0f} for binary_gemm "
                  f"alone on the same shapes = {100 * s['vs_gemm']:.0f}% (min layer {100 * s['min_vs_gemm']:.0f}%, "
                  f"target {100 * s['target']:.0f}%)")
            print(f"  {'layer':<58}{'M':>5}{'N':>6}{'K':>6}{'ms':>8}{'GMAC/s':>8}{'gemm':>7}{'%':>5}")
            for l in p["binary_conv_layers"]:
                print(f"  {l['name'][-58:]:<58}{l['M']:>5}{l['N']:>6}{l['K']:>6}{l['ms']:>8.3f}{l['gmacs']:>8.0f}"
                      f"{l['gemm_gmacs']:>7.0f}{100 * l['vs_gemm']:>5.0f}")
