"""bmx.engine kernels against independent numpy oracles (bmx.convention, float dot products).

Every kernel the CPU can run is checked bit-exact at awkward sizes; seeds are fixed and
part of the test ids / assertion messages.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from bmx import convention
from bmx import engine

KERNELS = [name for name, ok in engine.list_kernels() if ok]
K_VALUES = [1, 63, 64, 65, 127, 128, 129, 4608]
MN_VALUES = [1, 3, 7, 17, 33]

SIGN_PACK_KERNELS = [name for name, ok in engine.list_sign_pack_kernels() if ok]
LEVEL_PACK_KERNELS = [name for name, ok in engine.list_level_pack_kernels() if ok]


def pm1(rng, shape):
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------
# pack_bits

@pytest.mark.parametrize("k", [1, 31, 63, 64, 65, 127, 128, 129, 200, 4608])
def test_pack_bits_matches_convention(k):
    seed = 100 + k
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((5, k)).astype(np.float32)
    x[:, ::7] = -0.0
    got = engine.pack_bits(x)
    assert got.dtype == np.uint64 and got.shape == (5, convention.words_for_bits(k))
    np.testing.assert_array_equal(got, convention.pack_bits(x), err_msg=f"seed={seed}")
    np.testing.assert_array_equal(got, engine._engine.pack_rows_reference(x), err_msg=f"seed={seed}")


@pytest.mark.parametrize("k", [1, 63, 64, 65, 129])
def test_pack_bits_every_bit_and_tail(k):
    w = convention.words_for_bits(k)
    for pos in range(k):
        x = np.ones((1, k), np.float32)
        x[0, pos] = -3.0
        want = np.zeros(w, np.uint64)
        want[pos // 64] = np.uint64(1) << np.uint64(pos % 64)
        np.testing.assert_array_equal(engine.pack_bits(x)[0], want, err_msg=f"k={k} pos={pos}")
    all_neg = engine.pack_bits(-np.ones((1, k), np.float32))[0]
    assert int(all_neg[-1]) == (1 << (k % 64 or 64)) - 1, "tail bits past k must be 0"


@pytest.mark.parametrize("kernel", SIGN_PACK_KERNELS)
@pytest.mark.parametrize("c", [1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 200])
def test_sign_pack_kernels_vs_numpy(kernel, c):
    """Folded BatchNorm + sign: every kernel equals numpy's float32 ``scale * x + shift < 0``.

    About a third of the values ``scale * x + shift`` are exact zeros (bit 0: sign(0) = +1)
    in full and partial words; rows of -0.0 and NaN (bit 0) and of tiny values of either sign.
    """
    seed = 7000 + c
    rng = np.random.default_rng(seed)
    pixels = 12
    scale = (rng.choice([-2.0, -0.5, 0.25, 1.0, 4.0], c) * rng.uniform(1, 1.5, c)).astype(np.float32)
    pow2 = rng.random(c) < 0.5
    scale[pow2] = np.float32(2.0) ** rng.integers(-3, 4, np.count_nonzero(pow2))
    shift = rng.standard_normal(c).astype(np.float32)
    x = rng.standard_normal((pixels, c)).astype(np.float32)
    # With scale a power of two, x = -shift / scale is exact and scale * x + shift == 0.
    zero = (rng.random((pixels, c)) < 0.66) & pow2
    x[zero] = np.broadcast_to(-shift / scale, (pixels, c))[zero]
    x[-3, :] = -0.0
    x[-2, :] = np.nan
    x[-1, :] = np.float32(1e-30) * rng.choice([-1.0, 1.0], c).astype(np.float32)
    v = scale * x + shift
    assert c < 16 or np.count_nonzero(v == 0) >= pixels * c // 5, "the test needs exact zeros"
    want = convention.pack_bits(np.where(v < 0, -1.0, 1.0).astype(np.float32))
    got = engine.sign_pack(x, scale, shift, kernel=kernel)
    assert got.dtype == np.uint64 and got.shape == (pixels, convention.words_for_bits(c))
    np.testing.assert_array_equal(got, want, err_msg=f"kernel={kernel} seed={seed}")


@pytest.mark.parametrize("kernel", LEVEL_PACK_KERNELS)
@pytest.mark.parametrize("planes", [1, 2, 3, 4])
@pytest.mark.parametrize("c", [1, 15, 16, 17, 63, 64, 65, 129])
def test_level_pack_kernels_vs_numpy(kernel, planes, c):
    """k-bit levels: every kernel equals numpy's round-half-up of float32
    ``clip(scale * x + shift, 0, 1) * n``, with many exact ties (scale 1, shift 0,
    x = (t + 1/2) / n for the n of every plane count), the clip borders, NaN and +-inf."""
    seed = 7100 + 8 * c + planes
    rng = np.random.default_rng(seed)
    pixels = 10
    scale = rng.uniform(0.5, 2.0, c).astype(np.float32)
    shift = rng.uniform(-0.5, 0.5, c).astype(np.float32)
    x = rng.uniform(-0.5, 1.5, (pixels, c)).astype(np.float32)
    ties = rng.random(c) < 0.5
    scale[ties], shift[ties] = 1.0, 0.0
    n_any = rng.choice([1, 3, 7, 15], (pixels, c))
    tie_x = ((rng.integers(0, 16, (pixels, c)) % n_any + 0.5) / n_any).astype(np.float32)
    x[:, ties] = tie_x[:, ties]
    x[-1, :] = np.nan
    x[-2, :] = np.float32(np.inf) * rng.choice([-1.0, 1.0], c).astype(np.float32)
    n = np.float32(2 ** planes - 1)
    v = scale * x + shift
    u = np.where(v > 0, np.minimum(v, np.float32(1)), np.float32(0)) * n  # NaN -> 0
    levels = convention.round_half_away(u).astype(np.int64)
    want = convention.pack_levels(levels, planes)
    got = engine.level_pack(x, scale, shift, planes, kernel=kernel)
    assert got.dtype == np.uint64 and got.shape == (pixels, planes, convention.words_for_bits(c))
    np.testing.assert_array_equal(got, want, err_msg=f"kernel={kernel} seed={seed}")


def test_level_pack_errors():
    x = np.zeros((2, 3), np.float32)
    s = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="unknown kernel 'nope'"):
        engine.level_pack(x, s, s, 2, kernel="nope")
    with pytest.raises(ValueError, match="planes must be in"):
        engine.level_pack(x, s, s, 5)
    with pytest.raises(ValueError, match="length 3"):
        engine.level_pack(x, s[:2], s, 2)


def test_sign_pack_errors():
    x = np.zeros((2, 3), np.float32)
    s = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="unknown kernel 'nope'"):
        engine.sign_pack(x, s, s, kernel="nope")
    with pytest.raises(ValueError, match="length 3"):
        engine.sign_pack(x, s[:2], s)
    with pytest.raises(ValueError, match="2-D"):
        engine.sign_pack(x[0], s, s)
    unavailable = [n for n, ok in engine.list_sign_pack_kernels() if not ok]
    if unavailable:
        with pytest.raises(ValueError, match="does not run on this CPU"):
            engine.sign_pack(x, s, s, kernel=unavailable[0])


def test_pack_bits_special_values():
    x = np.ones(64, np.float32)
    x[:8] = [-0.0, 0.0, np.nan, -np.nan, -1e-30, 1e-30, -np.inf, np.inf]
    # only -1e-30 (bit 4) and -inf (bit 6) are < 0; NaN and -0.0 give 0
    assert int(engine.pack_bits(x)[0]) == 0x50
    assert int(engine.pack_bits(x[:8])[0]) == 0x50


def test_pack_bits_int8_and_any_rank_and_axis():
    rng = np.random.default_rng(5)
    xi = rng.integers(-128, 128, size=(2, 3, 70), dtype=np.int8)
    np.testing.assert_array_equal(engine.pack_bits(xi), convention.pack_bits(xi))
    xf = rng.standard_normal((4, 130, 3, 2)).astype(np.float32)
    for axis in range(-4, 4):
        got = engine.pack_bits(xf, axis=axis)
        np.testing.assert_array_equal(got, convention.pack_bits(xf, axis=axis), err_msg=f"axis={axis}")
    np.testing.assert_array_equal(engine.pack_bits(xf[::2, ::3], axis=1), convention.pack_bits(xf[::2, ::3], axis=1))
    assert engine.pack_bits(np.ones(10, np.float32)).shape == (1,)


def test_pack_bits_threads_identical():
    x = np.random.default_rng(9).standard_normal((1000, 300)).astype(np.float32)
    ref = engine.pack_bits(x)
    for t in (2, 3):
        np.testing.assert_array_equal(engine.pack_bits(x, num_threads=t), ref)


@pytest.mark.parametrize("bad", [np.zeros(4, np.float64), np.zeros(4, np.int32), np.zeros(4, bool),
                                 np.array(1.0, np.float32), [1.0, -1.0]])
def test_pack_bits_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        engine.pack_bits(bad)
    with pytest.raises(ValueError):
        engine.pack_bits(np.zeros((2, 3), np.float32), axis=2)


# ---------------------------------------------------------------------------------------
# binary_gemm

def test_kernel_list():
    names = [n for n, _ in engine.list_kernels()]
    assert names[0] == "bgemm_1x1__reference"
    assert "bgemm_4x4__scalar" in names
    assert engine.auto_kernel() in KERNELS


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("k", K_VALUES)
def test_binary_gemm_bit_exact(kernel, k):
    seed = 1000 + k
    rng = np.random.default_rng(seed)
    for m in MN_VALUES:
        for n in MN_VALUES:
            a, b = pm1(rng, (m, k)), pm1(rng, (n, k))
            want = (a.astype(np.float64) @ b.T.astype(np.float64)).astype(np.int32)
            got = engine.binary_gemm(engine.pack_bits(a), engine.pack_bits(b), k, kernel=kernel)
            assert got.dtype == np.int32 and got.shape == (m, n)
            np.testing.assert_array_equal(got, want, err_msg=f"{kernel} M={m} N={n} K={k} seed={seed}")


def test_binary_gemm_matches_convention_xnor_dot():
    rng = np.random.default_rng(77)
    k = 300
    a, b = pm1(rng, (6, k)), pm1(rng, (4, k))
    ab, bb = convention.pack_bits(a), convention.pack_bits(b)
    want = convention.xnor_dot(ab[:, None, :], bb[None, :, :], k)
    np.testing.assert_array_equal(engine.binary_gemm(ab, bb, k), want)
    # BMXNet's offset form (dot + K) / 2 = match count
    np.testing.assert_array_equal((engine.binary_gemm(ab, bb, k) + k) // 2,
                                  convention.match_count(ab[:, None, :], bb[None, :, :], k))


@pytest.mark.parametrize("kernel", KERNELS)
def test_binary_gemm_threads_identical(kernel):
    rng = np.random.default_rng(3)
    for m, n, k in [(64, 49, 2304), (5, 301, 129), (130, 3, 65), (64, 196, 1728)]:
        a, b = engine.pack_bits(pm1(rng, (m, k))), engine.pack_bits(pm1(rng, (n, k)))
        one = engine.binary_gemm(a, b, k, num_threads=1, kernel=kernel)
        for t in (2, 3):
            np.testing.assert_array_equal(engine.binary_gemm(a, b, k, num_threads=t, kernel=kernel), one,
                                          err_msg=f"{kernel} threads={t} M={m} N={n} K={k}")


def test_binary_gemm_non_contiguous_inputs():
    rng = np.random.default_rng(4)
    a = engine.pack_bits(pm1(rng, (20, 128)))
    b = engine.pack_bits(pm1(rng, (9, 128)))
    want = engine.binary_gemm(np.ascontiguousarray(a[::2]), b, 128)
    np.testing.assert_array_equal(engine.binary_gemm(a[::2], b, 128), want)


def test_binary_gemm_errors():
    a = np.zeros((3, 2), np.uint64)
    b = np.zeros((4, 2), np.uint64)
    with pytest.raises(ValueError, match="uint64"):
        engine.binary_gemm(a.astype(np.int64), b, 128)
    with pytest.raises(ValueError, match="words"):
        engine.binary_gemm(a, b, 64)
    with pytest.raises(ValueError, match="words"):
        engine.binary_gemm(a, np.zeros((4, 3), np.uint64), 128)
    with pytest.raises(ValueError, match="2-D"):
        engine.binary_gemm(a.reshape(-1), b, 128)
    with pytest.raises(ValueError, match="unknown bgemm kernel"):
        engine.binary_gemm(a, b, 128, kernel="bgemm_9x9__nope")
    with pytest.raises(ValueError):
        engine.binary_gemm(a, b, -1)
    with pytest.raises(ValueError):
        engine.binary_gemm(a, b, 128, num_threads=0)
    with pytest.raises(ValueError):
        engine.binary_gemm(a, b, 128.0)
    with pytest.raises(ValueError):
        engine.binary_gemm(a.tolist(), b, 128)
    bad_tail = np.zeros((3, 2), np.uint64)
    bad_tail[1, 1] = np.uint64(1) << np.uint64(40)  # bit 104 of a k = 100 row
    with pytest.raises(ValueError, match="tail"):
        engine.binary_gemm(bad_tail, b, 100)
    unavailable = [n for n, ok in engine.list_kernels() if not ok]
    for name in unavailable:
        with pytest.raises(ValueError, match="not available"):
            engine.binary_gemm(a, b, 128, kernel=name)


def test_binary_gemm_empty():
    z = engine.binary_gemm(np.zeros((0, 1), np.uint64), np.zeros((3, 1), np.uint64), 10)
    assert z.shape == (0, 3)


@pytest.mark.skipif(not any(n.endswith("__avx2") for n, ok in engine.list_kernels() if ok),
                    reason="needs a CPU with AVX2")
def test_disable_simd_env_masks_features():
    code = ("import bmx.engine as e; print(e.auto_kernel()); "
            "print([n for n, ok in e.list_kernels() if ok])")
    env = dict(os.environ, BMX_DISABLE_SIMD="avx512,avx2")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == "bgemm_4x4__popcnt"
    assert "avx" not in out.splitlines()[1]
    env["BMX_DISABLE_SIMD"] = "avx512,avx2,popcnt"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == "bgemm_4x4__scalar"
    assert "avx" not in out.splitlines()[1] and "popcnt" not in out.splitlines()[1]


@pytest.mark.parametrize("mask", ["avx3", "avx2,sse9", "AVX2"])
def test_disable_simd_typo_is_reported(mask):
    """A name BMX_DISABLE_SIMD does not know fails the import with the valid names (a typo
    must not silently keep a feature on)."""
    run = subprocess.run([sys.executable, "-c", "import bmx.engine"], capture_output=True,
                         text=True, env=dict(os.environ, BMX_DISABLE_SIMD=mask))
    assert run.returncode != 0
    bad = [t for t in mask.split(",") if t not in ("avx512", "avx2", "popcnt", "neon")][0]
    assert f"unknown feature '{bad}'" in run.stderr
    assert "avx512, avx2, popcnt, neon" in run.stderr


def test_disable_simd_accepts_spaces_and_empty_items():
    code = "import bmx.engine as e; print(e.cpu_features())"
    env = dict(os.environ, BMX_DISABLE_SIMD=" avx512 ,, avx2 ,")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert "avx" not in out


# ---------------------------------------------------------------------------------------
# binary_conv2d

def conv_oracle(x, w, stride, pad, dilation):
    """Float convolution of +-1 NHWC data with -1 padding (numpy)."""
    n, h, wd, c = x.shape
    co, kh, kw, _ = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=-1.0)
    oh = (h + 2 * pad - dilation * (kh - 1) - 1) // stride + 1
    ow = (wd + 2 * pad - dilation * (kw - 1) - 1) // stride + 1
    out = np.zeros((n, oh, ow, co))
    for ky in range(kh):
        for kx in range(kw):
            sl = xp[:, ky * dilation: ky * dilation + stride * (oh - 1) + 1: stride,
                    kx * dilation: kx * dilation + stride * (ow - 1) + 1: stride, :]
            out += sl @ w[:, ky, kx, :].astype(np.float64).T
    return out.astype(np.int32)


CONV_CASES = [  # (c_in, c_out, h, w, k, stride, pad, dilation)
    (1, 3, 6, 5, 3, 1, 1, 1),
    (63, 5, 7, 7, 3, 2, 1, 1),
    (64, 7, 8, 6, 3, 1, 2, 2),
    (65, 4, 9, 9, 3, 2, 2, 2),
    (130, 9, 5, 5, 3, 1, 1, 1),
    (130, 3, 6, 7, 3, 2, 1, 2),
    (70, 6, 4, 4, 1, 1, 0, 1),
    (33, 17, 9, 7, 2, 2, 0, 1),
]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "cin{}_cout{}_{}x{}_k{}_s{}_p{}_d{}".format(*c))
def test_binary_conv2d_vs_numpy(kernel, case):
    c_in, c_out, h, w, k, stride, pad, dil = case
    seed = c_in * 100 + c_out
    rng = np.random.default_rng(seed)
    x = pm1(rng, (2, h, w, c_in))
    wt = pm1(rng, (c_out, k, k, c_in))
    want = conv_oracle(x, wt, stride, pad, dil)
    got = engine.binary_conv2d(x, wt, stride=stride, padding=pad, dilation=dil, kernel=kernel)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want, err_msg=f"{kernel} {case} seed={seed}")
    # packed input and packed weights give the same result
    got_p = engine.binary_conv2d(engine.pack_bits(x), engine.pack_bits(wt), stride=stride, padding=pad,
                                 dilation=dil, in_channels=c_in, kernel=kernel)
    np.testing.assert_array_equal(got_p, want)


def test_binary_conv2d_int8_tuple_args_and_threads():
    rng = np.random.default_rng(8)
    x = pm1(rng, (1, 14, 14, 192))
    wt = pm1(rng, (64, 3, 3, 192))
    want = conv_oracle(x, wt, 1, 1, 1)
    np.testing.assert_array_equal(engine.binary_conv2d(x.astype(np.int8), wt.astype(np.int8), padding=(1, 1)), want)
    for t in (1, 2, 3):
        np.testing.assert_array_equal(engine.binary_conv2d(x, engine.pack_bits(wt), padding=1, num_threads=t), want,
                                      err_msg=f"threads={t}")


def test_binary_conv2d_errors():
    x = np.ones((1, 5, 5, 8), np.float32)
    w = np.ones((4, 3, 3, 8), np.float32)
    with pytest.raises(ValueError, match="4-D"):
        engine.binary_conv2d(x[0], w)
    with pytest.raises(ValueError, match="C_in"):
        engine.binary_conv2d(x, np.ones((4, 3, 3, 9), np.float32))
    with pytest.raises(ValueError, match="dtype"):
        engine.binary_conv2d(x.astype(np.float64), w)
    with pytest.raises(ValueError, match="in_channels"):
        engine.binary_conv2d(engine.pack_bits(x), engine.pack_bits(w))
    with pytest.raises(ValueError, match="words"):
        engine.binary_conv2d(engine.pack_bits(x), np.zeros((4, 3, 3, 2), np.uint64), in_channels=8)
    with pytest.raises(ValueError, match="larger"):
        engine.binary_conv2d(x, np.ones((4, 7, 7, 8), np.float32))
    with pytest.raises(ValueError):
        engine.binary_conv2d(x, w, stride=0)
    with pytest.raises(ValueError):
        engine.binary_conv2d(x, w, padding=(1, 2, 3))
    with pytest.raises(ValueError, match="kernel"):
        engine.binary_conv2d(x, w, kernel="nope")


# ---------------------------------------------------------------------------------------
# timing in C++ (bmx-bench): the same validation as the calls, real samples, no results

def test_time_binary_gemm_and_conv2d_samples_and_validation():
    rng = np.random.default_rng(5)
    a = engine.pack_bits(pm1(rng, (16, 130)))
    b = engine.pack_bits(pm1(rng, (9, 130)))
    for threads in (1, 2):
        s = engine.time_binary_gemm(a, b, 130, num_threads=threads, min_seconds=0.0, repeat=3, warmup=0.0)
        assert len(s) == 3 and all(t > 0 for t in s)
    x = pm1(rng, (1, 5, 6, 70))
    w = engine.pack_bits(pm1(rng, (8, 3, 3, 70)))
    s = engine.time_binary_conv2d(x, w, padding=1, in_channels=70, num_threads=2, min_seconds=0.0, repeat=2,
                                  warmup=0.0)
    assert len(s) == 2 and all(t > 0 for t in s)
    # the validation of binary_gemm / binary_conv2d, plus the timing arguments
    with pytest.raises(ValueError, match="words"):
        engine.time_binary_gemm(a, b, 64)
    with pytest.raises(ValueError, match="uint64"):
        engine.time_binary_gemm(a.astype(np.int64), b, 130)
    with pytest.raises(ValueError, match="repeat"):
        engine.time_binary_gemm(a, b, 130, repeat=0)
    with pytest.raises(ValueError, match="min_seconds"):
        engine.time_binary_gemm(a, b, 130, min_seconds=-1.0)
    with pytest.raises(ValueError, match="warmup"):
        engine.time_binary_conv2d(x, w, padding=1, in_channels=70, warmup=float("nan"))
    with pytest.raises(ValueError, match="in_channels disagrees"):
        engine.time_binary_conv2d(x, w, padding=1, in_channels=71)
    from bmx import _engine
    d = _engine.time_fork_join(1.0, min_seconds=0.0, repeat=2, warmup=0.0)
    assert sorted(d) == ["bare", "inline", "pool"] and all(len(v) == 2 and min(v) > 0 for v in d.values())
    with pytest.raises(ValueError, match="work_us"):
        _engine.time_fork_join(-1.0)


# ---------------------------------------------------------------------------------------
# pack_filters: filters arranged once give the same results as plain weights

@pytest.mark.parametrize("kernel", KERNELS)
def test_pack_filters_matches_plain_weights(kernel):
    rng = np.random.default_rng(11)
    for (n, h, w, c_in, c_out, stride, pad, dil) in [(1, 7, 7, 256, 64, 1, 1, 1), (2, 6, 5, 65, 17, 2, 1, 2),
                                                      (1, 4, 4, 3, 5, 1, 0, 1)]:
        x = pm1(rng, (n, h, w, c_in))
        wf = pm1(rng, (c_out, 3, 3, c_in))
        want = conv_oracle(x, wf, stride, pad, dil)
        for weights, ic in ((wf, None), (engine.pack_bits(wf), c_in)):
            pf = engine.pack_filters(weights, in_channels=ic, kernel=kernel)
            assert pf.shape == (c_out, 3, 3, c_in) and pf.in_channels == c_in
            assert pf.kernel == (engine.auto_kernel() if kernel == "auto" else kernel)
            np.testing.assert_array_equal(pf.words, engine.pack_bits(wf))
            for threads in (1, 2):
                for xin in (x, engine.pack_bits(x), x.astype(np.int8)):
                    got = engine.binary_conv2d(xin, pf, stride=stride, padding=pad, dilation=dil,
                                               num_threads=threads)
                    np.testing.assert_array_equal(got, want, err_msg=f"{kernel} threads={threads} C_in={c_in}")
            s = engine.time_binary_conv2d(x, pf, stride=stride, padding=pad, dilation=dil, repeat=1,
                                          min_seconds=0.0, warmup=0.0)
            assert len(s) == 1 and s[0] > 0


def test_pack_filters_errors():
    w = np.ones((4, 3, 3, 70), np.float32)
    with pytest.raises(ValueError, match="4-D"):
        engine.pack_filters(w[0])
    with pytest.raises(ValueError, match="dtype"):
        engine.pack_filters(w.astype(np.float64))
    with pytest.raises(ValueError, match="in_channels"):
        engine.pack_filters(engine.pack_bits(w))
    with pytest.raises(ValueError, match="words per tap"):
        engine.pack_filters(engine.pack_bits(w), in_channels=200)
    with pytest.raises(ValueError, match="disagrees"):
        engine.pack_filters(w, in_channels=69)
    with pytest.raises(ValueError, match="numpy array"):
        engine.pack_filters(w.tolist())
    with pytest.raises(ValueError, match="unknown bgemm kernel"):
        engine.pack_filters(w, kernel="bgemm_9x9__nope")
    pf = engine.pack_filters(w)
    x = np.ones((1, 5, 5, 70), np.float32)
    with pytest.raises(ValueError, match="packed for kernel"):
        other = [n for n, ok in engine.list_kernels() if ok and n != pf.kernel][0]
        engine.binary_conv2d(x, pf, kernel=other)
    with pytest.raises(ValueError, match="disagrees"):
        engine.binary_conv2d(x, pf, in_channels=71)
    with pytest.raises(ValueError, match="C_in|disagrees|channels"):
        engine.binary_conv2d(np.ones((1, 5, 5, 71), np.float32), pf)
    assert "PackedFilters(shape=(4, 3, 3, 70)" in repr(pf)


def test_kernel_outputs_are_aligned_owned_arrays():
    # int32 outputs come 64-byte aligned (threads' split points then fall on cache-line
    # boundaries), as ordinary writable C-contiguous arrays that own their memory: the
    # values survive the inputs, many allocations and a garbage collection.
    import gc

    rng = np.random.default_rng(7)
    outs = []
    for m, n, w in [(1, 1, 1), (3, 5, 2), (64, 49, 36), (17, 33, 3)]:
        a = rng.integers(0, 2**63, (m, w), dtype=np.uint64)
        b = rng.integers(0, 2**63, (n, w), dtype=np.uint64)
        c = engine.binary_gemm(a, b, 64 * w, num_threads=2)
        outs.append((c, c.copy()))
    x = rng.standard_normal((1, 7, 7, 70)).astype(np.float32)
    wt = rng.standard_normal((16, 3, 3, 70)).astype(np.float32)
    y = engine.binary_conv2d(x, wt, padding=1, num_threads=2)
    outs.append((y, y.copy()))
    del a, b, x, wt
    gc.collect()
    for got, ref in outs:
        assert got.ctypes.data % 64 == 0
        assert got.dtype == np.int32 and got.flags["C_CONTIGUOUS"] and got.flags["WRITEABLE"]
        np.testing.assert_array_equal(got, ref)
    outs[0][0][...] = 5
    assert (outs[0][0] == 5).all()


# ---------------------------------------------------------------------------------------
# kbit_gemm (k-bit bit-plane GEMM)

KBIT_KERNELS = [name for name, ok in engine.list_kbit_kernels() if ok]


def kbit_planes(u, planes):
    """Bit planes of unsigned integers ``u`` (rows, k): (rows, planes, words) uint64, packed
    by the convention's reference packer (bit 1 iff value < 0, so bit b -> -1.0 if b)."""
    bits = (u[:, None, :] >> np.arange(planes)[None, :, None]) & 1
    return convention.pack_bits(np.where(bits == 1, -1.0, 1.0).astype(np.float32))


def test_kbit_kernel_list():
    kernels = engine.list_kbit_kernels()
    assert kernels[0] == ("kbgemm_1x1__reference", True)
    assert ("kbgemm_2x4__scalar", True) in kernels
    assert len({n for n, _ in kernels}) == len(kernels)


@pytest.mark.parametrize("kernel", KBIT_KERNELS)
@pytest.mark.parametrize("k", K_VALUES)
def test_kbit_gemm_vs_integer_oracle(kernel, k):
    """Every (pa, pb) in 1..4 x 1..4 against U_a @ U_b.T in int64; M and N cycle through
    MN_VALUES so that every size meets every k."""
    seed = 5000 + k
    rng = np.random.default_rng(seed)
    for pa in range(1, 5):
        for pb in range(1, 5):
            m, n = MN_VALUES[(pa + 2 * pb) % 5], MN_VALUES[(3 * pa + pb) % 5]
            ua = rng.integers(0, 2**pa, (m, k), dtype=np.int64)
            ub = rng.integers(0, 2**pb, (n, k), dtype=np.int64)
            ua[0, 0], ub[0, 0] = 2**pa - 1, 2**pb - 1
            got = engine.kbit_gemm(kbit_planes(ua, pa), kbit_planes(ub, pb), kernel=kernel, k=k)
            assert got.dtype == np.int32 and got.shape == (m, n)
            np.testing.assert_array_equal(got, ua @ ub.T,
                                          err_msg=f"{kernel} M={m} N={n} k={k} pa={pa} pb={pb} seed={seed}")


@pytest.mark.parametrize("kernel", KBIT_KERNELS)
def test_kbit_gemm_random_planes_via_unpack(kernel):
    # Arbitrary plane words (tails cleared) read back by convention.unpack_bits.
    rng = np.random.default_rng(21)
    for m, n, k, pa, pb in [(7, 17, 129, 3, 2), (33, 3, 65, 4, 4), (1, 1, 63, 1, 4), (17, 33, 4608, 2, 1)]:
        w = convention.words_for_bits(k)
        a = rng.integers(0, 2**63, (m, pa, w), dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, (m, pa, w),
                                                                                              dtype=np.uint64)
        b = rng.integers(0, 2**63, (n, pb, w), dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, (n, pb, w),
                                                                                              dtype=np.uint64)
        tail = np.uint64((1 << (k % 64)) - 1) if k % 64 else np.uint64(2**64 - 1)
        a[..., -1] &= tail
        b[..., -1] &= tail

        def values(p, planes):
            bits = (convention.unpack_bits(p, k) < 0).astype(np.int64)  # (rows, planes, k)
            return (bits << np.arange(planes)[None, :, None]).sum(axis=1)

        want = values(a, pa) @ values(b, pb).T
        np.testing.assert_array_equal(engine.kbit_gemm(a, b, kernel=kernel, k=k), want,
                                      err_msg=f"{kernel} M={m} N={n} k={k} pa={pa} pb={pb} seed=21")
        np.testing.assert_array_equal(engine.kbit_gemm(a, b, kernel=kernel), want)  # k is optional


@pytest.mark.parametrize("kernel", KBIT_KERNELS)
def test_kbit_gemm_threads_identical(kernel):
    rng = np.random.default_rng(9)
    for m, n, k, pa, pb in [(64, 49, 2304, 2, 3), (5, 301, 129, 4, 4), (130, 3, 65, 1, 2)]:
        a = kbit_planes(rng.integers(0, 2**pa, (m, k)), pa)
        b = kbit_planes(rng.integers(0, 2**pb, (n, k)), pb)
        one = engine.kbit_gemm(a, b, kernel=kernel, num_threads=1)
        for t in (2, 3):
            np.testing.assert_array_equal(engine.kbit_gemm(a, b, kernel=kernel, num_threads=t), one,
                                          err_msg=f"{kernel} threads={t} M={m} N={n} k={k} pa={pa} pb={pb}")


def has_packed_form(kernel):
    try:
        engine.kbit_gemm(np.zeros((1, 1, 1), np.uint64), np.zeros((1, 1, 1), np.uint64), kernel=kernel, packed=True)
        return True
    except ValueError as e:
        assert "no packed form" in str(e)
        return False


@pytest.mark.parametrize("kernel", KBIT_KERNELS)
def test_kbit_gemm_packed_b(kernel):
    """packed=True (B through kbgemm_pack_b / kbgemm_packed) against the integer oracle, on
    1 and 3 threads, at awkward sizes and every plane count; kernels without a packed form
    refuse it."""
    if not has_packed_form(kernel):
        with pytest.raises(ValueError, match="no packed form"):
            engine.kbit_gemm(np.zeros((2, 2, 3), np.uint64), np.zeros((2, 2, 3), np.uint64), kernel=kernel,
                             packed=True)
        return
    rng = np.random.default_rng(23)
    for m, n, k, pa, pb in [(1, 1, 1, 1, 1), (7, 17, 129, 3, 2), (33, 3, 65, 4, 4), (65, 64, 576, 2, 2),
                            (6, 49, 4608, 2, 1), (129, 15, 63, 1, 3), (9, 33, 127, 4, 2)]:
        ua = rng.integers(0, 2**pa, (m, k), dtype=np.int64)
        ub = rng.integers(0, 2**pb, (n, k), dtype=np.int64)
        a, b = kbit_planes(ua, pa), kbit_planes(ub, pb)
        for t in (1, 3):
            np.testing.assert_array_equal(engine.kbit_gemm(a, b, kernel=kernel, num_threads=t, k=k, packed=True),
                                          ua @ ub.T, err_msg=f"{kernel} packed M={m} N={n} k={k} pa={pa} pb={pb} "
                                                             f"threads={t} seed=23")
    z = engine.kbit_gemm(np.zeros((2, 1, 0), np.uint64), np.zeros((3, 4, 0), np.uint64), kernel=kernel, packed=True)
    assert z.shape == (2, 3) and not z.any()


def test_kbit_gemm_non_contiguous_and_empty():
    rng = np.random.default_rng(4)
    a = kbit_planes(rng.integers(0, 4, (20, 128)), 2)
    b = kbit_planes(rng.integers(0, 8, (9, 128)), 3)
    np.testing.assert_array_equal(engine.kbit_gemm(a[::2], b), engine.kbit_gemm(np.ascontiguousarray(a[::2]), b))
    assert engine.kbit_gemm(a[:0], b).shape == (0, 9)
    z = engine.kbit_gemm(np.zeros((2, 1, 0), np.uint64), np.zeros((3, 4, 0), np.uint64), k=0)
    assert z.shape == (2, 3) and not z.any()


def test_kbit_gemm_errors():
    a = np.zeros((3, 2, 2), np.uint64)
    b = np.zeros((4, 3, 2), np.uint64)
    with pytest.raises(ValueError, match="uint64"):
        engine.kbit_gemm(a.astype(np.int64), b)
    with pytest.raises(ValueError, match="3-D"):
        engine.kbit_gemm(a[:, 0], b)
    with pytest.raises(ValueError, match="same number of words"):
        engine.kbit_gemm(a, np.zeros((4, 3, 3), np.uint64))
    for planes in (0, 5):
        with pytest.raises(ValueError, match="bit planes"):
            engine.kbit_gemm(np.zeros((3, planes, 2), np.uint64), b)
        with pytest.raises(ValueError, match="bit planes"):
            engine.kbit_gemm(a, np.zeros((4, planes, 2), np.uint64))
    with pytest.raises(ValueError, match="words per plane"):
        engine.kbit_gemm(a, b, k=64)
    with pytest.raises(ValueError, match="k must be in"):
        engine.kbit_gemm(a, b, k=-1)
    with pytest.raises(ValueError):
        engine.kbit_gemm(a, b, k=128.0)
    bad_tail = a.copy()
    bad_tail[2, 1, 1] = np.uint64(1) << np.uint64(40)  # element 104 of a k = 100 row
    with pytest.raises(ValueError, match="row 2, plane 1 .*tail"):
        engine.kbit_gemm(bad_tail, b, k=100)
    engine.kbit_gemm(bad_tail, b, k=128)  # within k: fine
    with pytest.raises(ValueError, match="unknown kbgemm kernel .*kbgemm_1x1__reference"):
        engine.kbit_gemm(a, b, kernel="kbgemm_9x9__nope")
    with pytest.raises(ValueError, match="unknown kbgemm kernel"):
        engine.kbit_gemm(a, b, kernel="bgemm_1x1__reference")
    for name in [n for n, ok in engine.list_kbit_kernels() if not ok]:
        with pytest.raises(ValueError, match="not available"):
            engine.kbit_gemm(a, b, kernel=name)
    with pytest.raises(ValueError):
        engine.kbit_gemm(a, b, num_threads=0)
    with pytest.raises(ValueError):
        engine.kbit_gemm(a.tolist(), b)
    # 149131 words of 4 x 4 planes: 225 * 64 * 149131 > 2**31 - 1 could wrap int32.
    big = np.zeros((1, 4, 149131), np.uint64)
    with pytest.raises(ValueError, match="overflow int32"):
        engine.kbit_gemm(big, big)
    assert engine.kbit_gemm(big[..., 1:], big[..., 1:])[0, 0] == 0  # 149130 words: fits
