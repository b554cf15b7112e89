// Naive direct float convolution: the source of truth for fconv2d (same layouts; the
// dense weight includes the zeros of a block-diagonal one, so `groups` is not needed).
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/fconv2d/fconv2d.h"

namespace bmx::ref {

inline void fconv2d(const float* in, std::int64_t in_ps, const float* w, const float* bias, bool relu,
                    const FConv2DShape& s, float* out, std::int64_t out_ps) {
  const std::int64_t oh = s.out_h(), ow = s.out_w();
  for (std::int64_t n = 0; n < s.batch; ++n)
    for (std::int64_t y = 0; y < oh; ++y)
      for (std::int64_t x = 0; x < ow; ++x)
        for (std::int64_t o = 0; o < s.out_c; ++o) {
          double acc = bias ? bias[o] : 0.0;
          for (std::int64_t ky = 0; ky < s.kernel_h; ++ky) {
            const std::int64_t iy = y * s.stride_h - s.pad_h + ky * s.dilation_h;
            if (iy < 0 || iy >= s.in_h) continue;
            for (std::int64_t kx = 0; kx < s.kernel_w; ++kx) {
              const std::int64_t ix = x * s.stride_w - s.pad_w + kx * s.dilation_w;
              if (ix < 0 || ix >= s.in_w) continue;
              const float* px = in + ((n * s.in_h + iy) * s.in_w + ix) * in_ps;
              for (std::int64_t c = 0; c < s.in_c; ++c)
                acc += static_cast<double>(px[c]) * w[((ky * s.kernel_w + kx) * s.in_c + c) * s.out_c + o];
            }
          }
          float v = static_cast<float>(acc);
          out[((n * oh + y) * ow + x) * out_ps + o] = relu ? std::max(v, 0.0f) : v;
        }
}

}  // namespace bmx::ref
