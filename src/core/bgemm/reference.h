// Naive binary GEMM: the source of truth for every optimized bgemm kernel.
// C[m, n] = k_bits - 2 * popcount(A[m] xor B[n]) over `words` words (bmx/convention.h).
#pragma once

#include <cstdint>

#include "bmx/convention.h"

namespace bmx::ref {

inline int popcount64(word_t v) {
  int c = 0;
  for (; v; v &= v - 1) ++c;  // deliberately naive: independent of the builtins under test
  return c;
}

inline void bgemm(const word_t* a, std::int64_t lda, const word_t* b, std::int64_t ldb, std::int64_t m0,
                  std::int64_t m1, std::int64_t n0, std::int64_t n1, std::int64_t words, std::int32_t k_bits,
                  std::int32_t* c, std::int64_t ldc) {
  for (std::int64_t i = m0; i < m1; ++i)
    for (std::int64_t j = n0; j < n1; ++j) {
      std::int64_t pc = 0;
      for (std::int64_t w = 0; w < words; ++w) pc += popcount64(a[i * lda + w] ^ b[j * ldb + w]);
      c[i * ldc + j] = xnor_dot(k_bits, static_cast<std::int32_t>(pc));
    }
}

}  // namespace bmx::ref
