// Naive grouped binary convolution with its float epilogue: the source of truth for
// bconv2d_grouped. Bit by bit, no packing tricks: the match count of a tap is the number
// of channels whose input bit equals the filter bit; a padded position reads bit 1 (the
// value -1, bmx/convention.h). out = relu?(scale * match + shift), product and sum each
// rounded in float32.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/bconv2d/bconv2d.h"

namespace bmx::ref {

inline bool bit_at(const word_t* row, std::int64_t i) { return (row[i / kWordBits] >> (i % kWordBits)) & 1; }

// s: the whole convolution (in_c = C_in, out_c = C_out); layouts as in bconv2d_grouped.h.
inline void bconv2d_grouped(const word_t* input, const word_t* filter, const BConv2DShape& s, std::int64_t groups,
                            const float* scale, const float* shift, bool relu, float* out, std::int64_t out_ps) {
  const std::int64_t cg = s.in_c / groups, og = s.out_c / groups;
  const std::int64_t in_words = words_for_bits(s.in_c), wg = words_for_bits(cg);
  const std::int64_t oh = s.out_h(), ow = s.out_w();
  for (std::int64_t n = 0; n < s.batch; ++n)
    for (std::int64_t y = 0; y < oh; ++y)
      for (std::int64_t x = 0; x < ow; ++x) {
        float* o = out + ((n * oh + y) * ow + x) * out_ps;
        for (std::int64_t co = 0; co < s.out_c; ++co) {
          const std::int64_t g = co / og;
          std::int64_t match = 0;
          for (std::int64_t ky = 0; ky < s.kernel_h; ++ky)
            for (std::int64_t kx = 0; kx < s.kernel_w; ++kx) {
              const std::int64_t iy = y * s.stride_h - s.pad_h + ky * s.dilation_h;
              const std::int64_t ix = x * s.stride_w - s.pad_w + kx * s.dilation_w;
              const bool inside = iy >= 0 && iy < s.in_h && ix >= 0 && ix < s.in_w;
              const word_t* px = inside ? input + ((n * s.in_h + iy) * s.in_w + ix) * in_words : nullptr;
              const word_t* f = filter + ((co * s.kernel_h + ky) * s.kernel_w + kx) * wg;
              for (std::int64_t c = 0; c < cg; ++c) {
                const bool xb = inside ? bit_at(px, g * cg + c) : true;
                match += xb == bit_at(f, c);
              }
            }
          // volatile: the product is rounded before the add in any build (no FMA).
          volatile float prod = scale[co] * static_cast<float>(match);
          const float v = prod + shift[co];
          o[co] = relu ? std::max(v, 0.0f) : v;
        }
      }
}

// Reference of slice_channels.
inline void slice_channels(const word_t* in, std::int64_t pixels, std::int64_t in_words, std::int64_t bit0,
                           std::int64_t cg, word_t* out) {
  const std::int64_t wg = words_for_bits(cg);
  for (std::int64_t p = 0; p < pixels; ++p) {
    for (std::int64_t j = 0; j < wg; ++j) out[p * wg + j] = 0;
    for (std::int64_t c = 0; c < cg; ++c)
      if (bit_at(in + p * in_words, bit0 + c)) out[p * wg + c / kWordBits] |= word_t{1} << (c % kWordBits);
  }
}

}  // namespace bmx::ref
