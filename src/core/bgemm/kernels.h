// Binary GEMM micro-kernels (internal; the list in bgemm.cc names them). Same contract as
// BgemmKernel::run: C[m, n] for m in [m0, m1), n in [n0, n1), written to c[m * ldc + n]
// (c is the base of the whole C), rows of A and B at a + m * lda and b + n * ldb.
#pragma once

#include <cstdint>

#include "bmx/convention.h"

namespace bmx::kernels {

#define BMX_BGEMM_ARGS                                                                              \
  const word_t *a, std::int64_t lda, const word_t *b, std::int64_t ldb, std::int64_t m0,            \
      std::int64_t m1, std::int64_t n0, std::int64_t n1, std::int64_t words, std::int32_t k_bits, \
      std::int32_t *c, std::int64_t ldc

void bgemm_1x1__reference(BMX_BGEMM_ARGS);
void bgemm_4x4__scalar(BMX_BGEMM_ARGS);
#if defined(BMX_ARCH_X86)
void bgemm_4x4__popcnt(BMX_BGEMM_ARGS);
void bgemm_2x4__avx2(BMX_BGEMM_ARGS);
std::int64_t bgemm_2x4__avx2_packed_b_words(std::int64_t n, std::int64_t words);
void bgemm_2x4__avx2_pack_b(const word_t* b, std::int64_t ldb, std::int64_t n, std::int64_t words, word_t* out);
void bgemm_2x4__avx2_run_packed(const word_t* a, std::int64_t lda, const word_t* packed_b, std::int64_t m0,
                                std::int64_t m1, std::int64_t n0, std::int64_t n1, std::int64_t words,
                                std::int32_t k_bits, std::int32_t* c, std::int64_t ldc);
void bgemm_2x8__avx2(BMX_BGEMM_ARGS);
std::int64_t bgemm_2x8__avx2_packed_b_words(std::int64_t n, std::int64_t words);
void bgemm_2x8__avx2_pack_b(const word_t* b, std::int64_t ldb, std::int64_t n, std::int64_t words, word_t* out);
void bgemm_2x8__avx2_run_packed(const word_t* a, std::int64_t lda, const word_t* packed_b, std::int64_t m0,
                                std::int64_t m1, std::int64_t n0, std::int64_t n1, std::int64_t words,
                                std::int32_t k_bits, std::int32_t* c, std::int64_t ldc);
void bgemm_2x8__avx2_run_packed_t(const word_t* b, std::int64_t ldb, const word_t* packed_a, std::int64_t m0,
                                  std::int64_t m1, std::int64_t n0, std::int64_t n1, std::int64_t words,
                                  std::int32_t k_bits, std::int32_t* c, std::int64_t ldc);
void bgemm_4x4__avx512(BMX_BGEMM_ARGS);
void bgemm_8x16__avx512(BMX_BGEMM_ARGS);
std::int64_t bgemm_8x16__avx512_packed_b_words(std::int64_t n, std::int64_t words);
void bgemm_8x16__avx512_pack_b(const word_t* b, std::int64_t ldb, std::int64_t n, std::int64_t words, word_t* out);
void bgemm_8x16__avx512_run_packed(const word_t* a, std::int64_t lda, const word_t* packed_b, std::int64_t m0,
                                   std::int64_t m1, std::int64_t n0, std::int64_t n1, std::int64_t words,
                                   std::int32_t k_bits, std::int32_t* c, std::int64_t ldc);
void bgemm_8x16__avx512_run_packed_t(const word_t* b, std::int64_t ldb, const word_t* packed_a, std::int64_t m0,
                                     std::int64_t m1, std::int64_t n0, std::int64_t n1, std::int64_t words,
                                     std::int32_t k_bits, std::int32_t* c, std::int64_t ldc);
#endif
#if defined(BMX_ARCH_ARM64) || defined(BMX_ARCH_ARM32)
void bgemm_2x4__neon(BMX_BGEMM_ARGS);
#endif

}  // namespace bmx::kernels
