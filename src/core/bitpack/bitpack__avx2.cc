// AVX2 bit-packing: compare (x < 0, ordered: NaN and -0.0 give 0) and movemask.
// The sign bit alone would be wrong for -0.0 and negative NaNs, hence the compare.
#include <immintrin.h>

#include "core/bitpack/kernels.h"

namespace bmx::kernels {

void pack_f32__avx2(const float* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride,
                    word_t* out, std::int64_t out_stride) {
  const __m256 zero = _mm256_setzero_ps();
  pack_rows_by_word(in, rows, k, in_stride, out, out_stride, [zero](const float* x) {
    word_t w = 0;
    for (int q = 0; q < 8; ++q) {
      const __m256 lt = _mm256_cmp_ps(_mm256_loadu_ps(x + 8 * q), zero, _CMP_LT_OQ);
      w |= static_cast<word_t>(static_cast<unsigned>(_mm256_movemask_ps(lt))) << (8 * q);
    }
    return w;
  });
}

void pack_i8__avx2(const std::int8_t* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride,
                   word_t* out, std::int64_t out_stride) {
  pack_rows_by_word(in, rows, k, in_stride, out, out_stride, [](const std::int8_t* x) {
    // For int8 the sign bit is exactly "x < 0".
    const auto lo = static_cast<unsigned>(_mm256_movemask_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x))));
    const auto hi =
        static_cast<unsigned>(_mm256_movemask_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32))));
    return static_cast<word_t>(lo) | (static_cast<word_t>(hi) << 32);
  });
}

}  // namespace bmx::kernels
