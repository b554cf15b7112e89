// AVX-512 bit-packing: one ordered compare (x < 0: NaN and -0.0 give 0, as the
// convention requires) per 16 floats straight into a mask register, four masks per word.
// 1.2-1.5x the AVX2 kernel's rate (no movemask, shift and or per 8 values; 7x7x576 floats
// 1.40 -> 0.92 us, then the L1/L2 reads bound it); it matters for the input packing of
// small layers, which runs on one thread.
#include <immintrin.h>

#include "core/bitpack/kernels.h"

namespace bmx::kernels {

void pack_f32__avx512(const float* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride,
                      word_t* out, std::int64_t out_stride) {
  const __m512 zero = _mm512_setzero_ps();
  pack_rows_by_word(in, rows, k, in_stride, out, out_stride, [zero](const float* x) {
    const auto m0 = static_cast<word_t>(_mm512_cmp_ps_mask(_mm512_loadu_ps(x), zero, _CMP_LT_OQ));
    const auto m1 = static_cast<word_t>(_mm512_cmp_ps_mask(_mm512_loadu_ps(x + 16), zero, _CMP_LT_OQ));
    const auto m2 = static_cast<word_t>(_mm512_cmp_ps_mask(_mm512_loadu_ps(x + 32), zero, _CMP_LT_OQ));
    const auto m3 = static_cast<word_t>(_mm512_cmp_ps_mask(_mm512_loadu_ps(x + 48), zero, _CMP_LT_OQ));
    return m0 | (m1 << 16) | (m2 << 32) | (m3 << 48);
  });
}

void pack_i8__avx512(const std::int8_t* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride,
                     word_t* out, std::int64_t out_stride) {
  // For int8 the sign bit is exactly "x < 0": one vpmovb2m per word.
  pack_rows_by_word(in, rows, k, in_stride, out, out_stride,
                    [](const std::int8_t* x) -> word_t { return _mm512_movepi8_mask(_mm512_loadu_si512(x)); });
}

}  // namespace bmx::kernels
