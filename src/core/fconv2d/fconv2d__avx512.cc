// AVX-512 direct float convolution: the kernel body of kernels.h on 16-float vectors,
// MR = 6 pixels x up to 4 vectors (64 channels).
#include <immintrin.h>

#include "core/fconv2d/kernels.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 AVX-512 header false positive
#endif

namespace bmx::kernels {

namespace {
struct V512 {
  using Reg = __m512;
  static constexpr int kLanes = 16, kMR = 6, kMaxNB = 4;
  static Reg load(const float* p) { return _mm512_loadu_ps(p); }
  static Reg set1(float x) { return _mm512_set1_ps(x); }
  static Reg fmadd(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  static Reg max(Reg a, Reg b) { return _mm512_max_ps(a, b); }
  static Reg zero() { return _mm512_setzero_ps(); }
  static void store(float* p, Reg v) { _mm512_storeu_ps(p, v); }
};
}  // namespace

void fconv2d_rows__avx512(const float* in, std::int64_t in_ps, const float* w, const float* bias, bool relu,
                          const FConv2DShape& s, float* out, std::int64_t out_ps, std::int64_t r0, std::int64_t r1) {
  fconv::rows<V512>(in, in_ps, w, bias, relu, s, out, out_ps, r0, r1);
}

}  // namespace bmx::kernels
