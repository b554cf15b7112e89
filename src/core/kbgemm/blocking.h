// Cache blocking and tile dispatch shared by the row-major kbgemm kernels (rows of A and B
// read in place, one register tile per MR rows of A x NR rows of B): a block of A rows
// (block_bytes, sized for L2) stays cached while NR-row panels of B (L1) pass through it,
// every panel meeting all tiles of the block before the next is touched. Edge tiles use
// the 1-row and 1-column forms. Tile<R, S>::run(a, lda, b, ldb, words, pa, pb, c, ldc)
// computes the R x S block at a, b into c (row stride ldc); it is the including file's
// own template, so each kernel compiles this loop for its own target.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/kbgemm/kernels.h"

namespace bmx::kernels::kbgemm_blocking {

// Rows [0, R) of a against rows [j0, j1) of b (c is row 0's output, column 0).
template <int R, int NR, template <int, int> class Tile>
inline void row_tiles(const word_t* a, std::int64_t lda, const word_t* b, std::int64_t ldb, std::int64_t j0,
                      std::int64_t j1, std::int64_t words, int pa, int pb, std::int32_t* c, std::int64_t ldc) {
  std::int64_t j = j0;
  for (; j + NR <= j1; j += NR) Tile<R, NR>::run(a, lda, b + j * ldb, ldb, words, pa, pb, c + j, ldc);
  for (; j < j1; ++j) Tile<R, 1>::run(a, lda, b + j * ldb, ldb, words, pa, pb, c + j, ldc);
}

// The block C[m0..m1, n0..n1) of the KbgemmKernel::run contract.
template <int MR, int NR, template <int, int> class Tile>
inline void blocked(BMX_KBGEMM_ARGS, std::int64_t block_bytes) {
  if (m1 <= m0 || n1 <= n0) return;
  const std::int64_t row_bytes = std::max<std::int64_t>(pa * words, 1) * 8;
  const std::int64_t mc = std::max<std::int64_t>(MR, (block_bytes / row_bytes) / MR * MR);
  for (std::int64_t mb = m0; mb < m1; mb += mc) {
    const std::int64_t me = std::min(m1, mb + mc);
    for (std::int64_t nb = n0; nb < n1; nb += NR) {
      const std::int64_t ne = std::min(n1, nb + NR);
      std::int64_t i = mb;
      for (; i + MR <= me; i += MR)
        row_tiles<MR, NR, Tile>(a + i * lda, lda, b, ldb, nb, ne, words, pa, pb, c + i * ldc, ldc);
      for (; i < me; ++i) row_tiles<1, NR, Tile>(a + i * lda, lda, b, ldb, nb, ne, words, pa, pb, c + i * ldc, ldc);
    }
  }
}

}  // namespace bmx::kernels::kbgemm_blocking
