// Naive k-bit bit-plane GEMM: the source of truth for every optimized kbgemm kernel.
// Zhou et al., DoReFa-Net (2016) / Bethge et al., BMXNet 2 (2019): a k-bit unsigned
// integer per element is stored as bit planes (plane i = bit i, LSB first), and
//   C[m, n] = sum_{i < pa} sum_{j < pb} 2^(i + j) * popcount(A_i[m] & B_j[n])
//           = sum over elements of U_a * U_b.
// Plane i of row m is a[m * lda + i * words + w]; tail bits are 0 in both operands.
#pragma once

#include <cstdint>

#include "bmx/convention.h"
#include "core/bgemm/reference.h"  // ref::popcount64: naive, independent of the builtins

namespace bmx::ref {

inline void kbgemm(const word_t* a, std::int64_t lda, const word_t* b, std::int64_t ldb, std::int64_t m0,
                   std::int64_t m1, std::int64_t n0, std::int64_t n1, std::int64_t words, int pa, int pb,
                   std::int32_t* c, std::int64_t ldc) {
  for (std::int64_t r = m0; r < m1; ++r)
    for (std::int64_t s = n0; s < n1; ++s) {
      std::int64_t sum = 0;
      for (int i = 0; i < pa; ++i)
        for (int j = 0; j < pb; ++j) {
          std::int64_t pc = 0;
          for (std::int64_t w = 0; w < words; ++w)
            pc += popcount64(a[r * lda + i * words + w] & b[s * ldb + j * words + w]);
          sum += pc << (i + j);
        }
      c[r * ldc + s] = static_cast<std::int32_t>(sum);
    }
}

// out[r] = sum_i 2^i * popcount(plane i of row r): the row's sum of U_a (the correction
// term of an affine quantizer's zero point).
inline void kbit_row_sums(const word_t* a, std::int64_t lda, std::int64_t m, std::int64_t words, int pa,
                          std::int32_t* out) {
  for (std::int64_t r = 0; r < m; ++r) {
    std::int64_t sum = 0;
    for (int i = 0; i < pa; ++i)
      for (std::int64_t w = 0; w < words; ++w)
        sum += static_cast<std::int64_t>(popcount64(a[r * lda + i * words + w])) << i;
    out[r] = static_cast<std::int32_t>(sum);
  }
}

}  // namespace bmx::ref
