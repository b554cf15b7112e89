// Naive fused BatchNorm + sign + bit-packing: the source of truth for sign_pack, and its
// k-bit generalisation level_pack (Zhou et al., DoReFa-Net, 2016).
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

// k-bit levels: L = round(clip(v, 0, 1) * n), n = 2^planes - 1, halves up, with v =
// scale[c] * x + shift[c] (product and sum each rounded; without a scale, v = x) and the
// product u = clip(v) * n rounded to float32; NaN -> 0. Bit i of L goes to plane i: pixel p
// holds `planes` planes of words_for_bits(c) words at out + (p * planes + i) * words.
inline void level_pack(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps, const float* scale,
                       const float* shift, int planes, word_t* out) {
  const std::int64_t words = words_for_bits(c);
  const float n = static_cast<float>((1 << planes) - 1);
  for (std::int64_t p = 0; p < pixels; ++p) {
    const float* x = in + p * in_ps;
    word_t* o = out + p * planes * words;
    for (std::int64_t j = 0; j < planes * words; ++j) o[j] = 0;
    for (std::int64_t ch = 0; ch < c; ++ch) {
      volatile float prod = scale ? scale[ch] * x[ch] : x[ch];
      const float v = scale ? prod + shift[ch] : prod;
      volatile float u = v > 0.0f ? (v < 1.0f ? v : 1.0f) * n : 0.0f;  // !(v > 0): 0, NaN too
      const float f = static_cast<float>(static_cast<int>(u));         // floor: u >= 0
      const int level = static_cast<int>(f) + (u - f >= 0.5f ? 1 : 0);
      for (int i = 0; i < planes; ++i)
        if ((level >> i) & 1) o[i * words + ch / kWordBits] |= word_t{1} << (ch % kWordBits);
    }
  }
}

}  // namespace bmx::ref
