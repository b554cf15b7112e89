// NEON k-bit bit-plane GEMM (AArch64 and ARMv7 with NEON): per plane pair (p, q) and 128
// bits of one (m, n) pair, vand + vcnt (bytes) + vpadal (pairwise add into 16-bit lanes),
// on a 2x4 register tile (8 accumulators fit the 16 q-registers of ARMv7). The 16-bit
// lanes gain at most 16 per step, so they are folded into 32-bit totals every
// kFlushSteps steps; each pair's total is shifted by p + q (its weight 2^(p+q)).
#include <arm_neon.h>

#include <algorithm>

#include "core/kbgemm/blocking.h"
#include "core/kbgemm/kernels.h"

namespace bmx::kernels {

namespace {

constexpr std::int64_t kFlushSteps = 2048;  // 2048 * 16 < 65536

inline std::uint32_t hsum_u32(uint32x4_t v) {
#if defined(__aarch64__)
  return vaddvq_u32(v);
#else
  const uint32x2_t s = vadd_u32(vget_low_u32(v), vget_high_u32(v));
  return vget_lane_u32(vpadd_u32(s, s), 0);
#endif
}

inline uint8x16_t load2(const word_t* p) { return vld1q_u8(reinterpret_cast<const std::uint8_t*>(p)); }
inline uint8x16_t load1(const word_t* p) {
  return vcombine_u8(vld1_u8(reinterpret_cast<const std::uint8_t*>(p)), vdup_n_u8(0));
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
  std::int64_t sum[MR][NR] = {};
  const std::int64_t steps = words / 2;
  for (int p = 0; p < pa; ++p)
    for (int q = 0; q < pb; ++q) {
      const word_t* ap = a + p * words;
      const word_t* bp = b + q * words;
      uint32x4_t tot[MR][NR];
      for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) tot[i][j] = vdupq_n_u32(0);
      for (std::int64_t s0 = 0; s0 < steps; s0 += kFlushSteps) {
        const std::int64_t s1 = std::min(steps, s0 + kFlushSteps);
        uint16x8_t acc[MR][NR];
        for (int i = 0; i < MR; ++i)
          for (int j = 0; j < NR; ++j) acc[i][j] = vdupq_n_u16(0);
        for (std::int64_t s = s0; s < s1; ++s) {
          uint8x16_t av[MR], bv[NR];
          for (int i = 0; i < MR; ++i) av[i] = load2(ap + i * lda + 2 * s);
          for (int j = 0; j < NR; ++j) bv[j] = load2(bp + j * ldb + 2 * s);
          for (int i = 0; i < MR; ++i)
            for (int j = 0; j < NR; ++j) acc[i][j] = vpadalq_u8(acc[i][j], vcntq_u8(vandq_u8(av[i], bv[j])));
        }
        for (int i = 0; i < MR; ++i)
          for (int j = 0; j < NR; ++j) tot[i][j] = vpadalq_u16(tot[i][j], acc[i][j]);
      }
      if (words % 2) {  // odd word count: the plane's last word alone (upper half zero)
        const std::int64_t w = words - 1;
        for (int i = 0; i < MR; ++i)
          for (int j = 0; j < NR; ++j)
            tot[i][j] = vpadalq_u16(
                tot[i][j], vpaddlq_u8(vcntq_u8(vandq_u8(load1(ap + i * lda + w), load1(bp + j * ldb + w)))));
      }
      for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) sum[i][j] += static_cast<std::int64_t>(hsum_u32(tot[i][j])) << (p + q);
    }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) c[i * ldc + j] = static_cast<std::int32_t>(sum[i][j]);
}

}  // namespace

void kbgemm_2x4__neon(BMX_KBGEMM_ARGS) {
  // A block of A rows (~128 KiB) stays in L2 while 4-row panels of B pass through L1.
  kbgemm_blocking::blocked<2, 4, Tile>(a, lda, b, ldb, m0, m1, n0, n1, words, pa, pb, c, ldc, 128 * 1024);
}

}  // namespace bmx::kernels
