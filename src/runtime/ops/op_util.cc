// Shared op helpers (op_util.h): SGEMM, channel copies, the input/output layout changes.
#include "runtime/ops/op_util.h"

#include <atomic>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "core/common/cpu.h"

#if defined(BMX_HAVE_CBLAS)
#include <cblas.h>
// OpenBLAS's own threads would fight bmx's pool: pin it to one thread when it is OpenBLAS
// (weak, so any other CBLAS links too).
extern "C" void openblas_set_num_threads(int) __attribute__((weak));
#endif

namespace bmx::rt {

bool have_blas() {
#if defined(BMX_HAVE_CBLAS)
  return true;
#else
  return false;
#endif
}

void sgemm(std::int64_t m, std::int64_t n, std::int64_t k, const float* a, std::int64_t lda, const float* b,
           std::int64_t ldb, bool trans_b, float* c, std::int64_t ldc) {
  if (m <= 0 || n <= 0) return;
#if defined(BMX_HAVE_CBLAS)
  static const bool pinned = [] {
    if (openblas_set_num_threads) openblas_set_num_threads(1);
    return true;
  }();
  (void)pinned;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), 1.0f, a, static_cast<int>(lda), b, static_cast<int>(ldb),
              0.0f, c, static_cast<int>(ldc));
#else
  for (std::int64_t i = 0; i < m; ++i) {
    float* ci = c + i * ldc;
    for (std::int64_t j = 0; j < n; ++j) ci[j] = 0.0f;
    const float* ai = a + i * lda;
    if (!trans_b) {
      for (std::int64_t p = 0; p < k; ++p) {
        const float av = ai[p];
        const float* bp = b + p * ldb;
        for (std::int64_t j = 0; j < n; ++j) ci[j] += av * bp[j];
      }
    } else {
      for (std::int64_t j = 0; j < n; ++j) {
        const float* bj = b + j * ldb;
        float s = 0.0f;
        for (std::int64_t p = 0; p < k; ++p) s += ai[p] * bj[p];
        ci[j] = s;
      }
    }
  }
#endif
}

void copy_channels(const float* in, std::int64_t in_ps, float* out, std::int64_t out_ps, std::int64_t pixels,
                   std::int64_t c, ThreadPool* pool) {
  if (in == out && in_ps == out_ps) return;
  pfor(pool, pixels, 512, [&](std::int64_t p0, std::int64_t p1) {
    for (std::int64_t p = p0; p < p1; ++p) std::memcpy(out + p * out_ps, in + p * in_ps, c * sizeof(float));
  });
}

void nhwc_to_nchw(const float* in, std::int64_t ps, std::int64_t batch, std::int64_t c, std::int64_t hw,
                  float* out) {
  for (std::int64_t n = 0; n < batch; ++n)
    for (std::int64_t ch = 0; ch < c; ++ch)
      for (std::int64_t p = 0; p < hw; ++p) out[(n * c + ch) * hw + p] = in[(n * hw + p) * ps + ch];
}

namespace {

// Index of the first non-finite value in [b, e), or e. Blocks of 256 are tested without a
// branch per element (vectorised); only a block with a hit is scanned.
BMX_SIMD_CLONES std::int64_t first_non_finite(const float* in, std::int64_t b, std::int64_t e) {
  for (std::int64_t i0 = b; i0 < e; i0 += 256) {
    const std::int64_t i1 = std::min(e, i0 + 256);
    int bad = 0;
    for (std::int64_t i = i0; i < i1; ++i) bad |= !(std::fabs(in[i]) <= FLT_MAX);
    if (bad)
      for (std::int64_t i = i0; i < i1; ++i)
        if (!std::isfinite(in[i])) return i;
  }
  return e;
}

// `run` pixels of one image, planar (channel stride hw) -> interleaved (pixel stride ps).
BMX_SIMD_CLONES void transpose_pixels(const float* in, std::int64_t hw, std::int64_t run, std::int64_t c, float* out,
                                      std::int64_t ps) {
  for (std::int64_t ch = 0; ch < c; ++ch) {
    const float* s = in + ch * hw;
    for (std::int64_t q = 0; q < run; ++q) out[q * ps + ch] = s[q];
  }
}

}  // namespace

std::int64_t nchw_to_nhwc_checked(const float* in, std::int64_t batch, std::int64_t c, std::int64_t hw,
                                  float* out, std::int64_t ps, ThreadPool* pool) {
  // Check first (one streaming pass, split over the threads), then transpose.
  const std::int64_t total = batch * c * hw;
  std::atomic<std::int64_t> first{total};
  pfor(pool, total, 1 << 14, [&](std::int64_t b, std::int64_t e) {
    const std::int64_t i = first_non_finite(in, b, e);
    if (i == e) return;
    std::int64_t cur = first.load();
    while (i < cur && !first.compare_exchange_weak(cur, i)) {
    }
  });
  if (first.load() < total) return first.load();
  pfor(pool, batch * hw, 1 << 12, [&](std::int64_t p0, std::int64_t p1) {
    std::int64_t n = p0 / hw, q = p0 % hw;
    for (std::int64_t p = p0; p < p1;) {
      const std::int64_t run = std::min(p1 - p, hw - q);  // pixels of image n
      transpose_pixels(in + n * c * hw + q, hw, run, c, out + p * ps, ps);
      p += run, q = 0, ++n;
    }
  });
  return -1;
}

}  // namespace bmx::rt
