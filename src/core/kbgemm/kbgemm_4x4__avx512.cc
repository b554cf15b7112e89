// AVX-512 k-bit bit-plane GEMM with VPOPCNTDQ (dispatched only where the CPU reports it):
// per plane pair (p, q) and 512 bits of one (m, n) pair, and + vpopcntq + vpaddq on a 4x4
// register tile (16 accumulators, 8 operand registers of the 32); each pair's totals are
// shifted by p + q (its weight 2^(p+q)). The last words % 8 words of a plane are one
// masked step (masked loads read nothing past the plane).
#include <immintrin.h>

#include <algorithm>

#include "core/kbgemm/blocking.h"
#include "core/kbgemm/kernels.h"

// GCC 12's AVX-512 headers build zero/undefined vectors in a way that trips
// -Wuninitialized inside the intrinsics themselves (a false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace bmx::kernels {

namespace {

constexpr int kStepWords = 8;  // 512 bits

// (not _mm512_reduce_add_epi64: GCC 12 warns about its undefined upper half)
inline std::int64_t hsum(__m512i v) {
  alignas(64) std::int64_t t[8];
  _mm512_store_si512(t, v);
  return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
}

// The register tile that blocking.h's loops call (MR x NR outputs).
template <int MR, int NR>
struct Tile {
  static void run(const word_t* a, std::int64_t lda, const word_t* b, std::int64_t ldb, std::int64_t words, int pa,
                  int pb, std::int32_t* c, std::int64_t ldc);
};

template <int MR, int NR>
inline void Tile<MR, NR>::run(const word_t* a, std::int64_t lda, const word_t* b, std::int64_t ldb,
                              std::int64_t words, int pa, int pb, std::int32_t* c, std::int64_t ldc) {
  const std::int64_t full = words / kStepWords, rem = words % kStepWords;
  const __mmask8 mask = static_cast<__mmask8>((1u << rem) - 1);
  std::int64_t sum[MR][NR] = {};
  for (int p = 0; p < pa; ++p)
    for (int q = 0; q < pb; ++q) {
      const word_t* ap = a + p * words;
      const word_t* bp = b + q * words;
      __m512i acc[MR][NR];
      for (int r = 0; r < MR; ++r)
        for (int s = 0; s < NR; ++s) acc[r][s] = _mm512_setzero_si512();
      auto step = [&](const __m512i (&av)[MR], const __m512i (&bv)[NR]) {
        for (int r = 0; r < MR; ++r)
          for (int s = 0; s < NR; ++s)
            acc[r][s] = _mm512_add_epi64(acc[r][s], _mm512_popcnt_epi64(_mm512_and_si512(av[r], bv[s])));
      };
      std::int64_t w = 0;
      for (std::int64_t st = 0; st < full; ++st, w += kStepWords) {
        __m512i av[MR], bv[NR];
        for (int r = 0; r < MR; ++r) av[r] = _mm512_loadu_si512(ap + r * lda + w);
        for (int s = 0; s < NR; ++s) bv[s] = _mm512_loadu_si512(bp + s * ldb + w);
        step(av, bv);
      }
      if (rem) {
        __m512i av[MR], bv[NR];
        for (int r = 0; r < MR; ++r) av[r] = _mm512_maskz_loadu_epi64(mask, ap + r * lda + w);
        for (int s = 0; s < NR; ++s) bv[s] = _mm512_maskz_loadu_epi64(mask, bp + s * ldb + w);
        step(av, bv);
      }
      for (int r = 0; r < MR; ++r)
        for (int s = 0; s < NR; ++s) sum[r][s] += hsum(acc[r][s]) << (p + q);
    }
  for (int r = 0; r < MR; ++r)
    for (int s = 0; s < NR; ++s) c[r * ldc + s] = static_cast<std::int32_t>(sum[r][s]);
}

}  // namespace

void kbgemm_4x4__avx512(BMX_KBGEMM_ARGS) {
  // A block of A rows (~256 KiB) stays in L2 while 4-row panels of B pass through L1.
  kbgemm_blocking::blocked<4, 4, Tile>(a, lda, b, ldb, m0, m1, n0, n1, words, pa, pb, c, ldc, 256 * 1024);
}

}  // namespace bmx::kernels
