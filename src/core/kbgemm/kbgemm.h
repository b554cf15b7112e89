// k-bit bit-plane GEMM (Zhou et al., DoReFa-Net, 2016; Bethge et al., BMXNet 2, 2019):
// k-bit activations times k-bit weights as weighted popcounts of plane pairs,
//   C[m, n] = sum_{i < pa} sum_{j < pb} 2^(i + j) * popcount(A_i[m] & B_j[n]),
// the integer dot product of the unsigned values U = sum_i 2^i * plane_i.
// A: M rows, each pa planes of `words` words, contiguous (plane i of row m at
// a + m * lda + i * words; lda >= pa * words); B likewise with pb planes and ldb;
// C: int32, row-major with row stride ldc. Tail bits past the element count are 0 in
// both operands (reference.h is the source of truth).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bmx/convention.h"

namespace bmx {
class ThreadPool;

constexpr int kMaxKbitPlanes = 4;

// One micro-kernel of the list that drives dispatch, tests and benchmarks.
struct KbgemmKernel {
  const char* name;     // XNNPACK style: "kbgemm_2x4__avx2"
  bool (*available)();  // can this CPU run it?
  int priority;         // higher wins in "auto" dispatch
  // The block C[m, n] for m in [m0, m1), n in [n0, n1), written to c[m * ldc + n] (c is
  // the base of the whole C); 1 <= pa, pb <= 4 (not checked here: kbgemm() checks).
  void (*run)(const word_t* a, std::int64_t lda, const word_t* b, std::int64_t ldb, std::int64_t m0,
              std::int64_t m1, std::int64_t n0, std::int64_t n1, std::int64_t words, int pa, int pb,
              std::int32_t* c, std::int64_t ldc);
  // Optional (nullptr when the kernel has none), as in BgemmKernel: B re-arranged once into
  // the kernel's own layout (a model's weights, at load), so that run_packed skips the
  // re-arrangement that run does on every call. packed_b_words(n, words, pb): size of
  // pack_b's output for n rows of pb planes; run_packed: the contract of run with B given
  // as pack_b's output for all its rows (same pb), and n0 a multiple of `panel`.
  std::int64_t (*packed_b_words)(std::int64_t n, std::int64_t words, int pb) = nullptr;
  void (*pack_b)(const word_t* b, std::int64_t ldb, std::int64_t n, std::int64_t words, int pb,
                 word_t* out) = nullptr;
  void (*run_packed)(const word_t* a, std::int64_t lda, const word_t* packed_b, std::int64_t m0, std::int64_t m1,
                     std::int64_t n0, std::int64_t n1, std::int64_t words, int pa, int pb, std::int32_t* c,
                     std::int64_t ldc) = nullptr;
  // Panel width of pack_b (rows of B per panel, dividing 16); 0 when there is no packed form.
  int panel = 0;
};

// Every kernel compiled into this build (reference first); available() says which run here.
const std::vector<KbgemmKernel>& kbgemm_kernels();
// The kernel called "name", or the best available for "auto"; throws std::invalid_argument
// for an unknown or unavailable name.
const KbgemmKernel& kbgemm_kernel(const std::string& name = "auto");

// Most elements per row (words * 64) for which every C of pa x pb planes fits int32:
// each element adds at most (2^pa - 1) * (2^pb - 1).
std::int64_t kbgemm_max_words(int pa, int pb);

// Throws std::invalid_argument for pa or pb outside [1, 4], negative sizes or strides
// shorter than the planes, or a words count past kbgemm_max_words. Threads split M or N
// (the larger) into tile-aligned ranges, as bgemm() does.
void kbgemm(const word_t* a, std::int64_t lda, const word_t* b, std::int64_t ldb, std::int64_t m, std::int64_t n,
            std::int64_t words, int pa, int pb, std::int32_t* c, std::int64_t ldc, ThreadPool* pool = nullptr,
            const KbgemmKernel* kernel = nullptr);

// B (n rows of pb planes, row stride ldb) in kernel k's packed layout, for kbgemm_packed;
// empty when k has no packed form. Throws std::invalid_argument as kbgemm does for pb,
// negative sizes or ldb < pb * words.
std::vector<word_t> kbgemm_pack_b(const KbgemmKernel& k, const word_t* b, std::int64_t ldb, std::int64_t n,
                                  std::int64_t words, int pb);

// kbgemm with B given as kbgemm_pack_b(k, b, ldb, n, words, pb) (same k, n, words, pb):
// same results, validation and threading; throws std::invalid_argument if k has no
// packed form.
void kbgemm_packed(const word_t* a, std::int64_t lda, const word_t* packed_b, std::int64_t m, std::int64_t n,
                   std::int64_t words, int pa, int pb, std::int32_t* c, std::int64_t ldc, ThreadPool* pool,
                   const KbgemmKernel& k);

// out[r] = sum_i 2^i * popcount(plane i of row r) for the m rows of a (the row sums of
// U_a); throws std::invalid_argument for pa outside [1, 4].
void kbit_row_sums(const word_t* a, std::int64_t lda, std::int64_t m, std::int64_t words, int pa,
                   std::int32_t* out);

}  // namespace bmx
