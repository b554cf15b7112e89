"""Helpers shared by the ``bmx-bench`` subcommands: argument types, timing, and a
description of the machine."""
import argparse
import contextlib
import os
import platform
import time

# Fallback when threadpoolctl is missing: must be set before numpy loads OpenBLAS.
try:
    import threadpoolctl
except ImportError:  # pragma: no cover - threadpoolctl is in the dev environment
    threadpoolctl = None
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np



# ---------------------------------------------------------------------------------------
# argument types: a bad value is one line on stderr and exit code 2

def float_at_least(lo):
    """Argparse type: a number >= ``lo`` (NaN rejected)."""
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

def statistic(samples, stat):
    """``min`` or ``median`` (any other value) of ``samples``, as a float."""
    return float(np.min(samples) if stat == "min" else np.median(samples))


def median_time(fn, repeat, min_sample=0.001, stat="median"):
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
    return statistic(samples, stat)


def thread_cpu_ns():
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


def time_runs(fn, repeat, warmup, stat):
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
    before = thread_cpu_ns()
    c0 = time.process_time()
    w0 = time.perf_counter()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    wall = time.perf_counter() - w0
    cpu = time.process_time() - c0
    after = thread_cpu_ns()
    busy = sum(1 for tid, ns in after.items() if (ns - before.get(tid, 0)) >= 0.25 * wall * 1e9)
    return statistic(samples, stat), [float(s) for s in samples], busy, cpu / wall if wall > 0 else None


# ---------------------------------------------------------------------------------------
# the machine

def blas_info():
    """numpy's BLAS (library, version, kernel, threads) and the OpenBLAS variables."""
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


def one_blas_thread():
    """Context limiting BLAS to one thread (a no-op without threadpoolctl)."""
    if threadpoolctl is None:
        return contextlib.nullcontext()
    return threadpoolctl.threadpool_limits(1, user_api="blas")


def loadavg():
    """The 1, 5 and 15 minute load averages, or None where the OS has none."""
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):
        return None


def cpu_name():
    """The CPU's model name (/proc/cpuinfo, else what :mod:`platform` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
