// AVX-512 direct float convolution (see fconv2d.h). Register tile: MR = 6 output pixels
// of one row x NB <= 4 vectors of 16 output channels (24 accumulators); per input channel
// of a tap, NB weight vectors are loaded once and each pixel's input value is broadcast
// into NB FMAs. Pixels whose window crosses the zero padding run one at a time with the
// taps outside the image skipped; interior pixels are read in place (no im2col copy).
#include <immintrin.h>

#include <algorithm>

#include "core/fconv2d/fconv2d.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 AVX-512 header false positive
#endif

namespace bmx::kernels {

namespace {

constexpr int kMR = 6;

// Input channels [c0, c1) contribute (all of them unless the weight is block-diagonal).
template <int MR, int NB, bool CHECKED>
inline void block(const float* img, std::int64_t in_ps, const float* w, const float* bias, bool relu,
                  const FConv2DShape& s, std::int64_t oy, std::int64_t ox0, std::int64_t oc0, float* o,
                  std::int64_t out_ps, std::int64_t c0, std::int64_t c1) {
  __m512 acc[MR][NB];
  for (int b = 0; b < NB; ++b) {
    const __m512 bv = bias ? _mm512_loadu_ps(bias + oc0 + 16 * b) : _mm512_setzero_ps();
    for (int i = 0; i < MR; ++i) acc[i][b] = bv;
  }
  const std::int64_t xs = s.stride_w * in_ps, cin = s.in_c, cout = s.out_c;
  for (std::int64_t ky = 0; ky < s.kernel_h; ++ky) {
    const std::int64_t iy = oy * s.stride_h - s.pad_h + ky * s.dilation_h;
    if (iy < 0 || iy >= s.in_h) continue;  // zero padding contributes nothing
    const float* row = img + iy * s.in_w * in_ps;
    for (std::int64_t kx = 0; kx < s.kernel_w; ++kx) {
      const std::int64_t ix0 = ox0 * s.stride_w - s.pad_w + kx * s.dilation_w;
      if (CHECKED && (ix0 < 0 || ix0 >= s.in_w)) continue;  // MR == 1 here
      const float* p = row + ix0 * in_ps;
      const float* wk = w + ((ky * s.kernel_w + kx) * cin + c0) * cout + oc0;
      for (std::int64_t c = c0; c < c1; ++c, wk += cout) {
        __m512 wv[NB];
        for (int b = 0; b < NB; ++b) wv[b] = _mm512_loadu_ps(wk + 16 * b);
        for (int i = 0; i < MR; ++i) {
          const __m512 xv = _mm512_set1_ps(p[i * xs + c]);
          for (int b = 0; b < NB; ++b) acc[i][b] = _mm512_fmadd_ps(xv, wv[b], acc[i][b]);
        }
      }
    }
  }
  const __m512 zero = _mm512_setzero_ps();
  for (int i = 0; i < MR; ++i)
    for (int b = 0; b < NB; ++b)
      _mm512_storeu_ps(o + i * out_ps + oc0 + 16 * b, relu ? _mm512_max_ps(acc[i][b], zero) : acc[i][b]);
}

template <int NB, int MR = kMR>
inline void tail(int rem, const float* img, std::int64_t in_ps, const float* w, const float* bias, bool relu,
                 const FConv2DShape& s, std::int64_t oy, std::int64_t ox0, std::int64_t oc0, float* o,
                 std::int64_t out_ps, std::int64_t c0, std::int64_t c1) {
  if constexpr (MR > 0) {
    if (rem == MR) {
      block<MR, NB, false>(img, in_ps, w, bias, relu, s, oy, ox0, oc0, o, out_ps, c0, c1);
      return;
    }
    tail<NB, MR - 1>(rem, img, in_ps, w, bias, relu, s, oy, ox0, oc0, o, out_ps, c0, c1);
  }
}

template <int NB>
void row_chunk(const float* img, std::int64_t in_ps, const float* w, const float* bias, bool relu,
               const FConv2DShape& s, std::int64_t oy, std::int64_t oc0, float* orow, std::int64_t out_ps,
               std::int64_t lo, std::int64_t hi) {
  std::int64_t c0 = 0, c1 = s.in_c;
  if (s.groups > 1) {  // the groups of outputs [oc0, oc0 + 16 NB) read only their inputs
    const std::int64_t og = s.out_c / s.groups, cg = s.in_c / s.groups;
    c0 = oc0 / og * cg;
    c1 = (std::min(s.out_c, oc0 + 16 * NB) - 1) / og * cg + cg;
  }
  const std::int64_t ow = s.out_w();
  std::int64_t ox = 0;
  for (; ox < lo; ++ox)
    block<1, NB, true>(img, in_ps, w, bias, relu, s, oy, ox, oc0, orow + ox * out_ps, out_ps, c0, c1);
  for (; ox + kMR <= hi; ox += kMR)
    block<kMR, NB, false>(img, in_ps, w, bias, relu, s, oy, ox, oc0, orow + ox * out_ps, out_ps, c0, c1);
  if (ox < hi) {
    tail<NB>(static_cast<int>(hi - ox), img, in_ps, w, bias, relu, s, oy, ox, oc0, orow + ox * out_ps, out_ps, c0,
             c1);
    ox = hi;
  }
  for (; ox < ow; ++ox)
    block<1, NB, true>(img, in_ps, w, bias, relu, s, oy, ox, oc0, orow + ox * out_ps, out_ps, c0, c1);
}

}  // namespace

void fconv2d_rows__avx512(const float* in, std::int64_t in_ps, const float* w, const float* bias, bool relu,
                          const FConv2DShape& s, float* out, std::int64_t out_ps, std::int64_t r0, std::int64_t r1) {
  const std::int64_t oh = s.out_h(), ow = s.out_w();
  // Interior columns: every tap inside the image.
  std::int64_t lo = std::min(ow, (s.pad_w + s.stride_w - 1) / s.stride_w);
  const std::int64_t last = s.in_w - 1 + s.pad_w - (s.kernel_w - 1) * s.dilation_w;
  std::int64_t hi = last < 0 ? lo : std::min(ow, last / s.stride_w + 1);
  hi = std::max(hi, lo);
  for (std::int64_t r = r0; r < r1; ++r) {
    const std::int64_t n = r / oh, oy = r % oh;
    const float* img = in + n * s.in_h * s.in_w * in_ps;
    float* orow = out + r * ow * out_ps;
    // Grouped (block-diagonal) weights: 16 outputs at a time, so each reads the fewest inputs.
    const std::int64_t step = s.groups > 1 ? 16 : 64;
    for (std::int64_t oc0 = 0; oc0 < s.out_c; oc0 += step) {
      switch (std::min<std::int64_t>(step / 16, (s.out_c - oc0) / 16)) {
        case 4: row_chunk<4>(img, in_ps, w, bias, relu, s, oy, oc0, orow, out_ps, lo, hi); break;
        case 3: row_chunk<3>(img, in_ps, w, bias, relu, s, oy, oc0, orow, out_ps, lo, hi); break;
        case 2: row_chunk<2>(img, in_ps, w, bias, relu, s, oy, oc0, orow, out_ps, lo, hi); break;
        default: row_chunk<1>(img, in_ps, w, bias, relu, s, oy, oc0, orow, out_ps, lo, hi); break;
      }
    }
  }
}

}  // namespace bmx::kernels
