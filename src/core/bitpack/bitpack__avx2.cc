// AVX2 bit-packing: compare (x < 0, ordered: NaN and -0.0 give 0) and movemask.
// The sign bit alone would be wrong for -0.0 and negative NaNs, hence the compare.
#include <immintrin.h>

#include "core/bitpack/kernels.h"

namespace bmx::kernels {

namespace {
template <typename T>
inline word_t pack_tail(const T* x, int n) {
  word_t w = 0;
  for (int i = 0; i < n; ++i) w |= static_cast<word_t>(x[i] < T(0)) << i;
  return w;
}
}  // namespace

void pack_f32__avx2(const float* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride,
                    word_t* out, std::int64_t out_stride) {
  const std::int64_t full = k / kWordBits;
  const int tail = static_cast<int>(k % kWordBits);
  const __m256 zero = _mm256_setzero_ps();
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* x = in + r * in_stride;
    word_t* o = out + r * out_stride;
    for (std::int64_t j = 0; j < full; ++j, x += 64) {
      word_t w = 0;
      for (int q = 0; q < 8; ++q) {
        const __m256 lt = _mm256_cmp_ps(_mm256_loadu_ps(x + 8 * q), zero, _CMP_LT_OQ);
        w |= static_cast<word_t>(static_cast<unsigned>(_mm256_movemask_ps(lt))) << (8 * q);
      }
      o[j] = w;
    }
    if (tail) o[full] = pack_tail(x, tail);
  }
}

void pack_i8__avx2(const std::int8_t* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride,
                   word_t* out, std::int64_t out_stride) {
  const std::int64_t full = k / kWordBits;
  const int tail = static_cast<int>(k % kWordBits);
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int8_t* x = in + r * in_stride;
    word_t* o = out + r * out_stride;
    for (std::int64_t j = 0; j < full; ++j, x += 64) {
      // For int8 the sign bit is exactly "x < 0".
      const auto lo = static_cast<unsigned>(_mm256_movemask_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x))));
      const auto hi = static_cast<unsigned>(_mm256_movemask_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32))));
      o[j] = static_cast<word_t>(lo) | (static_cast<word_t>(hi) << 32);
    }
    if (tail) o[full] = pack_tail(x, tail);
  }
}

}  // namespace bmx::kernels
