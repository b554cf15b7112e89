"""bmx-bench: benchmarks of the bmx engine against float baselines, in the same run.

Bethge et al., "BinaryDenseNet" (2019) / Rastegari et al., "XNOR-Net" (2016): a binary
convolution is an xnor-popcount GEMM with M = output channels, K = C_in * kh * kw bits
and N = output pixels; this tool measures it on the layer shapes of real networks.

Subcommands
-----------
``gemm``
    Every binary 3x3 conv of binarydensenet37 at 224x224: G binary-MAC/s of
    :func:`bmx.engine.binary_gemm` and of :func:`bmx.engine.binary_conv2d` (input packing
    and im2col included; weights pre-packed, as a converted model holds them), numpy's
    float32 GEMM with one BLAS thread on the same M, N, K, the ratios, and the scaling
    of every thread count over one thread.

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

#: targets of issue 4 (single thread vs numpy float32 GEMM with one BLAS thread)
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

class UsageError(Exception):
    """Bad command-line input (reported as ``bmx-bench: error: ...``, exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


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
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
                for t in threads:
                    tg = _median_time(lambda: engine.binary_gemm(a_bits, b_bits, k, num_threads=t, kernel=kern),
                                      args.repeat, stat=args.stat)
                    tc = _median_time(lambda: engine.binary_conv2d(x, w_bits, padding=1, in_channels=c_in,
                                                                   num_threads=t, kernel=kern), args.repeat,
                                      stat=args.stat)
                    per_t[t] = (tg, tc)
                for t in threads:
                    tg, tc = per_t[t]
                    results.append({
                        "layer": sh["name"], "M": m, "N": n, "K": k, "c_in": c_in,
                        "kernel": kern, "kernel_name": engine.auto_kernel() if kern == "auto" else kern,
                        "threads": t,
                        "numpy_gmacs": macs / t_np / 1e9,
                        "gemm_gmacs": macs / tg / 1e9,
                        "conv_gmacs": macs / tc / 1e9,
                        "gemm_vs_numpy": t_np / tg,
                        "conv_vs_numpy": t_np / tc,
                        "gemm_scaling": per_t[base_t][0] / tg,
                        "conv_scaling": per_t[base_t][1] / tc,
                    })
    doc = {
        "benchmark": "gemm",
        "model": f"binarydensenet37 @ {args.image}x{args.image}",
        "machine": {"cpu": _cpu_name(), "cpu_features": engine.cpu_features(), "python": platform.python_version(),
                    "numpy": np.__version__, "blas": blas},
        "kernels": kernels, "threads": threads, "repeat": args.repeat, "stat": args.stat,
        "load_average": _loadavg(),
        "results": results,
        "summary": _summary(results, kernels, threads, base_t),
    }
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        _print_tables(doc, base_t)
    return doc


def _summary(results, kernels, threads, base_t):
    out = []
    for kern in kernels:
        rows1 = [r for r in results if r["kernel"] == kern and r["threads"] == base_t]
        entry = {"kernel": kern, "kernel_name": rows1[0]["kernel_name"] if rows1 else kern,
                 "min_gemm_vs_numpy": min(r["gemm_vs_numpy"] for r in rows1),
                 "min_conv_vs_numpy": min(r["conv_vs_numpy"] for r in rows1),
                 "gemm_target": GEMM_TARGET, "conv_target": CONV_TARGET}
        for t in threads:
            if t == base_t:
                continue
            rows = [r for r in results if r["kernel"] == kern and r["threads"] == t]
            entry[f"min_gemm_scaling_{t}t"] = min(r["gemm_scaling"] for r in rows)
            entry[f"min_conv_scaling_{t}t"] = min(r["conv_scaling"] for r in rows)
        out.append(entry)
    return out


def _print_tables(doc, base_t):
    m = doc["machine"]
    print(f"bmx-bench gemm: {doc['model']}, {m['cpu']} [{m['cpu_features']}], numpy {m['numpy']}, "
          f"BLAS {m['blas'].get('numpy_blas')}, OPENBLAS_CORETYPE={m['blas'].get('OPENBLAS_CORETYPE')}")
    print("G MAC/s (binary MACs for bmx, float32 MACs for numpy, 1 BLAS thread); x = ratio to numpy; "
          f"s = speed-up over {base_t} thread(s); conv includes input packing and im2col; "
          f"{doc['stat']} of {doc['repeat']} samples; load average {doc['load_average']}")
    for kern in doc["kernels"]:
        rows = [r for r in doc["results"] if r["kernel"] == kern]
        name = rows[0]["kernel_name"]
        print(f"\nkernel {kern}" + (f" ({name})" if name != kern else ""))
        head = f"{'layer':<15}{'M':>4}{'N':>6}{'K':>6}{'numpy':>8}"
        for t in doc["threads"]:
            head += f"{'gemm@' + str(t):>10}{'x/s':>7}{'conv@' + str(t):>10}{'x/s':>7}"
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
                    line += (f"{r['gemm_gmacs']:>10.1f}{r['gemm_scaling']:>6.2f}s"
                             f"{r['conv_gmacs']:>10.1f}{r['conv_scaling']:>6.2f}s")
            print(line)
    print("\nsummary (minimum over layers):")
    for s in doc["summary"]:
        parts = [f"gemm {s['min_gemm_vs_numpy']:.1f}x (target {GEMM_TARGET:g}x)",
                 f"conv {s['min_conv_vs_numpy']:.1f}x (target {CONV_TARGET:g}x)"]
        parts += [f"{k.replace('min_', '').replace('_', ' ')} {v:.2f} (target {SCALING_TARGET:g})"
                  for k, v in s.items() if k.startswith("min_") and "scaling" in k]
        print(f"  {s['kernel']:<22} " + "; ".join(parts))


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
# entry point

#: subcommand name -> (function adding its parser to the subparsers, runner(args))
SUBCOMMANDS = {"gemm": (_add_gemm, run_gemm)}


def build_parser():
    parser = _Parser(prog="bmx-bench", description="Benchmarks of the bmx engine.")
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
