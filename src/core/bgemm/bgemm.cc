// Binary GEMM: the kernel list, run-time dispatch, threading, and the portable kernel.
#include "core/bgemm/bgemm.h"

#include <algorithm>
#include <stdexcept>

#include "core/bgemm/kernels.h"
#include "core/bgemm/reference.h"
#include "core/common/cpu.h"
#include "core/common/kernel_list.h"
#include "core/common/scratch.h"
#include "core/common/threadpool.h"

namespace bmx {
namespace kernels {

void bgemm_1x1__reference(BMX_BGEMM_ARGS) { ref::bgemm(a, lda, b, ldb, m0, m1, n0, n1, words, k_bits, c, ldc); }

namespace {
// Portable register-blocked kernel: MR x NR popcount accumulators stay in registers
// while one pass over K streams MR rows of A and NR rows of B.
template <int MR, int NR>
__attribute__((always_inline)) inline void tile_scalar(const word_t* a, std::int64_t lda, const word_t* b, std::int64_t ldb, std::int64_t words,
                        std::int32_t k_bits, std::int32_t* c, std::int64_t ldc) {
  std::int64_t acc[MR][NR] = {};
  for (std::int64_t w = 0; w < words; ++w) {
    word_t av[MR], bv[NR];
    for (int i = 0; i < MR; ++i) av[i] = a[i * lda + w];
    for (int j = 0; j < NR; ++j) bv[j] = b[j * ldb + w];
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] += __builtin_popcountll(av[i] ^ bv[j]);
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) c[i * ldc + j] = xnor_dot(k_bits, static_cast<std::int32_t>(acc[i][j]));
}
}  // namespace

namespace {
// The blocked loop over 4x4 tiles; always inlined, so each entry point below compiles it
// (and __builtin_popcountll) for its own target.
__attribute__((always_inline)) inline void blocked_4x4(BMX_BGEMM_ARGS) {
  std::int64_t i = m0;
  for (; i + 4 <= m1; i += 4) {
    std::int64_t j = n0;
    for (; j + 4 <= n1; j += 4)
      tile_scalar<4, 4>(a + i * lda, lda, b + j * ldb, ldb, words, k_bits, c + i * ldc + j, ldc);
    for (; j < n1; ++j) tile_scalar<4, 1>(a + i * lda, lda, b + j * ldb, ldb, words, k_bits, c + i * ldc + j, ldc);
  }
  for (; i < m1; ++i) {
    std::int64_t j = n0;
    for (; j + 4 <= n1; j += 4)
      tile_scalar<1, 4>(a + i * lda, lda, b + j * ldb, ldb, words, k_bits, c + i * ldc + j, ldc);
    for (; j < n1; ++j) tile_scalar<1, 1>(a + i * lda, lda, b + j * ldb, ldb, words, k_bits, c + i * ldc + j, ldc);
  }
}
}  // namespace

void bgemm_4x4__scalar(BMX_BGEMM_ARGS) { blocked_4x4(a, lda, b, ldb, m0, m1, n0, n1, words, k_bits, c, ldc); }

#if defined(BMX_ARCH_X86)
// The portable kernel with the POPCNT instruction: x86-64's baseline has none, so there
// __builtin_popcountll is a bit-twiddling routine (~30 G binary MAC/s, slower than a
// float GEMM). Every x86 CPU of the last 15 years has POPCNT; this is the kernel for those
// without AVX2.
__attribute__((target("popcnt"))) void bgemm_4x4__popcnt(BMX_BGEMM_ARGS) {
  blocked_4x4(a, lda, b, ldb, m0, m1, n0, n1, words, k_bits, c, ldc);
}
#endif

}  // namespace kernels

namespace {
bool always() { return true; }
#if defined(BMX_ARCH_X86)
bool has_popcnt() { return cpu_features().popcnt; }
bool has_avx2() { return cpu_features().avx2; }
bool has_avx512() { return cpu_features().avx512_vpopcntdq; }
#endif
#if defined(BMX_ARCH_ARM64) || defined(BMX_ARCH_ARM32)
bool has_neon() { return cpu_features().neon; }
#endif
}  // namespace

const std::vector<BgemmKernel>& bgemm_kernels() {
  static const std::vector<BgemmKernel> list = {
      {"bgemm_1x1__reference", &always, 0, &kernels::bgemm_1x1__reference},
      {"bgemm_4x4__scalar", &always, 10, &kernels::bgemm_4x4__scalar},
#if defined(BMX_ARCH_X86)
      {"bgemm_4x4__popcnt", &has_popcnt, 15, &kernels::bgemm_4x4__popcnt},
      {"bgemm_2x4__avx2", &has_avx2, 20, &kernels::bgemm_2x4__avx2, &kernels::bgemm_2x4__avx2_packed_b_words,
       &kernels::bgemm_2x4__avx2_pack_b, &kernels::bgemm_2x4__avx2_run_packed, nullptr, 4},
      {"bgemm_2x8__avx2", &has_avx2, 21, &kernels::bgemm_2x8__avx2, &kernels::bgemm_2x8__avx2_packed_b_words,
       &kernels::bgemm_2x8__avx2_pack_b, &kernels::bgemm_2x8__avx2_run_packed,
       &kernels::bgemm_2x8__avx2_run_packed_t, 8},
      {"bgemm_4x4__avx512", &has_avx512, 30, &kernels::bgemm_4x4__avx512},
      {"bgemm_8x16__avx512", &has_avx512, 31, &kernels::bgemm_8x16__avx512,
       &kernels::bgemm_8x16__avx512_packed_b_words, &kernels::bgemm_8x16__avx512_pack_b,
       &kernels::bgemm_8x16__avx512_run_packed, &kernels::bgemm_8x16__avx512_run_packed_t, 16},
#endif
#if defined(BMX_ARCH_ARM64) || defined(BMX_ARCH_ARM32)
      {"bgemm_2x4__neon", &has_neon, 20, &kernels::bgemm_2x4__neon},
#endif
  };
  return list;
}

const BgemmKernel& bgemm_kernel(const std::string& name) { return pick_kernel(bgemm_kernels(), name, "bgemm"); }

namespace {
// Lanes a panel kernel computes for x rows of its panel operand: whole panels, and a
// last panel with at most half its rows valid costs half a panel. That holds for the
// AVX-512 kernel (8-row half tiles). bgemm_2x8__avx2 has no half tiles, but its swapped
// form costs more than its plain one (B split into the broadcast layout, results stored
// transposed), and the same rule picks its faster form on the
// binarydensenet37 shapes: N = 49 swapped (346 against 323 G MAC/s), N = 196 plain (364-376
// against 349; charging the half panel in full would swap it).
std::int64_t padded_rows(std::int64_t x, std::int64_t panel) {
  const std::int64_t rem = x % panel;
  return x - rem + (rem == 0 ? 0 : rem <= panel / 2 ? panel / 2 : panel);
}

// The swapped form pays when M pads to the panel width better than N (a 7x7 layer:
// N = 49 costs 56 lanes, M = 64 costs 64 for 64 rows: 3136 vs 3584 tile lanes), and every
// thread gets a panel of A.
bool use_swapped(const BgemmKernel& k, std::int64_t m, std::int64_t n, std::int64_t words, int threads) {
  if (!k.run_packed_t || !k.pack_b || !k.packed_b_words || k.panel <= 0 || words == 0) return false;
  if ((m + k.panel - 1) / k.panel < threads) return false;
  return padded_rows(m, k.panel) * n < padded_rows(n, k.panel) * m;
}
}  // namespace

namespace {
constexpr std::int64_t kAlign = 16;  // a multiple of every kernel's tile (the widest: 16 B rows)

// The arguments of a threaded bgemm, carried in the thread pool's job lines.
struct BgemmJob {
  const word_t* a = nullptr;
  const word_t* b = nullptr;
  std::int32_t* c = nullptr;
  word_t* packed_a = nullptr;
  const BgemmKernel* kernel = nullptr;
  std::int64_t lda = 0, ldb = 0, ldc = 0, m = 0, n = 0, words = 0;
  std::int64_t parts = 0, panels = 0, tiles = 0;
  std::int32_t k_bits = 0;
  bool split_n = false;
};

// Parts [pb, pe) of the split of M or N into `parts` tile-aligned ranges.
void run_parts(const BgemmJob& j, std::int64_t pb, std::int64_t pe) {
  const std::int64_t len = j.split_n ? j.n : j.m;
  for (std::int64_t p = pb; p < pe; ++p) {
    const std::int64_t lo = std::min(len, j.tiles * p / j.parts * kAlign);
    const std::int64_t hi = std::min(len, j.tiles * (p + 1) / j.parts * kAlign);
    if (lo >= hi) continue;
    if (j.split_n)
      j.kernel->run(j.a, j.lda, j.b, j.ldb, 0, j.m, lo, hi, j.words, j.k_bits, j.c, j.ldc);
    else
      j.kernel->run(j.a, j.lda, j.b, j.ldb, lo, hi, 0, j.n, j.words, j.k_bits, j.c, j.ldc);
  }
}

// Parts [pb, pe) of the swapped form: pack this part's panels of A, then run them.
void run_swapped_parts(const BgemmJob& j, std::int64_t pb, std::int64_t pe) {
  const BgemmKernel& k = *j.kernel;
  const std::int64_t stride = k.packed_b_words(k.panel, j.words);  // words per packed panel
  for (std::int64_t p = pb; p < pe; ++p) {
    const std::int64_t lo = j.panels * p / j.parts * k.panel, hi = std::min(j.m, j.panels * (p + 1) / j.parts * k.panel);
    if (lo >= hi) continue;
    k.pack_b(j.a + lo * j.lda, j.lda, hi - lo, j.words, j.packed_a + lo / k.panel * stride);
    k.run_packed_t(j.b, j.ldb, j.packed_a, lo, hi, 0, j.n, j.words, j.k_bits, j.c, j.ldc);
  }
}
}  // namespace

void bgemm(const word_t* a, std::int64_t lda, const word_t* b, std::int64_t ldb, std::int64_t m, std::int64_t n,
           std::int64_t words, std::int32_t k_bits, std::int32_t* c, std::int64_t ldc, ThreadPool* pool,
           const BgemmKernel* kernel) {
  if (m <= 0 || n <= 0) return;
  const BgemmKernel& k = kernel ? *kernel : bgemm_kernel("auto");
  const int threads = pool ? pool->num_threads() : 1;
  const std::int64_t work = m * n * std::max<std::int64_t>(words, 1);
  // Below ~64 K binary MACs a thread hand-off costs more than it saves.
  if (work < 1024) {
    k.run(a, lda, b, ldb, 0, m, 0, n, words, k_bits, c, ldc);
    return;
  }
  const bool swapped = use_swapped(k, m, n, words, threads);
  if (!swapped && threads <= 1) {
    k.run(a, lda, b, ldb, 0, m, 0, n, words, k_bits, c, ldc);
    return;
  }
  // Threads split the larger dimension (the panels of A in the swapped form) into ranges.
  // Large products get up to 4 ranges per thread (balance; a descheduled thread holds up
  // only a quarter of its share), small ones one per thread. Every range re-reads, and in
  // the AVX2 kernels re-arranges, the whole other operand, which costs ~1/rows of the
  // range's own work: ranges keep at least 128 rows (64 x 196 x 8064 bits in 8 ranges of
  // 24 rows ran 1.79x on 2 threads, in 2 ranges 1.9x). Ranges are tile-aligned and their
  // sizes differ by at most one tile, and the pool gives range i to the same thread on
  // every call (its rows of C stay in that core's cache).
  const std::int64_t split_len = swapped ? m : std::max(m, n);
  const std::int64_t per_thread =
      work >= (std::int64_t{1} << 20) ? std::clamp<std::int64_t>(split_len / (threads * 128), 1, 4) : 1;
  BgemmJob job;
  job.a = a, job.b = b, job.c = c, job.lda = lda, job.ldb = ldb, job.ldc = ldc;
  job.m = m, job.n = n, job.words = words, job.k_bits = k_bits, job.kernel = &k;
  if (swapped) {
    // Swapped form: A in panels, B rows broadcast. Threads split the panels of A; each
    // packs its own panels (no packing is repeated) into a buffer that lives for the call.
    job.panels = (m + k.panel - 1) / k.panel;
    thread_local ScratchBuffer<word_t> packed_a;
    job.packed_a = packed_a.get(static_cast<std::size_t>(k.packed_b_words(m, words)));
    job.parts = std::min<std::int64_t>(job.panels, threads * per_thread);
    parallel_for_dynamic(threads > 1 ? pool : nullptr, job.parts, 1, &run_swapped_parts, job);
    return;
  }
  // Split the larger dimension; each range runs the kernel's own cache blocking.
  job.split_n = n >= m;
  const std::int64_t len = job.split_n ? n : m;
  job.tiles = (len + kAlign - 1) / kAlign;
  job.parts = std::min<std::int64_t>(job.tiles, threads * per_thread);
  parallel_for_dynamic(pool, job.parts, 1, &run_parts, job);
}

}  // namespace bmx
