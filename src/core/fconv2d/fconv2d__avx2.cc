// AVX2 + FMA direct float convolution: the kernel body of kernels.h on 8-float vectors,
// MR = 6 pixels x 2 vectors (16 channels): 12 accumulators, 2 weight vectors and the
// broadcast input fill 15 of the 16 ymm registers (the 6x16 tile of AVX2 SGEMM kernels).
#include <immintrin.h>

#include "core/fconv2d/kernels.h"

namespace bmx::kernels {

namespace {
struct V256 {
  using Reg = __m256;
  static constexpr int kLanes = 8, kMR = 6, kMaxNB = 2;
  static Reg load(const float* p) { return _mm256_loadu_ps(p); }
  static Reg set1(float x) { return _mm256_set1_ps(x); }
  static Reg fmadd(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  static Reg max(Reg a, Reg b) { return _mm256_max_ps(a, b); }
  static Reg zero() { return _mm256_setzero_ps(); }
  static void store(float* p, Reg v) { _mm256_storeu_ps(p, v); }
};
}  // namespace

void fconv2d_rows__avx2(const float* in, std::int64_t in_ps, const float* w, const float* bias, bool relu,
                        const FConv2DShape& s, float* out, std::int64_t out_ps, std::int64_t r0, std::int64_t r1) {
  fconv::rows<V256>(in, in_ps, w, bias, relu, s, out, out_ps, r0, r1);
}

}  // namespace bmx::kernels
