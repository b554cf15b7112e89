// Direct float convolution kernel body (see fconv2d.h), written once for any vector width
// and instantiated by the ISA files (fconv2d__avx512.cc, fconv2d__avx2.cc) with their
// traits. Everything here is in an unnamed namespace: each ISA file compiles its own copy
// with its own flags (an inline function shared between files compiled with and without
// -mavx512f would be one symbol to the linker; see docs/CONTRIBUTING.md).
//
// Register tile: MR output pixels of one row x NB vectors of output channels; per input
// channel of a tap, the NB weight vectors are loaded once and each pixel's input value is
// broadcast into NB FMAs. AVX-512: MR = 6, NB <= 4 (64 channels, 24 accumulators of 32
// registers); AVX2: MR = 6, NB = 2 (16 channels, 12 accumulators of 16). Pixels whose
// window crosses the zero padding run one at a time with the taps outside the image
// skipped; interior pixels are read in place (no im2col copy). Every output accumulates
// its taps and input channels in the same order with one FMA each in both widths, so the
// two kernels give the same bits.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/fconv2d/fconv2d.h"

namespace bmx::kernels {
namespace {
namespace fconv {

// V: using Reg; static constexpr int kLanes, kMR, kMaxNB; load, set1, fmadd, max, zero,
// store.
template <class V, int MR, int NB, bool CHECKED>
inline void block(const float* img, std::int64_t in_ps, const float* w, const float* bias, bool relu,
                  const FConv2DShape& s, std::int64_t oy, std::int64_t ox0, std::int64_t oc0, float* o,
                  std::int64_t out_ps, std::int64_t c0, std::int64_t c1) {
  constexpr int L = V::kLanes;
  typename V::Reg acc[MR][NB];
  for (int b = 0; b < NB; ++b) {
    const typename V::Reg bv = bias ? V::load(bias + oc0 + L * b) : V::zero();
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
        typename V::Reg wv[NB];
        for (int b = 0; b < NB; ++b) wv[b] = V::load(wk + L * b);
        for (int i = 0; i < MR; ++i) {
          const typename V::Reg xv = V::set1(p[i * xs + c]);
          for (int b = 0; b < NB; ++b) acc[i][b] = V::fmadd(xv, wv[b], acc[i][b]);
        }
      }
    }
  }
  const typename V::Reg zero = V::zero();
  for (int i = 0; i < MR; ++i)
    for (int b = 0; b < NB; ++b) V::store(o + i * out_ps + oc0 + L * b, relu ? V::max(acc[i][b], zero) : acc[i][b]);
}

template <class V, int NB, int MR = V::kMR>
inline void tail(int rem, const float* img, std::int64_t in_ps, const float* w, const float* bias, bool relu,
                 const FConv2DShape& s, std::int64_t oy, std::int64_t ox0, std::int64_t oc0, float* o,
                 std::int64_t out_ps, std::int64_t c0, std::int64_t c1) {
  if constexpr (MR > 0) {
    if (rem == MR) {
      block<V, MR, NB, false>(img, in_ps, w, bias, relu, s, oy, ox0, oc0, o, out_ps, c0, c1);
      return;
    }
    tail<V, NB, MR - 1>(rem, img, in_ps, w, bias, relu, s, oy, ox0, oc0, o, out_ps, c0, c1);
  }
}

template <class V, int NB>
void row_chunk(const float* img, std::int64_t in_ps, const float* w, const float* bias, bool relu,
               const FConv2DShape& s, std::int64_t oy, std::int64_t oc0, float* orow, std::int64_t out_ps,
               std::int64_t lo, std::int64_t hi) {
  constexpr int MR = V::kMR;
  std::int64_t c0 = 0, c1 = s.in_c;
  if (s.groups > 1) {  // the groups of outputs [oc0, oc0 + lanes * NB) read only their inputs
    const std::int64_t og = s.out_c / s.groups, cg = s.in_c / s.groups;
    c0 = oc0 / og * cg;
    c1 = (std::min<std::int64_t>(s.out_c, oc0 + V::kLanes * NB) - 1) / og * cg + cg;
  }
  const std::int64_t ow = s.out_w();
  std::int64_t ox = 0;
  for (; ox < lo; ++ox)
    block<V, 1, NB, true>(img, in_ps, w, bias, relu, s, oy, ox, oc0, orow + ox * out_ps, out_ps, c0, c1);
  for (; ox + MR <= hi; ox += MR)
    block<V, MR, NB, false>(img, in_ps, w, bias, relu, s, oy, ox, oc0, orow + ox * out_ps, out_ps, c0, c1);
  if (ox < hi) {
    tail<V, NB>(static_cast<int>(hi - ox), img, in_ps, w, bias, relu, s, oy, ox, oc0, orow + ox * out_ps, out_ps, c0,
                c1);
    ox = hi;
  }
  for (; ox < ow; ++ox)
    block<V, 1, NB, true>(img, in_ps, w, bias, relu, s, oy, ox, oc0, orow + ox * out_ps, out_ps, c0, c1);
}

// Output rows [r0, r1) (flattened n, oy). C_out is a multiple of 16.
template <class V>
void rows(const float* in, std::int64_t in_ps, const float* w, const float* bias, bool relu, const FConv2DShape& s,
          float* out, std::int64_t out_ps, std::int64_t r0, std::int64_t r1) {
  constexpr int L = V::kLanes;
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
    const std::int64_t step = s.groups > 1 ? 16 : L * V::kMaxNB;
    for (std::int64_t oc0 = 0; oc0 < s.out_c; oc0 += step) {
      const std::int64_t nb = std::min<std::int64_t>(step, s.out_c - oc0) / L;
      if constexpr (V::kMaxNB >= 4) {
        if (nb == 4) {
          row_chunk<V, 4>(img, in_ps, w, bias, relu, s, oy, oc0, orow, out_ps, lo, hi);
          continue;
        }
        if (nb == 3) {
          row_chunk<V, 3>(img, in_ps, w, bias, relu, s, oy, oc0, orow, out_ps, lo, hi);
          continue;
        }
      }
      if (nb >= 2) {
        row_chunk<V, 2>(img, in_ps, w, bias, relu, s, oy, oc0, orow, out_ps, lo, hi);
        continue;
      }
      row_chunk<V, 1>(img, in_ps, w, bias, relu, s, oy, oc0, orow, out_ps, lo, hi);
    }
  }
}

}  // namespace fconv
}  // namespace
}  // namespace bmx::kernels
