// Fused BatchNorm + sign + bit-packing with AVX-512: 16 channels per compare, whose mask
// register is the 16 bits directly (bit = 1 iff scale*x + shift < 0, NaN -> 0;
// bmx/convention.h); a full word is four compares, a partial last word uses masked loads.
// Multiply and add with explicit rounding (never contracted into an FMA), so the result
// equals sign_pack__scalar bit for bit.
#include <immintrin.h>

#include <algorithm>

#include "core/signpack/kernels.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 AVX-512 header false positive
#endif

namespace bmx::kernels {

namespace {
constexpr int kRound = _MM_FROUND_CUR_DIRECTION;

inline std::uint64_t bits16(const float* scale, const float* x, const float* shift) {
  const __m512 v = _mm512_add_round_ps(_mm512_mul_round_ps(_mm512_loadu_ps(scale), _mm512_loadu_ps(x), kRound),
                                       _mm512_loadu_ps(shift), kRound);
  return _cvtmask16_u32(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ));
}
}  // namespace

void sign_pack__avx512(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps,
                      const float* scale, const float* shift, word_t* out) {
  const std::int64_t words = words_for_bits(c);
  const std::int64_t full = c / kWordBits;
  const __m512 zero = _mm512_setzero_ps();
  for (std::int64_t p = 0; p < pixels; ++p) {
    const float* x = in + p * in_ps;
    word_t* o = out + p * words;
    for (std::int64_t j = 0; j < full; ++j) {
      const std::int64_t ch = j * kWordBits;
      o[j] = bits16(scale + ch, x + ch, shift + ch) | bits16(scale + ch + 16, x + ch + 16, shift + ch + 16) << 16 |
             bits16(scale + ch + 32, x + ch + 32, shift + ch + 32) << 32 |
             bits16(scale + ch + 48, x + ch + 48, shift + ch + 48) << 48;
    }
    if (full < words) {
      const std::int64_t c0 = full * kWordBits;
      word_t w = 0;
      for (std::int64_t ch = c0; ch < c; ch += 16) {
        const std::int64_t n = std::min<std::int64_t>(16, c - ch);
        const __mmask16 m = static_cast<__mmask16>(n == 16 ? 0xffff : (1u << n) - 1);
        const __m512 v = _mm512_add_round_ps(
            _mm512_mul_round_ps(_mm512_maskz_loadu_ps(m, scale + ch), _mm512_maskz_loadu_ps(m, x + ch), kRound),
            _mm512_maskz_loadu_ps(m, shift + ch), kRound);
        const __mmask16 bits = _mm512_mask_cmp_ps_mask(m, v, zero, _CMP_LT_OQ);
        w |= static_cast<word_t>(_cvtmask16_u32(bits)) << (ch - c0);
      }
      o[full] = w;
    }
  }
}

// k-bit levels (signpack.cc level_pack__scalar: thresholds t - 0.5 of u = v * n): 16
// channels per compare, the mask register holding their bits; masked loads for the tail.
void level_pack__avx512(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps, const float* scale,
                        const float* shift, int planes, word_t* out) {
  const std::int64_t words = words_for_bits(c);
  const int n = (1 << planes) - 1;
  const __m512 nv = _mm512_set1_ps(static_cast<float>(n));
  for (std::int64_t p = 0; p < pixels; ++p) {
    const float* x = in + p * in_ps;
    for (std::int64_t j = 0; j < words; ++j) {
      word_t masks[16] = {};
      for (int q = 0; q < 4; ++q) {
        const std::int64_t ch = j * kWordBits + 16 * q;
        if (ch >= c) break;
        const __mmask16 live = static_cast<__mmask16>(c - ch >= 16 ? 0xffff : (1u << (c - ch)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(live, x + ch);
        if (scale) {
          v = _mm512_add_round_ps(_mm512_mul_round_ps(_mm512_maskz_loadu_ps(live, scale + ch), v, kRound),
                                  _mm512_maskz_loadu_ps(live, shift + ch), kRound);
        }
        const __m512 u = _mm512_mul_round_ps(v, nv, kRound);
        for (int t = 1; t <= n; ++t) {
          const __mmask16 m = _mm512_mask_cmp_ps_mask(live, u, _mm512_set1_ps(t - 0.5f), _CMP_GE_OQ);
          masks[t] |= static_cast<word_t>(_cvtmask16_u32(m)) << (16 * q);
        }
      }
      level_planes(masks, planes, words, out + p * planes * words + j);
    }
  }
}

}  // namespace bmx::kernels
