// Naive fused BatchNorm + sign + bit-packing: the source of truth for sign_pack.
// Bit c of pixel p is 1 iff scale[c] * x[c] + shift[c] < 0 in float32 arithmetic, the
// product and the sum each rounded (never one fused multiply-add), NaN -> 0; without a
// scale, iff x[c] < 0 (bmx/convention.h). LSB first, tail bits 0.
#pragma once

#include <cstdint>

#include "bmx/convention.h"

namespace bmx::ref {

inline void sign_pack(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps, const float* scale,
                      const float* shift, word_t* out) {
  const std::int64_t words = words_for_bits(c);
  for (std::int64_t p = 0; p < pixels; ++p) {
    const float* x = in + p * in_ps;
    word_t* o = out + p * words;
    for (std::int64_t j = 0; j < words; ++j) o[j] = 0;
    for (std::int64_t ch = 0; ch < c; ++ch) {
      bool negative;
      if (scale) {
        // volatile: the product is rounded to float32 before the add in any build (a
        // compiler allowed to contract would otherwise form an FMA, one rounding).
        volatile float prod = scale[ch] * x[ch];
        negative = prod + shift[ch] < 0.0f;
      } else {
        negative = x[ch] < 0.0f;
      }
      if (negative) o[ch / kWordBits] |= word_t{1} << (ch % kWordBits);
    }
  }
}

}  // namespace bmx::ref
