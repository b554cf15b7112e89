// k-bit bit-plane GEMM micro-kernels (internal; the list in kbgemm.cc names them). Same
// contract as KbgemmKernel::run: C[m, n] for m in [m0, m1), n in [n0, n1), written to
// c[m * ldc + n]; row m of A holds pa planes of `words` words at a + m * lda, row n of B
// pb planes at b + n * ldb; 1 <= pa, pb <= 4 (checked by kbgemm()).
#pragma once

#include <cstdint>

#include "bmx/convention.h"

namespace bmx::kernels {

#define BMX_KBGEMM_ARGS                                                                                  \
  const word_t *a, std::int64_t lda, const word_t *b, std::int64_t ldb, std::int64_t m0, std::int64_t m1, \
      std::int64_t n0, std::int64_t n1, std::int64_t words, int pa, int pb, std::int32_t *c, std::int64_t ldc

// KbgemmKernel::run_packed: B given as the kernel's pack_b output (all its rows), n0 a
// multiple of the kernel's panel.
#define BMX_KBGEMM_PACKED_ARGS                                                                             \
  const word_t *a, std::int64_t lda, const word_t *packed_b, std::int64_t m0, std::int64_t m1, std::int64_t n0, \
      std::int64_t n1, std::int64_t words, int pa, int pb, std::int32_t *c, std::int64_t ldc

void kbgemm_1x1__reference(BMX_KBGEMM_ARGS);
void kbgemm_2x4__scalar(BMX_KBGEMM_ARGS);
#if defined(BMX_ARCH_X86)
void kbgemm_2x4__popcnt(BMX_KBGEMM_ARGS);
void kbgemm_2x4__avx2(BMX_KBGEMM_ARGS);
void kbgemm_3x4__avx2(BMX_KBGEMM_ARGS);
std::int64_t kbgemm_3x4__avx2_packed_b_words(std::int64_t n, std::int64_t words, int pb);
void kbgemm_3x4__avx2_pack_b(const word_t* b, std::int64_t ldb, std::int64_t n, std::int64_t words, int pb,
                             word_t* out);
void kbgemm_3x4__avx2_run_packed(BMX_KBGEMM_PACKED_ARGS);
void kbgemm_4x4__avx512(BMX_KBGEMM_ARGS);
void kbgemm_4x16__avx512(BMX_KBGEMM_ARGS);
std::int64_t kbgemm_4x16__avx512_packed_b_words(std::int64_t n, std::int64_t words, int pb);
void kbgemm_4x16__avx512_pack_b(const word_t* b, std::int64_t ldb, std::int64_t n, std::int64_t words, int pb,
                                word_t* out);
void kbgemm_4x16__avx512_run_packed(BMX_KBGEMM_PACKED_ARGS);
#endif
#if defined(BMX_ARCH_ARM64) || defined(BMX_ARCH_ARM32)
void kbgemm_2x4__neon(BMX_KBGEMM_ARGS);
#endif

}  // namespace bmx::kernels
