"""bmx-bench: benchmarks of the bmx engine against float baselines, in the same run.

Bethge et al., "BinaryDenseNet" (2019) / Rastegari et al., "XNOR-Net" (2016): a binary
convolution is an xnor-popcount GEMM with M = output channels, K = C_in * kh * kw bits
and N = output pixels; this tool measures it on the layer shapes of real networks.

Subcommands
-----------
``gemm``
    Every binary 3x3 conv of binarydensenet37 at 224x224: G binary-MAC/s of
    :func:`bmx.engine.binary_gemm` and of :func:`bmx.engine.binary_conv2d` (float input
    packing and im2col included; weights packed once with :func:`bmx.engine.pack_filters`,
    as a converted model holds them), numpy's
    float32 GEMM with one BLAS thread on the same M, N, K, the ratios, and the scaling
    of every thread count over one thread.

``models``
    Whole networks at batch 1 (resnete18, binarydensenet28, binarydensenet37, meliusnet22
    at 224x224 by default): the bmx engine on the converted model against MXNet on the
    float twin and on the Gluon binary model, at 1 and 2 threads (MXNet in a subprocess
    per thread count), with the ratios; ``--profile`` adds the engine's time per op kind
    and each binary convolution's rate against ``binary_gemm`` on the same M, N, K.

``train``
    Training images/s of a network and its float twin (``bmx.bench_train``).

Other subcommands register themselves in :data:`SUBCOMMANDS` (name -> (adder, runner)).
Timings are medians of ``--repeat`` samples; never assert them in tests.
"""
import argparse
import json
import os
import platform
import sys
import time

# Fallback when threadpoolctl is missing: must be set before numpy loads OpenBLAS.
try:
    import threadpoolctl
except ImportError:  # pragma: no cover - threadpoolctl is in the dev environment
    threadpoolctl = None
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

#: targets of the per-layer kernels (single thread vs numpy float32 GEMM with one BLAS thread)
GEMM_TARGET = 8.0
CONV_TARGET = 5.0
SCALING_TARGET = 1.8


# ---------------------------------------------------------------------------------------
# layer shapes

def binarydensenet37_shapes(image=224):
    """Binary 3x3 conv shapes of binarydensenet37 (imagenet stem, growth 64).

    The imagenet stem gives 64 channels at image/4; dense stages of 6, 8, 12, 6 layers
    each add 64 channels; transitions give 128, 192, 256 channels at half resolution.

    Returns
    -------
    list of dict
        ``name``, ``c_in``, ``h``, ``w``, ``M`` (= 64), ``K`` (= c_in * 9), ``N`` (= h * w).
    """
    layers = (6, 8, 12, 6)
    start = (64, 128, 192, 256)
    size = image // 4
    shapes = []
    for s, (n, c0) in enumerate(zip(layers, start)):
        for i in range(n):
            c_in = c0 + 64 * i
            shapes.append({"name": f"stage{s + 1}.layer{i}", "c_in": c_in, "h": size, "w": size,
                           "M": 64, "K": c_in * 9, "N": size * size})
        size //= 2
    return shapes


# ---------------------------------------------------------------------------------------
# command line: bad input is one line on stderr and exit code 2

from ._cli import ArgumentParser as _Parser  # noqa: E402
from ._cli import UsageError  # noqa: E402


def _int_at_least(lo):
    def conv(s):
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {s!r}")
        return v
    return conv


def _float_at_least(lo):
    def conv(s):
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
        if not v >= lo:  # also rejects NaN
            raise argparse.ArgumentTypeError(f"expected a number >= {lo:g}, got {s!r}")
        return v
    return conv


# ---------------------------------------------------------------------------------------
# timing

def _median_time(fn, repeat, min_sample=0.001, stat="median"):
    """Seconds per call over ``repeat`` samples (median, or min: the least disturbed sample
    on a busy machine); each sample loops long enough to be above timer noise."""
    # Warm up for a while, not one call: a pool's idle workers sleep after ~2 ms and a
    # freshly created or woken thread can take tens of ms to be scheduled here; a
    # network's layers run back to back, so steady state is what is measured.
    t_end = time.perf_counter() + 0.05
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        one = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(min_sample / one))
    samples = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return float(np.min(samples) if stat == "min" else np.median(samples))


def _stat(samples, stat):
    return float(np.min(samples) if stat == "min" else np.median(samples))


def _blas_info():
    info = {"OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE")}
    if threadpoolctl is not None:
        libs = [{"api": d.get("internal_api"), "version": d.get("version"),
                 "kernel": d.get("architecture"), "threads": d.get("num_threads"),
                 "file": os.path.basename(d.get("filepath", ""))}
                for d in threadpoolctl.threadpool_info() if d.get("user_api") == "blas"]
        # numpy's own BLAS (MXNet may bring a second OpenBLAS into the process)
        numpy_libs = [d for d, raw in zip(libs, [d for d in threadpoolctl.threadpool_info() if d.get("user_api") == "blas"])
                      if "numpy" in raw.get("filepath", "")]
        info["numpy_blas"] = numpy_libs or libs
    else:
        info["numpy_blas"] = "unknown (threadpoolctl missing; OPENBLAS_NUM_THREADS=1 set)"
    return info


def _one_blas_thread():
    if threadpoolctl is None:
        import contextlib
        return contextlib.nullcontext()
    return threadpoolctl.threadpool_limits(1, user_api="blas")


# ---------------------------------------------------------------------------------------
# gemm subcommand

def _add_gemm(sub):
    p = sub.add_parser("gemm", help="binary GEMM / conv vs numpy float32 GEMM on binarydensenet37 shapes",
                       description=(
                           "Every binary 3x3 conv of binarydensenet37 at 224x224: G binary-MAC/s of\n"
                           "bmx.engine.binary_gemm (packed operands) and of bmx.engine.binary_conv2d\n"
                           "(float input packing and im2col included; weights packed once, as a\n"
                           "converted model holds them), numpy's float32 GEMM with one BLAS thread on\n"
                           "the same M, N, K, the ratios, and each thread count's speed-up over one\n"
                           "thread. A binary conv is an xnor-popcount GEMM with M = output channels,\n"
                           "K = C_in * kh * kw bits and N = output pixels."),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    p.add_argument("--threads", type=_int_at_least(1), nargs="+", default=[1, 2], help="thread counts (default: 1 2)")
    p.add_argument("--repeat", type=_int_at_least(1), default=7, help="samples per measurement (default 7)")
    p.add_argument("--stat", choices=("median", "min"), default="median",
                   help="statistic over the samples: median (default) or min (least disturbed sample, for "
                        "machines shared with other work)")
    p.add_argument("--kernels", nargs="+", default=["auto"],
                   help="bgemm kernels to measure: 'auto', names from list_kernels(), or 'all' (every available "
                        "non-reference kernel)")
    p.add_argument("--layers", type=int, nargs="+", default=None,
                   help="indices of the layers to run (default: all 32)")
    p.add_argument("--image", type=_int_at_least(32), default=224,
                   help="input resolution, >= 32 (default 224)")
    p.add_argument("--seed", type=int, default=0)
    return p


def _resolve_kernels(names):
    from . import engine
    avail = [n for n, ok in engine.list_kernels() if ok and "reference" not in n]
    out = []
    for n in names:
        if n == "all":
            out += avail
        elif n == "auto" or n in avail:
            out.append(n)
        else:
            known = ", ".join(n for n, _ in engine.list_kernels())
            raise UsageError(f"kernel {n!r} is unknown or not available on this CPU (known: {known}; "
                             f"available: {', '.join(avail)})")
    seen, uniq = set(), []
    for n in out:
        if n not in seen:
            seen.add(n)
            uniq.append(n)
    return uniq


def run_gemm(args):
    """Run the ``gemm`` benchmark; returns the result document (also printed)."""
    from . import convention, engine

    kernels = _resolve_kernels(args.kernels)
    threads = sorted(set(args.threads))
    if min(threads) < 1:
        raise UsageError("--threads must be >= 1")
    base_t = 1 if 1 in threads else threads[0]
    shapes = binarydensenet37_shapes(args.image)
    if args.layers is not None:
        bad = [i for i in args.layers if not 0 <= i < len(shapes)]
        if bad:
            raise UsageError(f"--layers out of range 0..{len(shapes) - 1}: {bad}")
        shapes = [shapes[i] for i in args.layers]
    rng = np.random.default_rng(args.seed)
    results = []
    # Start every thread pool before measuring: the first use creates the worker threads,
    # which the OS may take tens of ms to schedule.
    warm_a = engine.pack_bits(np.ones((64, 4096), np.float32))
    for t in threads:
        t_end = time.perf_counter() + 0.2
        while time.perf_counter() < t_end:
            engine.binary_gemm(warm_a, warm_a, 4096, num_threads=t)
    fork_join = _fork_join() if 2 in threads else None
    with _one_blas_thread():
        blas = _blas_info()
        for sh in shapes:
            m, n, k, c_in = sh["M"], sh["N"], sh["K"], sh["c_in"]
            # float baseline: weights (M, K) @ im2col columns (K, N), as Caffe/MXNet lay it out
            wf = rng.standard_normal((m, k), dtype=np.float32)
            cf = rng.standard_normal((k, n), dtype=np.float32)
            t_np = _median_time(lambda: np.matmul(wf, cf), args.repeat, stat=args.stat)
            # binary operands with the same M, N, K
            a_bits = convention.pack_bits(np.where(rng.random((m, k)) < 0.5, -1, 1).astype(np.float32))
            b_bits = engine.pack_bits(np.where(rng.random((n, k)) < 0.5, -1, 1).astype(np.float32))
            x = np.where(rng.random((1, sh["h"], sh["w"], c_in)) < 0.5, -1, 1).astype(np.float32)
            w_bits = engine.pack_bits(np.where(rng.random((m, 3, 3, c_in)) < 0.5, -1, 1).astype(np.float32))
            macs = float(m) * n * k
            for kern in kernels:
                per_t = {}
                # filters arranged once for the kernel, as a converted model holds them
                w_k = engine.pack_filters(w_bits, in_channels=c_in, kernel=kern)
                for t in threads:
                    # In C++ (the kernel as a network calls it) ...
                    tg = _stat(engine.time_binary_gemm(a_bits, b_bits, k, num_threads=t, kernel=kern,
                                                       repeat=args.repeat), args.stat)
                    tc = _stat(engine.time_binary_conv2d(x, w_k, padding=1, num_threads=t, repeat=args.repeat),
                               args.stat)
                    # ... and through Python, whose per-call cost (~1 us) is the user's too.
                    pg = _median_time(lambda: engine.binary_gemm(a_bits, b_bits, k, num_threads=t, kernel=kern),
                                      args.repeat, stat=args.stat)
                    pc = _median_time(lambda: engine.binary_conv2d(x, w_k, padding=1, num_threads=t), args.repeat,
                                      stat=args.stat)
                    per_t[t] = (tg, tc, pg, pc)
                for t in threads:
                    tg, tc, pg, pc = per_t[t]
                    b0 = per_t[base_t]
                    results.append({
                        "layer": sh["name"], "M": m, "N": n, "K": k, "c_in": c_in,
                        "kernel": kern, "kernel_name": engine.auto_kernel() if kern == "auto" else kern,
                        "threads": t,
                        "numpy_gmacs": macs / t_np / 1e9,
                        "gemm_gmacs": macs / tg / 1e9,
                        "conv_gmacs": macs / tc / 1e9,
                        "gemm_vs_numpy": t_np / tg,
                        "conv_vs_numpy": t_np / tc,
                        "gemm_scaling": b0[0] / tg,
                        "conv_scaling": b0[1] / tc,
                        "py_gemm_gmacs": macs / pg / 1e9,
                        "py_conv_gmacs": macs / pc / 1e9,
                        "py_gemm_vs_numpy": t_np / pg,
                        "py_conv_vs_numpy": t_np / pc,
                        "py_gemm_scaling": b0[2] / pg,
                        "py_conv_scaling": b0[3] / pc,
                    })
                    if fork_join and t == 2 and base_t == 1:
                        # the most 2 threads can give if splitting the work were free
                        # and only the bare handshake were paid
                        fj = fork_join["bare_us"] * 1e-6
                        results[-1]["gemm_scaling_bound"] = b0[0] / (b0[0] / 2 + fj)
                        results[-1]["conv_scaling_bound"] = b0[1] / (b0[1] / 2 + fj)
    doc = {
        "benchmark": "gemm",
        "model": f"binarydensenet37 @ {args.image}x{args.image}",
        "machine": {"cpu": _cpu_name(), "cpu_features": engine.cpu_features(), "python": platform.python_version(),
                    "numpy": np.__version__, "blas": blas},
        "kernels": kernels, "threads": threads, "repeat": args.repeat, "stat": args.stat,
        "load_average": _loadavg(),
        "fork_join": fork_join,
        "results": results,
        "summary": _summary(results, kernels, threads, base_t),
    }
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        _print_tables(doc, base_t)
    return doc


def _fork_join(work_us=4.0):
    """What one 2-thread call costs beyond its work on this machine: bmx's pool, and a bare
    flag handshake between two spinning threads (two cache-line transfers, the floor)."""
    from . import _engine
    d = _engine.time_fork_join(work_us, min_seconds=0.01, repeat=7)
    med = {k: float(np.median(v)) * 1e6 for k, v in d.items()}
    return {"work_us": work_us, "inline_us": med["inline"], "pool_us": med["pool"] - med["inline"],
            "bare_us": med["bare"] - med["inline"]}


def _summary(results, kernels, threads, base_t):
    out = []
    for kern in kernels:
        rows1 = [r for r in results if r["kernel"] == kern and r["threads"] == base_t]
        entry = {"kernel": kern, "kernel_name": rows1[0]["kernel_name"] if rows1 else kern,
                 "min_gemm_vs_numpy": min(r["gemm_vs_numpy"] for r in rows1),
                 "min_conv_vs_numpy": min(r["conv_vs_numpy"] for r in rows1),
                 "min_py_gemm_vs_numpy": min(r["py_gemm_vs_numpy"] for r in rows1),
                 "min_py_conv_vs_numpy": min(r["py_conv_vs_numpy"] for r in rows1),
                 "gemm_target": GEMM_TARGET, "conv_target": CONV_TARGET, "scaling_target": SCALING_TARGET}
        for t in threads:
            if t == base_t:
                continue
            rows = [r for r in results if r["kernel"] == kern and r["threads"] == t]
            for key in ("gemm", "conv", "py_gemm", "py_conv"):
                entry[f"min_{key}_scaling_{t}t"] = min(r[f"{key}_scaling"] for r in rows)
                entry[f"layers_below_target_{key}_{t}t"] = [r["layer"] for r in rows
                                                              if r[f"{key}_scaling"] < SCALING_TARGET]
        out.append(entry)
    return out


def _print_tables(doc, base_t):
    m = doc["machine"]
    print(f"bmx-bench gemm: {doc['model']}, {m['cpu']} [{m['cpu_features']}], numpy {m['numpy']}, "
          f"BLAS {m['blas'].get('numpy_blas')}, OPENBLAS_CORETYPE={m['blas'].get('OPENBLAS_CORETYPE')}")
    print("G MAC/s (binary MACs for bmx, float32 MACs for numpy, 1 BLAS thread), bmx timed in C++ (the kernel "
          "as a network calls it); x = ratio to numpy; s = speed-up over "
          f"{base_t} thread(s); py s = the same speed-up measured through the Python call (~1 us of fixed cost "
          f"per call); conv includes input packing and im2col; {doc['stat']} of {doc['repeat']} samples; "
          f"load average {doc['load_average']}")
    for kern in doc["kernels"]:
        rows = [r for r in doc["results"] if r["kernel"] == kern]
        name = rows[0]["kernel_name"]
        print(f"\nkernel {kern}" + (f" ({name})" if name != kern else ""))
        head = f"{'layer':<15}{'M':>4}{'N':>6}{'K':>6}{'numpy':>8}"
        for t in doc["threads"]:
            if t == base_t:
                head += f"{'gemm@' + str(t):>10}{'x':>7}{'conv@' + str(t):>10}{'x':>7}"
            else:
                head += f"{'gemm@' + str(t):>10}{'s':>6}{'py s':>6}{'conv@' + str(t):>10}{'s':>6}{'py s':>6}"
        print(head)
        by_layer = {}
        for r in rows:
            by_layer.setdefault(r["layer"], []).append(r)
        for layer, rs in by_layer.items():
            r0 = rs[0]
            line = f"{layer:<15}{r0['M']:>4}{r0['N']:>6}{r0['K']:>6}{r0['numpy_gmacs']:>8.1f}"
            for r in sorted(rs, key=lambda r: r["threads"]):
                if r["threads"] == base_t:
                    line += (f"{r['gemm_gmacs']:>10.1f}{r['gemm_vs_numpy']:>6.1f}x"
                             f"{r['conv_gmacs']:>10.1f}{r['conv_vs_numpy']:>6.1f}x")
                else:
                    line += (f"{r['gemm_gmacs']:>10.1f}{r['gemm_scaling']:>6.2f}{r['py_gemm_scaling']:>6.2f}"
                             f"{r['conv_gmacs']:>10.1f}{r['conv_scaling']:>6.2f}{r['py_conv_scaling']:>6.2f}")
            print(line)
    fj = doc.get("fork_join")
    if fj:
        print(f"\nfork-join cost per 2-thread call here ({fj['work_us']:g} us chunks): bmx pool {fj['pool_us']:.2f} us, "
              f"bare two-thread handshake {fj['bare_us']:.2f} us (the floor); so a call of W us of work can reach at "
              f"most W / (W/2 + {fj['bare_us']:.2f}) with 2 threads")
        rows = [r for r in doc["results"] if "gemm_scaling_bound" in r]
        if rows:
            lo = min(rows, key=lambda r: r["gemm_scaling_bound"])
            print(f"  lowest such bound: {lo['layer']} gemm {lo['gemm_scaling_bound']:.2f} "
                  f"(measured {lo['gemm_scaling']:.2f}), conv {lo['conv_scaling_bound']:.2f} "
                  f"(measured {lo['conv_scaling']:.2f})")
    print("\nsummary (minimum over layers):")
    for s in doc["summary"]:
        parts = [f"gemm {s['min_gemm_vs_numpy']:.1f}x (through Python {s['min_py_gemm_vs_numpy']:.1f}x; "
                 f"target {GEMM_TARGET:g}x)",
                 f"conv {s['min_conv_vs_numpy']:.1f}x (through Python {s['min_py_conv_vs_numpy']:.1f}x; "
                 f"target {CONV_TARGET:g}x)"]
        parts += [f"{k.replace('min_', '').replace('_', ' ')} {v:.2f}"
                  for k, v in s.items() if k.startswith("min_") and "scaling" in k]
        print(f"  {s['kernel']:<22} " + "; ".join(parts) + f" (scaling target {SCALING_TARGET:g})")
        for k, v in s.items():
            if k.startswith("layers_below_target") and v:
                print(f"    {k.replace('layers_below_target_', '').replace('_', ' ')} below "
                      f"{SCALING_TARGET:g}: {', '.join(v)}")


def _loadavg():
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):
        return None


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------------------------------
# models subcommand: whole networks, bmx engine vs MXNet on the same CPU

#: networks measured by default (batch 1, 224x224)
MODELS = ("resnete18", "binarydensenet28", "binarydensenet37", "meliusnet22")
#: targets of whole networks: engine vs MXNet float twin at 1 thread, 2 threads vs 1 (bmx)
MODEL_TARGET = 5.0
MODEL_SCALING_TARGET = 1.7
#: binary convs inside a model vs binary_gemm alone on the same M, N, K
LAYER_RATE_TARGET = 0.6


def _add_models(sub):
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
    p.add_argument("--threads", type=_int_at_least(1), nargs="+", default=[1, 2], help="thread counts (default: 1 2)")
    p.add_argument("--repeat", type=_int_at_least(1), default=20,
                   help="timed runs per measurement, after the warm-up (default 20)")
    p.add_argument("--stat", choices=("median", "min"), default="median",
                   help="statistic over the runs: median (default) or min (least disturbed run)")
    p.add_argument("--models", nargs="+", default=list(MODELS), metavar="NAME",
                   help="model zoo names (default: " + " ".join(MODELS) + ")")
    p.add_argument("--profile", action="store_true",
                   help="also report the engine's time per op kind and per-layer binary conv rates")
    p.add_argument("--no-mxnet", dest="mxnet", action="store_false",
                   help="measure the bmx engine only (models are still converted with MXNet)")
    p.add_argument("--image", type=_int_at_least(32), default=224, help="input resolution, >= 32 (default 224)")
    p.add_argument("--warmup", type=_float_at_least(0.0), default=0.5,
                   help="seconds of warm-up per measurement, at least 3 runs (default 0.5)")
    p.add_argument("--seed", type=int, default=0)
    return p


def _thread_cpu_ns():
    """CPU time (ns) of every thread of this process, from /proc (schedstat, else stat)."""
    out = {}
    base = "/proc/self/task"
    try:
        tids = os.listdir(base)
    except OSError:
        return out
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for tid in tids:
        try:
            with open(f"{base}/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0])
            continue
        except (OSError, ValueError, IndexError):
            pass
        try:
            with open(f"{base}/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[tid] = (int(fields[11]) + int(fields[12])) * 1_000_000_000 // tick
        except (OSError, ValueError, IndexError):
            pass
    return out


def _time_runs(fn, repeat, warmup, stat):
    """Warm up for ``warmup`` seconds (at least 3 calls), then time ``repeat`` single calls.

    Returns (seconds per call by ``stat``, all samples, busy threads, CPU utilisation): busy
    threads are those of this process that used at least 25% of the timed wall time (a
    pool's spinning workers count: they hold a core), utilisation is the process CPU time
    over the wall time.
    """
    t_end = time.perf_counter() + warmup
    n = 0
    while n < 3 or time.perf_counter() < t_end:
        fn()
        n += 1
    before = _thread_cpu_ns()
    c0 = time.process_time()
    w0 = time.perf_counter()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    wall = time.perf_counter() - w0
    cpu = time.process_time() - c0
    after = _thread_cpu_ns()
    busy = sum(1 for tid, ns in after.items() if (ns - before.get(tid, 0)) >= 0.25 * wall * 1e9)
    value = float(np.min(samples) if stat == "min" else np.median(samples))
    return value, [float(s) for s in samples], busy, cpu / wall if wall > 0 else None


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


def _build_net(name, binary, shape, seed):
    import mxnet as mx
    from .model_zoo import get_model
    from .model_zoo.common import default_initializer
    mx.random.seed(seed)
    net = get_model(name) if binary else get_model(name, binary=False)
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
            from .converter import convert
            data = convert(net_b, input_shape=(1, 3, spec["image"], spec["image"]))
            path = os.path.join(spec["convert_dir"], name + ".bmx")
            with open(path, "wb") as f:
                f.write(data)
            res["model_bytes"] = len(data)
        if spec.get("measure", True):
            for kind, net in (("binary", net_b), ("float", _build_net(name, False, shape, spec["seed"]))):
                net.hybridize(static_alloc=True, static_shape=True)
                t, samples, busy, util = _time_runs(lambda: net(x).wait_to_read(), spec["repeat"], spec["warmup"],
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
    cmd = [sys.executable, "-c", "import sys; from bmx.bench import _mxnet_worker; sys.exit(_mxnet_worker(sys.argv[1]))",
           json.dumps(spec)]
    proc = subprocess.run(cmd, env=_mxnet_env(threads), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"MXNet worker ({threads} threads) failed with code {proc.returncode}:\n{tail}")
    return json.loads(lines[-1])


def _binary_conv_layers(data):
    """(op name, M = C_out, N = output pixels, K = C_in/groups * KH * KW) of every binary conv
    in a model file."""
    from .convert_utils.reader import read_model
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


def _gemm_rate(m, n, k, threads, repeat, cache):
    """G binary MAC/s of binary_gemm alone on (M, N, K): the GEMM benchmark's rate."""
    key = (m, n, k, threads)
    if key not in cache:
        from . import engine
        rng = np.random.default_rng(m * 1_000_003 + n * 1009 + k)
        a = engine.pack_bits(np.where(rng.random((n, k)) < 0.5, -1, 1).astype(np.float32))
        b = engine.pack_bits(np.where(rng.random((m, k)) < 0.5, -1, 1).astype(np.float32))
        t = _median_time(lambda: engine.binary_gemm(a, b, k, num_threads=threads), max(repeat, 5))
        cache[key] = float(m) * n * k / t / 1e9
    return cache[key]


def _profile_engine(name, data, threads, x, args, gemm_cache):
    from . import engine
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
        g = _gemm_rate(lay["M"], lay["N"], lay["K"], threads, args.repeat, gemm_cache)
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


def run_models(args):
    """Run the ``models`` benchmark; returns the result document (also printed)."""
    import tempfile

    from . import engine
    from .model_zoo import get_model_list
    known = get_model_list()
    bad = [m for m in args.models if m.lower() not in known]
    if bad:
        raise UsageError(f"unknown model(s) {', '.join(bad)}; known: {', '.join(known)}")
    models = list(dict.fromkeys(m.lower() for m in args.models))
    threads = sorted(set(args.threads))
    base_t = 1 if 1 in threads else threads[0]
    spec = {"models": models, "image": args.image, "batch": 1, "repeat": args.repeat, "seed": args.seed,
            "warmup": args.warmup, "stat": args.stat}
    load_before = _loadavg()
    mx_by_t = {}
    with tempfile.TemporaryDirectory(prefix="bmx-bench-") as tmp:
        # The first worker also converts the models; the engine is measured here, in a
        # process where MXNet never computed anything (no OpenMP threads spinning).
        for i, t in enumerate(threads if args.mxnet else threads[:1]):
            mx_by_t[t] = _run_worker(dict(spec, convert_dir=tmp if i == 0 else None, measure=args.mxnet), t)
        blobs = {}
        for name in models:
            with open(os.path.join(tmp, name + ".bmx"), "rb") as f:
                blobs[name] = f.read()
    x = np.random.default_rng(args.seed).standard_normal((1, 3, args.image, args.image)).astype(np.float32)
    first = mx_by_t[threads[0]]
    results, profiles, gemm_cache = [], [], {}
    for name in models:
        per_t = {}
        for t in threads:
            model = engine.Model(blobs[name], num_threads=t)
            sec, samples, busy, util = _time_runs(lambda: model.predict(x), args.repeat, args.warmup, args.stat)
            per_t[t] = {"seconds": sec, "samples": samples, "busy_threads": busy, "cpu_util": util}
            del model
        for t in threads:
            r = {"model": name, "threads": t, "model_bytes": first["models"][name].get("model_bytes"),
                 "bmx_ms": per_t[t]["seconds"] * 1e3, "bmx_busy_threads": per_t[t]["busy_threads"],
                 "bmx_cpu_util": per_t[t]["cpu_util"],
                 "bmx_scaling": per_t[base_t]["seconds"] / per_t[t]["seconds"]}
            if args.mxnet:
                mx_res = mx_by_t[t]["models"][name]
                for kind in ("float", "binary"):
                    m = mx_res[kind]
                    r[f"mxnet_{kind}_ms"] = m["seconds"] * 1e3
                    r[f"mxnet_{kind}_busy_threads"] = m["busy_threads"]
                    r[f"mxnet_{kind}_cpu_util"] = m["cpu_util"]
                    r[f"{kind}_vs_bmx"] = m["seconds"] / per_t[t]["seconds"]
                    r[f"mxnet_{kind}_scaling"] = (mx_by_t[base_t]["models"][name][kind]["seconds"] / m["seconds"])
            r["bmx_samples_ms"] = [s * 1e3 for s in per_t[t]["samples"]]
            results.append(r)
        if args.profile:
            for t in threads:
                profiles.append(_profile_engine(name, blobs[name], t, x, args, gemm_cache))
    doc = {
        "benchmark": "models", "image": args.image, "batch": 1, "repeat": args.repeat, "stat": args.stat,
        "threads": threads, "models": models,
        "machine": {"cpu": _cpu_name(), "cpu_features": engine.cpu_features(), "kernel": engine.auto_kernel(),
                    "cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                    "mxnet": first.get("mxnet"), "mxnet_features": first.get("mxnet_features")},
        "load_average": {"before": load_before, "after": _loadavg()},
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
    head = f"{'model':<18}{'thr':>4}{'bmx ms':>9}{'s':>6}{'busy':>5}"
    if with_mxnet:
        head += f"{'mx-float':>10}{'x':>7}{'busy':>5}{'mx-binary':>11}{'x':>7}{'busy':>5}"
    print(head)
    for r in doc["results"]:
        line = (f"{r['model']:<18}{r['threads']:>4}{r['bmx_ms']:>9.2f}{r['bmx_scaling']:>6.2f}"
                f"{r['bmx_busy_threads']:>5}")
        if with_mxnet:
            line += (f"{r['mxnet_float_ms']:>10.2f}{r['float_vs_bmx']:>6.1f}x{r['mxnet_float_busy_threads']:>5}"
                     f"{r['mxnet_binary_ms']:>11.2f}{r['binary_vs_bmx']:>6.1f}x{r['mxnet_binary_busy_threads']:>5}")
        print(line)
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


# ---------------------------------------------------------------------------------------
# entry point

#: subcommand name -> (function adding its parser to the subparsers, runner(args))
def _add_train(sub):
    from . import bench_train
    return bench_train.add_parser(sub, _int_at_least)


def _run_train(args):
    from . import bench_train
    try:
        return bench_train.run(args)
    except RuntimeError as e:
        raise UsageError(str(e)) from None


SUBCOMMANDS = {"gemm": (_add_gemm, run_gemm), "models": (_add_models, run_models),
               "train": (_add_train, _run_train)}


def build_parser():
    parser = _Parser(prog="bmx-bench", description="Benchmarks of the bmx engine.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"bmx-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add, _run) in SUBCOMMANDS.items():
        add(sub)
    return parser


def main(argv=None):
    """Entry point of ``bmx-bench``: 0, or 2 with one line on stderr for bad input."""
    try:
        args = build_parser().parse_args(argv)
        SUBCOMMANDS[args.command][1](args)
    except UsageError as e:
        print(f"bmx-bench: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
