"""``bmx-bench gemm``: the binary GEMM and convolution kernels on the layer shapes of
binarydensenet37, against numpy's float32 GEMM with one BLAS thread on the same M, N, K.

A binary convolution is an xnor-popcount GEMM with M = output channels, K = C_in * kh * kw
bits and N = output pixels (Rastegari et al., "XNOR-Net", 2016).
"""
import argparse
import json
import platform
import time

import numpy as np

from .._cli import UsageError, int_at_least
from .common import (blas_info, cpu_name, loadavg, median_time, one_blas_thread,
                     statistic)

#: targets of the per-layer kernels (single thread vs numpy float32 GEMM with one BLAS thread)
GEMM_TARGET = 8.0
CONV_TARGET = 5.0
SCALING_TARGET = 1.8


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


def add_parser(sub):
    """Add the ``gemm`` subcommand to ``sub`` (argparse subparsers)."""
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
    p.add_argument("--threads", type=int_at_least(1), nargs="+", default=[1, 2], help="thread counts (default: 1 2)")
    p.add_argument("--repeat", type=int_at_least(1), default=7, help="samples per measurement (default 7)")
    p.add_argument("--stat", choices=("median", "min"), default="median",
                   help="statistic over the samples: median (default) or min (least disturbed sample, for "
                        "machines shared with other work)")
    p.add_argument("--kernels", nargs="+", default=["auto"],
                   help="bgemm kernels to measure: 'auto', names from list_kernels(), or 'all' (every available "
                        "non-reference kernel)")
    p.add_argument("--layers", type=int, nargs="+", default=None,
                   help="indices of the layers to run (default: all 32)")
    p.add_argument("--image", type=int_at_least(32), default=224,
                   help="input resolution, >= 32 (default 224)")
    p.add_argument("--seed", type=int, default=0)
    return p


def _resolve_kernels(names):
    from .. import engine
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


def _select_shapes(image, layers):
    shapes = binarydensenet37_shapes(image)
    if layers is not None:
        bad = [i for i in layers if not 0 <= i < len(shapes)]
        if bad:
            raise UsageError(f"--layers out of range 0..{len(shapes) - 1}: {bad}")
        shapes = [shapes[i] for i in layers]
    return shapes


def _warm_pools(threads):
    """Start every thread pool before measuring: the first use creates the worker threads,
    which the OS may take tens of ms to schedule."""
    from .. import engine
    warm_a = engine.pack_bits(np.ones((64, 4096), np.float32))
    for t in threads:
        t_end = time.perf_counter() + 0.2
        while time.perf_counter() < t_end:
            engine.binary_gemm(warm_a, warm_a, 4096, num_threads=t)


def _time_kernel(a_bits, b_bits, k, x, w_k, threads, kernel, args):
    """Seconds of one binary GEMM and one binary conv at ``threads`` threads: timed in C++
    and through Python."""
    from .. import engine
    # In C++ (the kernel as a network calls it) ...
    tg = statistic(engine.time_binary_gemm(a_bits, b_bits, k, num_threads=threads, kernel=kernel,
                                           repeat=args.repeat), args.stat)
    tc = statistic(engine.time_binary_conv2d(x, w_k, padding=1, num_threads=threads, repeat=args.repeat),
                   args.stat)
    # ... and through Python, whose per-call cost (~1 us) is the user's too.
    pg = median_time(lambda: engine.binary_gemm(a_bits, b_bits, k, num_threads=threads, kernel=kernel),
                     args.repeat, stat=args.stat)
    pc = median_time(lambda: engine.binary_conv2d(x, w_k, padding=1, num_threads=threads), args.repeat,
                     stat=args.stat)
    return tg, tc, pg, pc


def _result_row(sh, kern, t, t_np, per_t, base_t, fork_join):
    from .. import engine
    macs = float(sh["M"]) * sh["N"] * sh["K"]
    tg, tc, pg, pc = per_t[t]
    b0 = per_t[base_t]
    row = {
        "layer": sh["name"], "M": sh["M"], "N": sh["N"], "K": sh["K"], "c_in": sh["c_in"],
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
    }
    if fork_join and t == 2 and base_t == 1:
        # the most 2 threads can give if splitting the work were free
        # and only the bare handshake were paid (its overhead is measured as a
        # difference of two timings: noise can make it negative, a cost cannot be)
        fj = max(fork_join["bare_us"], 0.0) * 1e-6
        row["gemm_scaling_bound"] = b0[0] / (b0[0] / 2 + fj)
        row["conv_scaling_bound"] = b0[1] / (b0[1] / 2 + fj)
    return row


def _measure_layer(sh, kernels, threads, base_t, args, rng, fork_join):
    """Result rows of one layer shape: every kernel at every thread count."""
    from .. import convention, engine
    m, n, k, c_in = sh["M"], sh["N"], sh["K"], sh["c_in"]
    # float baseline: weights (M, K) @ im2col columns (K, N), as Caffe/MXNet lay it out
    wf = rng.standard_normal((m, k), dtype=np.float32)
    cf = rng.standard_normal((k, n), dtype=np.float32)
    t_np = median_time(lambda: np.matmul(wf, cf), args.repeat, stat=args.stat)
    # binary operands with the same M, N, K
    a_bits = convention.pack_bits(np.where(rng.random((m, k)) < 0.5, -1, 1).astype(np.float32))
    b_bits = engine.pack_bits(np.where(rng.random((n, k)) < 0.5, -1, 1).astype(np.float32))
    x = np.where(rng.random((1, sh["h"], sh["w"], c_in)) < 0.5, -1, 1).astype(np.float32)
    w_bits = engine.pack_bits(np.where(rng.random((m, 3, 3, c_in)) < 0.5, -1, 1).astype(np.float32))
    rows = []
    for kern in kernels:
        # filters arranged once for the kernel, as a converted model holds them
        w_k = engine.pack_filters(w_bits, in_channels=c_in, kernel=kern)
        per_t = {t: _time_kernel(a_bits, b_bits, k, x, w_k, t, kern, args) for t in threads}
        rows += [_result_row(sh, kern, t, t_np, per_t, base_t, fork_join) for t in threads]
    return rows


def run_gemm(args):
    """Run the ``gemm`` benchmark; returns the result document (also printed)."""
    from .. import engine

    kernels = _resolve_kernels(args.kernels)
    threads = sorted(set(args.threads))
    if min(threads) < 1:
        raise UsageError("--threads must be >= 1")
    base_t = 1 if 1 in threads else threads[0]
    shapes = _select_shapes(args.image, args.layers)
    rng = np.random.default_rng(args.seed)
    results = []
    _warm_pools(threads)
    fork_join = _fork_join() if 2 in threads else None
    with one_blas_thread():
        blas = blas_info()
        for sh in shapes:
            results += _measure_layer(sh, kernels, threads, base_t, args, rng, fork_join)
    doc = {
        "benchmark": "gemm",
        "model": f"binarydensenet37 @ {args.image}x{args.image}",
        "machine": {"cpu": cpu_name(), "cpu_features": engine.cpu_features(), "python": platform.python_version(),
                    "numpy": np.__version__, "blas": blas},
        "kernels": kernels, "threads": threads, "repeat": args.repeat, "stat": args.stat,
        "load_average": loadavg(),
        "fork_join": fork_join,
        "results": results,
        "summary": _summary(results, kernels, threads, base_t),
    }
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        _print_tables(doc, base_t)
    return doc


def gemm_rate(m, n, k, threads, repeat, cache):
    """G binary MAC/s of binary_gemm alone on (M, N, K): the GEMM benchmark's rate.

    ``cache`` (a dict) keeps each (M, N, K, threads) measured once.
    """
    key = (m, n, k, threads)
    if key not in cache:
        from .. import engine
        rng = np.random.default_rng(m * 1_000_003 + n * 1009 + k)
        a = engine.pack_bits(np.where(rng.random((n, k)) < 0.5, -1, 1).astype(np.float32))
        b = engine.pack_bits(np.where(rng.random((m, k)) < 0.5, -1, 1).astype(np.float32))
        t = median_time(lambda: engine.binary_gemm(a, b, k, num_threads=threads), max(repeat, 5))
        cache[key] = float(m) * n * k / t / 1e9
    return cache[key]


def _fork_join(work_us=4.0):
    """What one 2-thread call costs beyond its work on this machine: bmx's pool, and a bare
    flag handshake between two spinning threads (two cache-line transfers, the floor)."""
    from .. import _engine
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
