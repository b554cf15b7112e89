"""k-bit bit-plane GEMM (kbit_gemm) against the 1-bit binary GEMM (binary_gemm), single thread,
at the 3x3-convolution shapes of a BinaryDenseNet-28-like network: M pixels, N = 64 output
channels, K = 9 * C_in elements (words = 9 * ceil(C_in / 64) per plane).

Both are timed the same way, from Python (best of --repeat samples, each a loop of calls
lasting at least --min-time seconds), so each time includes one Python call's overhead
(a few us; the "bgemm C++" column is binary_gemm timed in C++ without it, for scale).

    PYTHONPATH=. python scripts/bench_kbgemm.py [--repeat 7] [--min-time 0.02] [--kernel auto]
        [--bgemm-kernel auto]

On an AVX-512 machine, the AVX2 kernels of both against each other:
    --kernel kbgemm_3x4__avx2 --bgemm-kernel bgemm_2x8__avx2
"""
import argparse
import time

import numpy as np

from bmx import engine

SHAPES = ([(3136, c) for c in range(64, 257, 64)] + [(784, c) for c in range(128, 385, 64)]
          + [(196, c) for c in range(192, 513, 64)] + [(49, c) for c in range(256, 641, 64)])
N = 64


def best_time(fn, repeat, min_time):
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(min_time / one))
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--min-time", type=float, default=0.02)
    ap.add_argument("--kernel", default="auto", help="kbit_gemm kernel (default: auto)")
    ap.add_argument("--bgemm-kernel", default="auto", help="binary_gemm kernel (default: auto)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    auto = engine.list_kbit_kernels()
    bk = engine.auto_kernel() if args.bgemm_kernel == "auto" else args.bgemm_kernel
    print(f"bgemm: {bk}; kbgemm: {args.kernel} "
          f"(available: {[n for n, ok in auto if ok]})")
    cols = ["M", "C_in", "words", "bgemm us", "bgemm C++", "kb 1/1 us", "kb 2/2 us", "2/2 : bgemm", "1/1 : bgemm"]
    print("  ".join(f"{c:>11}" for c in cols))
    tot = np.zeros(4)
    for m, c_in in SHAPES:
        words = 9 * ((c_in + 63) // 64)
        k = 64 * words

        def planes(rows, p):
            return rng.integers(0, 2**63, (rows, p, words), dtype=np.uint64) * np.uint64(2)

        a1, b1 = planes(m, 1)[:, 0], planes(N, 1)[:, 0]
        t_b = best_time(lambda: engine.binary_gemm(a1, b1, k, kernel=bk), args.repeat, args.min_time)
        t_bc = min(engine._engine.time_binary_gemm(a1, b1, k, 1, bk, args.min_time, args.repeat, 0.01))
        ts = []
        for p in (1, 2):
            a, b = planes(m, p), planes(N, p)
            ts.append(best_time(lambda: engine.kbit_gemm(a, b, kernel=args.kernel), args.repeat, args.min_time))
        tot += [t_b, t_bc, ts[0], ts[1]]
        row = [m, c_in, words, f"{t_b * 1e6:.1f}", f"{t_bc * 1e6:.1f}", f"{ts[0] * 1e6:.1f}", f"{ts[1] * 1e6:.1f}",
               f"{ts[1] / t_b:.2f}", f"{ts[0] / t_b:.2f}"]
        print("  ".join(f"{v:>11}" for v in row), flush=True)
    print(f"sum: bgemm {tot[0] * 1e3:.3f} ms (C++ {tot[1] * 1e3:.3f}), kbgemm 1/1 {tot[2] * 1e3:.3f} ms, "
          f"2/2 {tot[3] * 1e3:.3f} ms; 2/2 : bgemm = {tot[3] / tot[0]:.2f}, 1/1 : bgemm = {tot[2] / tot[0]:.2f}")


if __name__ == "__main__":
    main()
