"""The one bit convention: Python mirror vs the C++ header's reference packing."""
import numpy as np
import pytest

import bmx._engine as _engine
from bmx import convention as cv


def test_sign_of_zero_is_plus_one():
    x = np.array([-2.0, -1e-30, -0.0, 0.0, 1e-30, 3.0, np.nan], dtype=np.float32)
    np.testing.assert_array_equal(cv.sign(x), [-1, -1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(cv.to_bits(x), [1, 1, 0, 0, 0, 0, 0])


@pytest.mark.parametrize("k", [1, 63, 64, 65, 127, 128, 129, 200])
def test_pack_matches_cpp_reference_bit_by_bit(k):
    rng = np.random.default_rng(k)
    x = rng.standard_normal((5, k)).astype(np.float32)
    x[0, : min(k, 3)] = 0.0  # zeros pack as +1 -> bit 0
    words = cv.pack_bits(x)
    assert words.dtype == np.uint64 and words.shape == (5, cv.words_for_bits(k))
    np.testing.assert_array_equal(words, _engine.pack_rows_reference(x))
    for r in range(5):
        for i in range(k):
            bit = (int(words[r, i // 64]) >> (i % 64)) & 1
            assert bit == int(x[r, i] < 0), (r, i)
    tail = k % 64
    if tail:
        assert (words[:, -1] >> np.uint64(tail)).max() == 0, "tail bits must be 0"
    np.testing.assert_array_equal(cv.unpack_bits(words, k), cv.sign(x))


def test_pack_along_axis():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 70, 3)).astype(np.float32)
    words = cv.pack_bits(x, axis=1)
    assert words.shape == (2, 3, 2)
    np.testing.assert_array_equal(words, cv.pack_bits(np.moveaxis(x, 1, -1)))


@pytest.mark.parametrize("k", [1, 63, 64, 65, 127, 128, 129])
def test_xnor_dot_equals_float_dot(k):
    rng = np.random.default_rng(100 + k)
    a = cv.sign(rng.standard_normal((4, k)))
    b = cv.sign(rng.standard_normal((4, k)))
    dot = (a * b).sum(-1)
    pa, pb = cv.pack_bits(a), cv.pack_bits(b)
    np.testing.assert_array_equal(cv.xnor_dot(pa, pb, k), dot)
    np.testing.assert_array_equal(cv.match_count(pa, pb, k), (dot + k) // 2)


def test_engine_module_is_real():
    import bmx
    assert _engine.__version__ == bmx.__version__
    assert _engine.WORD_BITS == cv.WORD_BITS == 64
    # the features the dispatcher sees, and the kernels it offers, say the same thing
    feats = set(_engine.cpu_features().split(","))
    assert feats and feats <= {"portable", "popcnt", "avx2", "avx512f", "avx512_vpopcntdq", "neon"}, feats
    import bmx.engine
    avail = dict(bmx.engine.list_kernels())
    assert avail["bgemm_1x1__reference"] and avail["bgemm_4x4__scalar"]
    for name, ok in avail.items():
        if name.endswith("__avx2"):
            assert ok == ("avx2" in feats), (name, feats)
        if name.endswith("__avx512"):
            assert ok == ("avx512_vpopcntdq" in feats), (name, feats)
        if name.endswith("__popcnt"):
            assert ok == ("popcnt" in feats), (name, feats)
