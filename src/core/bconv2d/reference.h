// Naive binary 2-D convolution on packed NHWC words: the source of truth for bconv2d.
// Direct loops, no im2col; a padded input position reads the packed -1 pixel (all
// channel bits set, tail bits 0), see bmx/convention.h.
#pragma once

#include <cstdint>

#include "core/bconv2d/bconv2d.h"
#include "core/bgemm/reference.h"

namespace bmx::ref {

inline void bconv2d(const word_t* input, const word_t* filter, const BConv2DShape& s, std::int32_t* out) {
  const std::int64_t iw_words = s.in_words(), oh = s.out_h(), ow = s.out_w();
  const std::int32_t k = s.k_bits();
  for (std::int64_t n = 0; n < s.batch; ++n)
    for (std::int64_t y = 0; y < oh; ++y)
      for (std::int64_t x = 0; x < ow; ++x)
        for (std::int64_t co = 0; co < s.out_c; ++co) {
          std::int64_t pc = 0;
          for (std::int64_t ky = 0; ky < s.kernel_h; ++ky)
            for (std::int64_t kx = 0; kx < s.kernel_w; ++kx) {
              const std::int64_t iy = y * s.stride_h - s.pad_h + ky * s.dilation_h;
              const std::int64_t ix = x * s.stride_w - s.pad_w + kx * s.dilation_w;
              const bool inside = iy >= 0 && iy < s.in_h && ix >= 0 && ix < s.in_w;
              for (std::int64_t w = 0; w < iw_words; ++w) {
                const word_t v = inside ? input[((n * s.in_h + iy) * s.in_w + ix) * iw_words + w]
                                        : (w == iw_words - 1 ? tail_mask(s.in_c) : kMinusOneWord);
                pc += popcount64(v ^ filter[((co * s.kernel_h + ky) * s.kernel_w + kx) * iw_words + w]);
              }
            }
          out[((n * oh + y) * ow + x) * s.out_c + co] = xnor_dot(k, static_cast<std::int32_t>(pc));
        }
}

}  // namespace bmx::ref
