// Fused BatchNorm + sign + bit-packing with AVX2: 8 channels per compare, movemask gives
// their 8 bits directly (bit = 1 iff scale*x + shift < 0, NaN -> 0; bmx/convention.h).
// Separate multiply and add (no FMA) so the result equals sign_pack__scalar bit for bit.
#include <immintrin.h>

#include <algorithm>

#include "core/signpack/kernels.h"

// The file is compiled with -mfma: without this GCC contracts the multiply and add below
// into an FMA (one rounding), and a value exactly at a BatchNorm threshold then packs
// differently from sign_pack__scalar.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace bmx::kernels {

void sign_pack__avx2(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps,
                    const float* scale, const float* shift, word_t* out) {
  const std::int64_t words = words_for_bits(c);
  const __m256 zero = _mm256_setzero_ps();
  for (std::int64_t p = 0; p < pixels; ++p) {
    const float* x = in + p * in_ps;
    word_t* o = out + p * words;
    for (std::int64_t j = 0; j < words; ++j) {
      const std::int64_t c0 = j * kWordBits, c1 = std::min(c, c0 + kWordBits);
      word_t w = 0;
      std::int64_t ch = c0;
      for (; ch + 8 <= c1; ch += 8) {
        const __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(scale + ch), _mm256_loadu_ps(x + ch)),
                                       _mm256_loadu_ps(shift + ch));
        const int bits = _mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ));
        w |= static_cast<word_t>(static_cast<unsigned>(bits)) << (ch - c0);
      }
      for (; ch < c1; ++ch) {
        const float v = scale[ch] * x[ch] + shift[ch];
        w |= static_cast<word_t>(v < 0.0f) << (ch - c0);
      }
      o[j] = w;
    }
  }
}

// k-bit levels (signpack.cc level_pack__scalar: thresholds t - 0.5 of u = v * n): 8 channels
// per compare, one movemask per threshold.
void level_pack__avx2(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps, const float* scale,
                      const float* shift, int planes, word_t* out) {
  const std::int64_t words = words_for_bits(c);
  const int n = (1 << planes) - 1;
  const __m256 nv = _mm256_set1_ps(static_cast<float>(n));
  for (std::int64_t p = 0; p < pixels; ++p) {
    const float* x = in + p * in_ps;
    for (std::int64_t j = 0; j < words; ++j) {
      const std::int64_t c0 = j * kWordBits, c1 = std::min(c, c0 + kWordBits);
      word_t masks[16] = {};
      std::int64_t ch = c0;
      for (; ch + 8 <= c1; ch += 8) {
        __m256 v = _mm256_loadu_ps(x + ch);
        if (scale) v = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(scale + ch), v), _mm256_loadu_ps(shift + ch));
        const __m256 u = _mm256_mul_ps(v, nv);
        for (int t = 1; t <= n; ++t) {
          const int bits = _mm256_movemask_ps(_mm256_cmp_ps(u, _mm256_set1_ps(t - 0.5f), _CMP_GE_OQ));
          masks[t] |= static_cast<word_t>(static_cast<unsigned>(bits)) << (ch - c0);
        }
      }
      for (; ch < c1; ++ch) {
        const float u = (scale ? scale[ch] * x[ch] + shift[ch] : x[ch]) * static_cast<float>(n);
        for (int t = 1; t <= n; ++t) masks[t] |= static_cast<word_t>(u >= t - 0.5f) << (ch - c0);
      }
      level_planes(masks, planes, words, out + p * planes * words + j);
    }
  }
}

}  // namespace bmx::kernels
