// Binary GEMM: C[m, n] = K - 2 * popcount(A[m] xor B[n])  (see bmx/convention.h).
// A: M rows of `words` packed words (row stride lda words); B: N rows (stride ldb);
// C: int32, row-major M x N with row stride ldc. k_bits is the true bit count
// (tail bits beyond it are 0 in both operands).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bmx/convention.h"

namespace bmx {
class ThreadPool;

// One micro-kernel of the single kernel list that drives dispatch, tests and benchmarks.
struct BgemmKernel {
  const char* name;        // XNNPACK style: "bgemm_4x4__avx2"
  bool (*available)();     // can this CPU run it?
  int priority;            // higher wins in "auto" dispatch
  // Computes the block C[m, n] for m in [m0, m1), n in [n0, n1), written to
  // c[m * ldc + n] (c is the base of the whole C); threads split M or N in the caller
  // (bgemm below), each range running the kernel's own cache blocking.
  void (*run)(const word_t* a, std::int64_t lda, const word_t* b, std::int64_t ldb,
              std::int64_t m0, std::int64_t m1, std::int64_t n0, std::int64_t n1,
              std::int64_t words, std::int32_t k_bits, std::int32_t* c, std::int64_t ldc);
  // Optional (nullptr when the kernel has none): B re-arranged once into the kernel's own
  // layout (a model's filters, at load), so that run_packed skips the re-arrangement that
  // run does on every call, in every thread. packed_b_words(n, words): size of pack_b's
  // output for n rows of B; run_packed: the contract of run with B given as pack_b's
  // output for all its rows, and n0 a multiple of `panel`.
  std::int64_t (*packed_b_words)(std::int64_t n, std::int64_t words) = nullptr;
  void (*pack_b)(const word_t* b, std::int64_t ldb, std::int64_t n, std::int64_t words, word_t* out) = nullptr;
  void (*run_packed)(const word_t* a, std::int64_t lda, const word_t* packed_b, std::int64_t m0, std::int64_t m1,
                     std::int64_t n0, std::int64_t n1, std::int64_t words, std::int32_t k_bits, std::int32_t* c,
                     std::int64_t ldc) = nullptr;
  // Optional: the swapped form, for GEMMs whose N pads badly to the kernel's panel width
  // while M does not (M = 64 output channels, N = 49 pixels of a 7x7 map): A given as
  // pack_b's output (panels over M; m0 a multiple of `panel`), rows of B read in place, and C
  // still written as c[m * ldc + n].
  void (*run_packed_t)(const word_t* b, std::int64_t ldb, const word_t* packed_a, std::int64_t m0, std::int64_t m1,
                       std::int64_t n0, std::int64_t n1, std::int64_t words, std::int32_t k_bits, std::int32_t* c,
                       std::int64_t ldc) = nullptr;
  // Panel width of pack_b (rows of B per panel); 0 when there is no packed form.
  int panel = 0;
};

// Every kernel compiled into this build (reference first); available() says which run here.
const std::vector<BgemmKernel>& bgemm_kernels();
// The kernel called "name", or the best available for "auto"; throws std::invalid_argument
// for an unknown or unavailable name.
const BgemmKernel& bgemm_kernel(const std::string& name = "auto");

void bgemm(const word_t* a, std::int64_t lda, const word_t* b, std::int64_t ldb,
           std::int64_t m, std::int64_t n, std::int64_t words, std::int32_t k_bits,
           std::int32_t* c, std::int64_t ldc, ThreadPool* pool = nullptr,
           const BgemmKernel* kernel = nullptr);

}  // namespace bmx
