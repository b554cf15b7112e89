// k-bit bit-plane GEMM: the kernel list, run-time dispatch, threading, the portable
// kernel and the row sums.
#include "core/kbgemm/kbgemm.h"

#include <algorithm>
#include <limits>
#include <stdexcept>

#include "core/common/cpu.h"
#include "core/common/kernel_list.h"
#include "core/common/threadpool.h"
#include "core/kbgemm/kernels.h"
#include "core/kbgemm/reference.h"

namespace bmx {
namespace kernels {

void kbgemm_1x1__reference(BMX_KBGEMM_ARGS) { ref::kbgemm(a, lda, b, ldb, m0, m1, n0, n1, words, pa, pb, c, ldc); }

namespace {
// Portable register tile: for each plane pair (p, q) one pass over the words keeps MR x NR
// popcount accumulators in registers (the bgemm tile with AND for XOR); the pair's weight
// 2^(p+q) is a shift of its totals.
template <int MR, int NR>
__attribute__((always_inline)) inline void tile_scalar(const word_t* a, std::int64_t lda, const word_t* b,
                                                       std::int64_t ldb, std::int64_t words, int pa, int pb,
                                                       std::int32_t* c, std::int64_t ldc) {
  std::int64_t sum[MR][NR] = {};
  for (int p = 0; p < pa; ++p)
    for (int q = 0; q < pb; ++q) {
      const word_t* ap = a + p * words;
      const word_t* bp = b + q * words;
      std::int64_t acc[MR][NR] = {};
      for (std::int64_t w = 0; w < words; ++w) {
        word_t av[MR], bv[NR];
        for (int r = 0; r < MR; ++r) av[r] = ap[r * lda + w];
        for (int s = 0; s < NR; ++s) bv[s] = bp[s * ldb + w];
        for (int r = 0; r < MR; ++r)
          for (int s = 0; s < NR; ++s) acc[r][s] += __builtin_popcountll(av[r] & bv[s]);
      }
      for (int r = 0; r < MR; ++r)
        for (int s = 0; s < NR; ++s) sum[r][s] += acc[r][s] << (p + q);
    }
  for (int r = 0; r < MR; ++r)
    for (int s = 0; s < NR; ++s) c[r * ldc + s] = static_cast<std::int32_t>(sum[r][s]);
}

// The loop over 2x4 tiles; always inlined, so each entry point below compiles it (and
// __builtin_popcountll) for its own target.
__attribute__((always_inline)) inline void blocked_2x4(BMX_KBGEMM_ARGS) {
  std::int64_t r = m0;
  for (; r + 2 <= m1; r += 2) {
    std::int64_t s = n0;
    for (; s + 4 <= n1; s += 4)
      tile_scalar<2, 4>(a + r * lda, lda, b + s * ldb, ldb, words, pa, pb, c + r * ldc + s, ldc);
    for (; s < n1; ++s) tile_scalar<2, 1>(a + r * lda, lda, b + s * ldb, ldb, words, pa, pb, c + r * ldc + s, ldc);
  }
  for (; r < m1; ++r) {
    std::int64_t s = n0;
    for (; s + 4 <= n1; s += 4)
      tile_scalar<1, 4>(a + r * lda, lda, b + s * ldb, ldb, words, pa, pb, c + r * ldc + s, ldc);
    for (; s < n1; ++s) tile_scalar<1, 1>(a + r * lda, lda, b + s * ldb, ldb, words, pa, pb, c + r * ldc + s, ldc);
  }
}
}  // namespace

void kbgemm_2x4__scalar(BMX_KBGEMM_ARGS) { blocked_2x4(a, lda, b, ldb, m0, m1, n0, n1, words, pa, pb, c, ldc); }

#if defined(BMX_ARCH_X86)
// With the POPCNT instruction (x86-64's baseline has none: there __builtin_popcountll is
// a bit-twiddling routine), for CPUs without AVX2.
__attribute__((target("popcnt"))) void kbgemm_2x4__popcnt(BMX_KBGEMM_ARGS) {
  blocked_2x4(a, lda, b, ldb, m0, m1, n0, n1, words, pa, pb, c, ldc);
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

void check_planes(int pa, int pb, const char* what) {
  if (pa < 1 || pa > kMaxKbitPlanes || pb < 1 || pb > kMaxKbitPlanes)
    throw std::invalid_argument(std::string(what) + ": plane counts must be in [1, " +
                                std::to_string(kMaxKbitPlanes) + "], got pa = " + std::to_string(pa) +
                                ", pb = " + std::to_string(pb));
}
}  // namespace

const std::vector<KbgemmKernel>& kbgemm_kernels() {
  static const std::vector<KbgemmKernel> list = {
      {"kbgemm_1x1__reference", &always, 0, &kernels::kbgemm_1x1__reference},
      {"kbgemm_2x4__scalar", &always, 10, &kernels::kbgemm_2x4__scalar},
#if defined(BMX_ARCH_X86)
      {"kbgemm_2x4__popcnt", &has_popcnt, 15, &kernels::kbgemm_2x4__popcnt},
      {"kbgemm_2x4__avx2", &has_avx2, 20, &kernels::kbgemm_2x4__avx2},
      {"kbgemm_3x4__avx2", &has_avx2, 21, &kernels::kbgemm_3x4__avx2, &kernels::kbgemm_3x4__avx2_packed_b_words,
       &kernels::kbgemm_3x4__avx2_pack_b, &kernels::kbgemm_3x4__avx2_run_packed, 4},
      {"kbgemm_4x4__avx512", &has_avx512, 30, &kernels::kbgemm_4x4__avx512},
      {"kbgemm_4x16__avx512", &has_avx512, 31, &kernels::kbgemm_4x16__avx512,
       &kernels::kbgemm_4x16__avx512_packed_b_words, &kernels::kbgemm_4x16__avx512_pack_b,
       &kernels::kbgemm_4x16__avx512_run_packed, 16},
#endif
#if defined(BMX_ARCH_ARM64) || defined(BMX_ARCH_ARM32)
      {"kbgemm_2x4__neon", &has_neon, 20, &kernels::kbgemm_2x4__neon},
#endif
  };
  return list;
}

const KbgemmKernel& kbgemm_kernel(const std::string& name) { return pick_kernel(kbgemm_kernels(), name, "kbgemm"); }

std::int64_t kbgemm_max_words(int pa, int pb) {
  check_planes(pa, pb, "kbgemm");
  const std::int64_t per_element = ((std::int64_t{1} << pa) - 1) * ((std::int64_t{1} << pb) - 1);
  return std::numeric_limits<std::int32_t>::max() / (per_element * kWordBits);
}

namespace {
constexpr std::int64_t kAlign = 16;  // a multiple of every kernel's tile and panel

// The arguments of a threaded kbgemm, carried in the thread pool's job lines; b is
// packed_b when `packed`.
struct KbgemmJob {
  const word_t* a = nullptr;
  const word_t* b = nullptr;
  std::int32_t* c = nullptr;
  const KbgemmKernel* kernel = nullptr;
  std::int64_t lda = 0, ldb = 0, ldc = 0, m = 0, n = 0, words = 0;
  std::int64_t parts = 0, tiles = 0;
  int pa = 0, pb = 0;
  bool split_n = false, packed = false;
};

void run_block(const KbgemmJob& j, std::int64_t m0, std::int64_t m1, std::int64_t n0, std::int64_t n1) {
  if (j.packed)
    j.kernel->run_packed(j.a, j.lda, j.b, m0, m1, n0, n1, j.words, j.pa, j.pb, j.c, j.ldc);
  else
    j.kernel->run(j.a, j.lda, j.b, j.ldb, m0, m1, n0, n1, j.words, j.pa, j.pb, j.c, j.ldc);
}

// Parts [p0, p1) of the split of M or N into `parts` tile-aligned ranges.
void run_parts(const KbgemmJob& j, std::int64_t p0, std::int64_t p1) {
  const std::int64_t len = j.split_n ? j.n : j.m;
  for (std::int64_t p = p0; p < p1; ++p) {
    const std::int64_t lo = std::min(len, j.tiles * p / j.parts * kAlign);
    const std::int64_t hi = std::min(len, j.tiles * (p + 1) / j.parts * kAlign);
    if (lo >= hi) continue;
    if (j.split_n)
      run_block(j, 0, j.m, lo, hi);
    else
      run_block(j, lo, hi, 0, j.n);
  }
}

void check_words(std::int64_t words, int pa, int pb) {
  if (words > kbgemm_max_words(pa, pb))
    throw std::invalid_argument("kbgemm: " + std::to_string(words) + " words of " + std::to_string(pa) + " x " +
                                std::to_string(pb) + " planes can overflow int32 (at most " +
                                std::to_string(kbgemm_max_words(pa, pb)) + ")");
}

// Validation shared by kbgemm and kbgemm_packed (packed: B has no row stride to check).
// False when there is nothing to compute.
bool check_args(std::int64_t lda, std::int64_t ldb, bool packed, std::int64_t m, std::int64_t n, std::int64_t words, int pa,
                int pb, std::int64_t ldc) {
  check_planes(pa, pb, "kbgemm");
  if (m < 0 || n < 0 || words < 0) throw std::invalid_argument("kbgemm: negative m, n or words");
  check_words(words, pa, pb);
  if (m == 0 || n == 0) return false;
  if (lda < pa * words || (!packed && ldb < pb * words) || ldc < n)
    throw std::invalid_argument("kbgemm: strides shorter than a row (lda >= pa * words, ldb >= pb * words, ldc >= n)");
  return true;
}

// One call of the kernel, or threads over M or N (the larger) in tile-aligned ranges:
// up to 4 per thread for large products (balance), each range keeping at least 128 rows
// (every range re-reads the whole other operand), as bgemm() does.
void run_job(KbgemmJob& job, ThreadPool* pool) {
  const int threads = pool ? pool->num_threads() : 1;
  const std::int64_t work = job.m * job.n * std::max<std::int64_t>(job.words, 1) * job.pa * job.pb;
  // Below ~64 K binary MACs a thread hand-off costs more than it saves.
  if (work < 1024 || threads <= 1) {
    run_block(job, 0, job.m, 0, job.n);
    return;
  }
  const std::int64_t split_len = std::max(job.m, job.n);
  const std::int64_t per_thread =
      work >= (std::int64_t{1} << 20) ? std::clamp<std::int64_t>(split_len / (threads * 128), 1, 4) : 1;
  job.split_n = job.n >= job.m;
  job.tiles = (split_len + kAlign - 1) / kAlign;
  job.parts = std::min<std::int64_t>(job.tiles, threads * per_thread);
  parallel_for_dynamic(pool, job.parts, 1, &run_parts, job);
}
}  // namespace

void kbgemm(const word_t* a, std::int64_t lda, const word_t* b, std::int64_t ldb, std::int64_t m, std::int64_t n,
            std::int64_t words, int pa, int pb, std::int32_t* c, std::int64_t ldc, ThreadPool* pool,
            const KbgemmKernel* kernel) {
  if (!check_args(lda, ldb, false, m, n, words, pa, pb, ldc)) return;
  KbgemmJob job;
  job.a = a, job.b = b, job.c = c, job.lda = lda, job.ldb = ldb, job.ldc = ldc;
  job.m = m, job.n = n, job.words = words, job.pa = pa, job.pb = pb;
  job.kernel = kernel ? kernel : &kbgemm_kernel("auto");
  run_job(job, pool);
}

std::vector<word_t> kbgemm_pack_b(const KbgemmKernel& k, const word_t* b, std::int64_t ldb, std::int64_t n,
                                  std::int64_t words, int pb) {
  check_planes(1, pb, "kbgemm_pack_b");
  if (n < 0 || words < 0) throw std::invalid_argument("kbgemm_pack_b: negative n or words");
  check_words(words, 1, pb);
  if (n > 0 && ldb < pb * words) throw std::invalid_argument("kbgemm_pack_b: ldb shorter than pb * words");
  if (!k.pack_b || !k.packed_b_words || !k.run_packed || k.panel <= 0) return {};
  std::vector<word_t> out(static_cast<std::size_t>(k.packed_b_words(n, words, pb)));
  if (n > 0) k.pack_b(b, ldb, n, words, pb, out.data());
  return out;
}

void kbgemm_packed(const word_t* a, std::int64_t lda, const word_t* packed_b, std::int64_t m, std::int64_t n,
                   std::int64_t words, int pa, int pb, std::int32_t* c, std::int64_t ldc, ThreadPool* pool,
                   const KbgemmKernel& k) {
  if (!k.run_packed || k.panel <= 0)
    throw std::invalid_argument(std::string("kbgemm_packed: kernel '") + k.name + "' has no packed form");
  if (!check_args(lda, 0, true, m, n, words, pa, pb, ldc)) return;
  KbgemmJob job;
  job.a = a, job.b = packed_b, job.c = c, job.lda = lda, job.ldc = ldc;
  job.m = m, job.n = n, job.words = words, job.pa = pa, job.pb = pb;
  job.kernel = &k, job.packed = true;
  run_job(job, pool);
}

void kbit_row_sums(const word_t* a, std::int64_t lda, std::int64_t m, std::int64_t words, int pa,
                   std::int32_t* out) {
  check_planes(pa, 1, "kbit_row_sums");
  if (m < 0 || words < 0 || words > kbgemm_max_words(pa, 1))
    throw std::invalid_argument("kbit_row_sums: m and words must be >= 0 and words small enough for int32");
  if (m > 0 && lda < pa * words) throw std::invalid_argument("kbit_row_sums: lda shorter than pa * words");
  for (std::int64_t r = 0; r < m; ++r) {
    std::int64_t sum = 0;
    for (int p = 0; p < pa; ++p) {
      const word_t* row = a + r * lda + p * words;
      std::int64_t pc = 0;
      for (std::int64_t w = 0; w < words; ++w) pc += __builtin_popcountll(row[w]);
      sum += pc << p;
    }
    out[r] = static_cast<std::int32_t>(sum);
  }
}

}  // namespace bmx
