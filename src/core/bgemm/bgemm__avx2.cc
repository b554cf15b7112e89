// AVX2 binary GEMM: nibble-LUT popcount (vpshufb, Mula et al., "Faster population counts
// using AVX2 instructions", 2016) with a 2x4 register tile.
//
// Why the operands are "nibble-split" first: popcount(a ^ b) needs the low and high
// nibble of every byte of a ^ b, and (a ^ b) & 0x0f == (a & 0x0f) ^ (b & 0x0f). Splitting
// each row once into a low-nibble and a high-nibble vector (cost O((M + N) * K)) removes
// the and/shift/and from the inner loop (cost O(M * N * K)): per 256 bits of one (m, n)
// pair the loop does 2 xor + 2 vpshufb + 2 vpaddb = 6 uops instead of 8.
// Counts accumulate in 8-bit lanes (at most 8 per byte and step, so 31 steps fit) and
// are widened with vpsadbw into 64-bit lanes.
//
// Cache blocking: a block of A rows (~128 KiB, L2) is split once; B is split in blocks
// of NR-row panels (~8 KiB each for K = 8064, L1) and every panel meets all row pairs
// of the A block before the next panel is touched.
//
// Packed form (pack_b / run_packed): B split once into its panels, as a model's filters
// are at load. run splits B in every call and, when threads split M, in every thread: on a
// 7x7 layer (64 filters of K = 2304..5184 bits, ~22 us of work) that is ~1 us per thread
// that does not shrink with threads.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "core/bgemm/kernels.h"
#include "core/common/scratch.h"

namespace bmx::kernels {

namespace {

constexpr int MR = 2;
constexpr int NR = 4;
constexpr int kStepWords = 4;   // 256 bits per step
constexpr int kMaxSteps8 = 31;  // 8-bit lanes: each step adds at most 8 per byte

// Thread-local scratch, reused across calls (no allocation in steady state).
struct Scratch {
  ScratchBuffer<std::int64_t> a, b;  // 64-byte aligned; four per 256-bit vector
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// Buffer layout. K has `steps` full 256-bit steps and `tail` (0..3) leftover words.
//   A group (MR rows): [steps][MR][lo, hi], then [tail][MR][lo, hi] where a tail vector is
//                      the row's leftover word broadcast to all four 64-bit lanes;
//   B panel (NR rows): [steps][NR][lo, hi], then [tail][lo, hi] where a tail vector holds
//                      the leftover word of the NR rows, one per 64-bit lane.
// One xor of a broadcast A word with a B tail vector thus serves the four pairs of a row
// at once: a leftover word costs 12 uops per tile instead of a zero-padded step's 48
// (K = 576 bits, 9 words, is 2 steps + 1 word).
// Rows past `count` up to the group/panel size are zero (zero in both operands: no count).
struct Layout {
  std::int64_t steps, tail;
  std::int64_t group_vecs() const { return (steps + tail) * MR * 2; }
  std::int64_t panel_vecs() const { return steps * NR * 2 + tail * 2; }
};

// Unaligned stores: pack_b's output is the caller's memory (the scratch buffers of run
// are 64-byte aligned anyway, where these cost the same as aligned ones).
inline void split_store(__m256i v, __m256i* d) {
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  _mm256_storeu_si256(d, _mm256_and_si256(v, low4));
  _mm256_storeu_si256(d + 1, _mm256_and_si256(_mm256_srli_epi16(v, 4), low4));
}

template <int R>
void split_full_steps(const word_t* const rows[R], std::int64_t steps, __m256i* d) {
  for (int r = 0; r < R; ++r) {
    if (rows[r] == nullptr) {
      for (std::int64_t s = 0; s < steps; ++s) split_store(_mm256_setzero_si256(), d + (s * R + r) * 2);
      continue;
    }
    for (std::int64_t s = 0; s < steps; ++s)
      split_store(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r] + s * kStepWords)), d + (s * R + r) * 2);
  }
}

void split_a(const word_t* src, std::int64_t ld, std::int64_t count, const Layout& L, __m256i* dst) {
  const std::int64_t groups = (count + MR - 1) / MR;
  for (std::int64_t g = 0; g < groups; ++g) {
    __m256i* d = dst + g * L.group_vecs();
    const word_t* rows[MR];
    for (int r = 0; r < MR; ++r) rows[r] = g * MR + r < count ? src + (g * MR + r) * ld : nullptr;
    split_full_steps<MR>(rows, L.steps, d);
    for (std::int64_t t = 0; t < L.tail; ++t)
      for (int r = 0; r < MR; ++r) {
        const word_t w = rows[r] ? rows[r][L.steps * kStepWords + t] : 0;
        split_store(_mm256_set1_epi64x(static_cast<long long>(w)), d + ((L.steps + t) * MR + r) * 2);
      }
  }
}

void split_b(const word_t* src, std::int64_t ld, std::int64_t count, const Layout& L, __m256i* dst) {
  const std::int64_t panels = (count + NR - 1) / NR;
  for (std::int64_t p = 0; p < panels; ++p) {
    __m256i* d = dst + p * L.panel_vecs();
    const word_t* rows[NR];
    for (int r = 0; r < NR; ++r) rows[r] = p * NR + r < count ? src + (p * NR + r) * ld : nullptr;
    split_full_steps<NR>(rows, L.steps, d);
    for (std::int64_t t = 0; t < L.tail; ++t) {
      long long w[NR];
      for (int r = 0; r < NR; ++r) w[r] = rows[r] ? static_cast<long long>(rows[r][L.steps * kStepWords + t]) : 0;
      split_store(_mm256_set_epi64x(w[3], w[2], w[1], w[0]), d + L.steps * NR * 2 + t * 2);
    }
  }
}

alignas(32) const std::uint8_t kNibbleLut[32] = {0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                                  0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4};

#if defined(__GNUC__) && defined(__x86_64__)
// The step loop in assembly: the 16 ymm registers hold exactly 8 accumulators, the LUT,
// 4 A vectors and 3 temporaries; compilers spill two accumulators here otherwise.
#define BMX_AVX2_COL(J, B)                                           \
  "vpxor  " #B "+" #J "*64(%[bq]), %%ymm8, %%ymm12\n\t"              \
  "vpxor  " #B "+" #J "*64+32(%[bq]), %%ymm9, %%ymm13\n\t"           \
  "vpxor  " #B "+" #J "*64(%[bq]), %%ymm10, %%ymm14\n\t"             \
  "vpshufb %%ymm12, %%ymm15, %%ymm12\n\t"                            \
  "vpshufb %%ymm13, %%ymm15, %%ymm13\n\t"                            \
  "vpshufb %%ymm14, %%ymm15, %%ymm14\n\t"                            \
  "vpaddb %%ymm12, %[c0" #J "], %[c0" #J "]\n\t"                     \
  "vpxor  " #B "+" #J "*64+32(%[bq]), %%ymm11, %%ymm12\n\t"          \
  "vpaddb %%ymm13, %[c0" #J "], %[c0" #J "]\n\t"                     \
  "vpshufb %%ymm12, %%ymm15, %%ymm12\n\t"                            \
  "vpaddb %%ymm14, %[c1" #J "], %[c1" #J "]\n\t"                     \
  "vpaddb %%ymm12, %[c1" #J "], %[c1" #J "]\n\t"
// One step (256 bits of K) at byte offsets A into the A group (aligned: run's scratch) and
// B into the B panel (a memory operand of vpxor: any alignment, so pack_b's output may lie
// anywhere).
#define BMX_AVX2_STEP(A, B)                                          \
  "vmovdqa " #A "(%[ap]), %%ymm8\n\t"                                \
  "vmovdqa " #A "+32(%[ap]), %%ymm9\n\t"                             \
  "vmovdqa " #A "+64(%[ap]), %%ymm10\n\t"                            \
  "vmovdqa " #A "+96(%[ap]), %%ymm11\n\t"                            \
  BMX_AVX2_COL(0, B) BMX_AVX2_COL(1, B) BMX_AVX2_COL(2, B) BMX_AVX2_COL(3, B)
// The 2x8 layout's step: an A row's 128 bits are stored once (16 bytes per nibble vector)
// and broadcast to both halves by the load itself (vbroadcasti128 is a plain load uop on
// Intel and AMD, as vmovdqa is), so the split writes half the bytes of a pre-broadcast copy.
#define BMX_AVX2_STEP8(A, B)                                         \
  "vbroadcasti128 " #A "(%[ap]), %%ymm8\n\t"                         \
  "vbroadcasti128 " #A "+16(%[ap]), %%ymm9\n\t"                      \
  "vbroadcasti128 " #A "+32(%[ap]), %%ymm10\n\t"                     \
  "vbroadcasti128 " #A "+48(%[ap]), %%ymm11\n\t"                     \
  BMX_AVX2_COL(0, B) BMX_AVX2_COL(1, B) BMX_AVX2_COL(2, B) BMX_AVX2_COL(3, B)
#define BMX_AVX2_ASM 1
#endif

// The whole step loop: odd step count: one step first, then two steps per iteration.
// STEP(A, B) is one step at byte offsets A into the A group and B into the B panel; AS and
// BS are the bytes one step advances them.
#define BMX_AVX2_LOOP(STEP, AS, BS)                                  \
  "vmovdqa (%[lut]), %%ymm15\n\t"                                    \
  "testq $1, %[n]\n\t"                                               \
  "jz 2f\n\t"                                                        \
  STEP(0, 0)                                                         \
  "addq $" #AS ", %[ap]\n\t"                                         \
  "addq $" #BS ", %[bq]\n\t"                                         \
  "decq %[n]\n\t"                                                    \
  "2:\n\t"                                                           \
  "testq %[n], %[n]\n\t"                                             \
  "jz 3f\n\t"                                                        \
  "1:\n\t"                                                           \
  STEP(0, 0)                                                         \
  STEP(AS, BS)                                                       \
  "addq $2*" #AS ", %[ap]\n\t"                                       \
  "addq $2*" #BS ", %[bq]\n\t"                                       \
  "subq $2, %[n]\n\t"                                                \
  "jnz 1b\n\t"                                                       \
  "3:\n\t"

// Per-step counts of one A group (2 rows) against one B panel (4 vectors of rows) for steps
// [0, n), n <= 31, added into 8-bit accumulators. kHalf: the 2x8 layout, where a step is
// 128 bits and the A group holds each row's 128 bits once (16-byte nibble vectors,
// broadcast to both halves on load); otherwise the 2x4 layout's 256-bit steps.
template <bool kHalf>
inline void steps_2x4(const __m256i* ap, const __m256i* bq, std::int64_t n, __m256i& c00, __m256i& c01,
                      __m256i& c02, __m256i& c03, __m256i& c10, __m256i& c11, __m256i& c12, __m256i& c13) {
#if defined(BMX_AVX2_ASM)
#define BMX_AVX2_OPERANDS                                                                                        \
  : [c00] "+x"(c00), [c01] "+x"(c01), [c02] "+x"(c02), [c03] "+x"(c03), [c10] "+x"(c10), [c11] "+x"(c11),       \
    [c12] "+x"(c12), [c13] "+x"(c13), [ap] "+r"(ap), [bq] "+r"(bq), [n] "+r"(n)                                 \
  : [lut] "r"(kNibbleLut)                                                                                        \
  : "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory"
  if constexpr (kHalf)
    __asm__(BMX_AVX2_LOOP(BMX_AVX2_STEP8, 64, 256) BMX_AVX2_OPERANDS);
  else
    __asm__(BMX_AVX2_LOOP(BMX_AVX2_STEP, 128, 256) BMX_AVX2_OPERANDS);
#undef BMX_AVX2_OPERANDS
#else
  const __m256i lut = _mm256_load_si256(reinterpret_cast<const __m256i*>(kNibbleLut));
  for (std::int64_t s = 0; s < n; ++s, bq += NR * 2) {
    __m256i a0l, a0h, a1l, a1h;
    if constexpr (kHalf) {
      const auto* a16 = reinterpret_cast<const __m128i*>(ap) + s * MR * 2;
      a0l = _mm256_broadcastsi128_si256(_mm_load_si128(a16 + 0)), a0h = _mm256_broadcastsi128_si256(_mm_load_si128(a16 + 1));
      a1l = _mm256_broadcastsi128_si256(_mm_load_si128(a16 + 2)), a1h = _mm256_broadcastsi128_si256(_mm_load_si128(a16 + 3));
    } else {
      const __m256i* a32 = ap + s * MR * 2;
      a0l = _mm256_load_si256(a32 + 0), a0h = _mm256_load_si256(a32 + 1);
      a1l = _mm256_load_si256(a32 + 2), a1h = _mm256_load_si256(a32 + 3);
    }
#define BMX_PAIR(cij, al, ah, j)                                                                            \
  cij = _mm256_add_epi8(cij, _mm256_shuffle_epi8(lut, _mm256_xor_si256(al, _mm256_loadu_si256(bq + 2 * j)))); \
  cij = _mm256_add_epi8(cij, _mm256_shuffle_epi8(lut, _mm256_xor_si256(ah, _mm256_loadu_si256(bq + 2 * j + 1))));
    BMX_PAIR(c00, a0l, a0h, 0)
    BMX_PAIR(c10, a1l, a1h, 0)
    BMX_PAIR(c01, a0l, a0h, 1)
    BMX_PAIR(c11, a1l, a1h, 1)
    BMX_PAIR(c02, a0l, a0h, 2)
    BMX_PAIR(c12, a1l, a1h, 2)
    BMX_PAIR(c03, a0l, a0h, 3)
    BMX_PAIR(c13, a1l, a1h, 3)
#undef BMX_PAIR
  }
#endif
}

// Four 64-bit-lane totals (values < 2^31) to their four horizontal sums as int32.
inline __m128i hsum4(__m256i x0, __m256i x1, __m256i x2, __m256i x3) {
  const __m256i y = _mm256_or_si256(x0, _mm256_slli_epi64(x1, 32));  // [a0 b0 a1 b1 | a2 b2 a3 b3]
  const __m256i z = _mm256_or_si256(x2, _mm256_slli_epi64(x3, 32));
  const __m256i s = _mm256_add_epi32(_mm256_unpacklo_epi64(y, z), _mm256_unpackhi_epi64(y, z));
  return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

// popcount(A[i] ^ B[j]) for the MR x NR tile of one A group and one B panel; results as
// dot products k - 2 * popcount, one int32x4 per row.
inline void micro_2x4(const __m256i* ag, const __m256i* bp, const Layout& L, std::int32_t k_bits, __m128i out[MR]) {
  const std::int64_t steps = L.steps;
  const __m256i zero = _mm256_setzero_si256();
  __m256i t00 = zero, t01 = zero, t02 = zero, t03 = zero, t10 = zero, t11 = zero, t12 = zero, t13 = zero;
  for (std::int64_t s0 = 0; s0 < steps; s0 += kMaxSteps8) {
    const std::int64_t n = std::min<std::int64_t>(steps - s0, kMaxSteps8);
    __m256i c00 = zero, c01 = zero, c02 = zero, c03 = zero, c10 = zero, c11 = zero, c12 = zero, c13 = zero;
    steps_2x4<false>(ag + s0 * MR * 2, bp + s0 * NR * 2, n, c00, c01, c02, c03, c10, c11, c12, c13);
    t00 = _mm256_add_epi64(t00, _mm256_sad_epu8(c00, zero));
    t01 = _mm256_add_epi64(t01, _mm256_sad_epu8(c01, zero));
    t02 = _mm256_add_epi64(t02, _mm256_sad_epu8(c02, zero));
    t03 = _mm256_add_epi64(t03, _mm256_sad_epu8(c03, zero));
    t10 = _mm256_add_epi64(t10, _mm256_sad_epu8(c10, zero));
    t11 = _mm256_add_epi64(t11, _mm256_sad_epu8(c11, zero));
    t12 = _mm256_add_epi64(t12, _mm256_sad_epu8(c12, zero));
    t13 = _mm256_add_epi64(t13, _mm256_sad_epu8(c13, zero));
  }
  __m128i pc0 = hsum4(t00, t01, t02, t03), pc1 = hsum4(t10, t11, t12, t13);
  if (L.tail) {
    // Leftover words: lane j of row i's accumulator counts pair (i, j).
    const __m256i lut = _mm256_load_si256(reinterpret_cast<const __m256i*>(kNibbleLut));
    const __m256i* at = ag + steps * MR * 2;
    const __m256i* bt = bp + steps * NR * 2;
    __m256i u0 = zero, u1 = zero;
    for (std::int64_t t = 0; t < L.tail; ++t, at += MR * 2, bt += 2) {
      const __m256i bl = _mm256_loadu_si256(bt), bh = _mm256_loadu_si256(bt + 1);
      u0 = _mm256_add_epi8(u0, _mm256_shuffle_epi8(lut, _mm256_xor_si256(_mm256_load_si256(at), bl)));
      u0 = _mm256_add_epi8(u0, _mm256_shuffle_epi8(lut, _mm256_xor_si256(_mm256_load_si256(at + 1), bh)));
      u1 = _mm256_add_epi8(u1, _mm256_shuffle_epi8(lut, _mm256_xor_si256(_mm256_load_si256(at + 2), bl)));
      u1 = _mm256_add_epi8(u1, _mm256_shuffle_epi8(lut, _mm256_xor_si256(_mm256_load_si256(at + 3), bh)));
    }
    const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    pc0 = _mm_add_epi32(pc0, _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(_mm256_sad_epu8(u0, zero), even)));
    pc1 = _mm_add_epi32(pc1, _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(_mm256_sad_epu8(u1, zero), even)));
  }
  const __m128i k = _mm_set1_epi32(k_bits);
  out[0] = _mm_sub_epi32(k, _mm_slli_epi32(pc0, 1));
  out[1] = _mm_sub_epi32(k, _mm_slli_epi32(pc1, 1));
}


// ---------------------------------------------------------------- 2x8: 128-bit steps
// The same step loop (steps_2x4) on another layout: a step covers 128 bits of K, an A
// vector holds its row's 128 bits in both halves (pre-broadcast, or in the swapped form
// stored once and broadcast by the load: Layout8::half), and a B vector holds two rows, q
// in the low half and q + 4 in the high half. The eight accumulators thus count 16 pairs (a 2x8
// tile) instead of 8, at the same cost per binary MAC, and the per-tile reduction (vpsadbw,
// transpose, K - 2 * popcount, store) is spread over twice the outputs: it is most of the
// gap between small K (576 bits: 9 words, ~30% of the 2x4 tile's uops) and large K.
//
// An odd word count leaves one word per row (K = 576 bits is 4 steps + 1 word). It is
// laid out as in the 2x4 tail: the A row's word broadcast to four lanes, the B panel's
// words four rows to a vector, in lane order [r0 r2 r4 r6] and [r1 r3 r5 r7] so that the
// two vectors' 64-bit sums interleave into column order. 24 uops per tile instead of a
// zero-padded step's 48.
struct Layout8 {
  std::int64_t steps, tail;  // words / 2 full 128-bit steps, words % 2 leftover word
  // half: the A group stores each row's 128 bits once (16-byte nibble vectors, broadcast to
  // both halves by the kernel's vbroadcasti128 loads) instead of pre-broadcast (32 bytes).
  // Half the bytes to write and to hold, but the plain form ran 2-4% slower with it at
  // K = 576 on the Sapphire Rapids VM, so only the swapped form uses it: there the A side is
  // B's rows, split again in every thread (a 7x7 layer at K = 2304: 49 rows in 28 KiB, which
  // stay in L1, instead of 56; 1 thread 20.3 -> 19.5 us, 2 threads 11.3 -> 10.8 us).
  bool half = false;
  // In 32-byte units (a tail vector is the row's leftover word broadcast to four lanes).
  std::int64_t steps_group_vecs() const { return half ? steps * MR : steps * MR * 2; }
  std::int64_t group_vecs() const { return steps_group_vecs() + tail * MR * 2; }
  std::int64_t panel_vecs() const { return steps * 4 * 2 + tail * 2 * 2; }
};

// The splits run once per call and, where threads split the other operand, in every
// thread (the swapped form splits all rows of B in each thread), so their loops are kept
// to a load, three ALU ops and two stores per vector.
void split_a8(const word_t* src, std::int64_t ld, std::int64_t count, std::int64_t words, const Layout8& L,
              __m256i* dst) {
  const std::int64_t groups = (count + MR - 1) / MR;
  const __m128i low4 = _mm_set1_epi8(0x0f);
  for (std::int64_t g = 0; g < groups; ++g) {
    __m256i* d = dst + g * L.group_vecs();
    auto* d16 = reinterpret_cast<__m128i*>(d);
    for (int r = 0; r < MR; ++r) {
      __m256i* dt = d + L.steps_group_vecs() + r * 2;
      const word_t* row = g * MR + r < count ? src + (g * MR + r) * ld : nullptr;  // nullptr: zeros
      auto step = [&](std::int64_t s) {
        return row ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * s)) : _mm_setzero_si128();
      };
      if (L.half) {
        for (std::int64_t s = 0; s < L.steps; ++s) {
          const __m128i v = step(s);
          _mm_storeu_si128(d16 + (s * MR + r) * 2, _mm_and_si128(v, low4));
          _mm_storeu_si128(d16 + (s * MR + r) * 2 + 1, _mm_and_si128(_mm_srli_epi16(v, 4), low4));
        }
      } else {
        for (std::int64_t s = 0; s < L.steps; ++s) split_store(_mm256_broadcastsi128_si256(step(s)), d + (s * MR + r) * 2);
      }
      if (L.tail) split_store(_mm256_set1_epi64x(row ? static_cast<long long>(row[words - 1]) : 0), dt);
    }
  }
}

void split_b8(const word_t* src, std::int64_t ld, std::int64_t count, std::int64_t words, const Layout8& L,
              __m256i* dst) {
  static const word_t kZeros[2] = {0, 0};
  const std::int64_t panels = (count + 8 - 1) / 8;
  for (std::int64_t p = 0; p < panels; ++p) {
    __m256i* d = dst + p * L.panel_vecs();
    const word_t* rows[8];
    for (int r = 0; r < 8; ++r) rows[r] = p * 8 + r < count ? src + (p * 8 + r) * ld : nullptr;
    for (int q = 0; q < 4; ++q) {
      // Rows past `count` read as zeros (stride 0 over a zero pair).
      const word_t* lo = rows[q] ? rows[q] : kZeros;
      const word_t* hi = rows[q + 4] ? rows[q + 4] : kZeros;
      const std::int64_t slo = rows[q] ? 2 : 0, shi = rows[q + 4] ? 2 : 0;
      for (std::int64_t s = 0; s < L.steps; ++s)
        split_store(_mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(hi + s * shi),
                                        reinterpret_cast<const __m128i*>(lo + s * slo)),
                    d + (s * 4 + q) * 2);
    }
    if (L.tail) {
      long long w[8];
      for (int r = 0; r < 8; ++r) w[r] = rows[r] ? static_cast<long long>(rows[r][words - 1]) : 0;
      split_store(_mm256_setr_epi64x(w[0], w[2], w[4], w[6]), d + L.steps * 8);
      split_store(_mm256_setr_epi64x(w[1], w[3], w[5], w[7]), d + L.steps * 8 + 2);
    }
  }
}

// Row i's four 64-bit-lane totals x[q] (lanes 0-1: pair (i, q), lanes 2-3: pair (i, q + 4))
// to its eight int32 counts in column order.
inline __m256i hsum8(__m256i x0, __m256i x1, __m256i x2, __m256i x3) {
  const __m256i y = _mm256_or_si256(x0, _mm256_slli_epi64(x1, 32));  // [00 10 01 11 | 02 12 03 13]: (q, lane)
  const __m256i z = _mm256_or_si256(x2, _mm256_slli_epi64(x3, 32));
  return _mm256_add_epi32(_mm256_unpacklo_epi64(y, z), _mm256_unpackhi_epi64(y, z));
}

// Counts of the leftover word of A group row i (at) against the B panel's two tail
// vectors (bt): eight int32 in column order.
inline __m256i tail_2x8(const __m256i* at, const __m256i* bt) {
  const __m256i lut = _mm256_load_si256(reinterpret_cast<const __m256i*>(kNibbleLut));
  const __m256i al = _mm256_load_si256(at), ah = _mm256_load_si256(at + 1);
  const __m256i u0 = _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_xor_si256(al, _mm256_loadu_si256(bt))),
                                     _mm256_shuffle_epi8(lut, _mm256_xor_si256(ah, _mm256_loadu_si256(bt + 1))));
  const __m256i u1 = _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_xor_si256(al, _mm256_loadu_si256(bt + 2))),
                                     _mm256_shuffle_epi8(lut, _mm256_xor_si256(ah, _mm256_loadu_si256(bt + 3))));
  const __m256i zero = _mm256_setzero_si256();
  return _mm256_or_si256(_mm256_sad_epu8(u0, zero), _mm256_slli_epi64(_mm256_sad_epu8(u1, zero), 32));
}

// kHalf: L.half (a template argument: a run-time choice between the two step loops cost
// the plain form ~4% at K = 576).
template <bool kHalf>
inline void micro_2x8(const __m256i* ag, const __m256i* bp, const Layout8& L, std::int32_t k_bits,
                      __m256i out[MR]) {
  const std::int64_t steps = L.steps;
  const __m256i zero = _mm256_setzero_si256();
  __m256i t00 = zero, t01 = zero, t02 = zero, t03 = zero, t10 = zero, t11 = zero, t12 = zero, t13 = zero;
  for (std::int64_t s0 = 0; s0 < steps; s0 += kMaxSteps8) {
    const std::int64_t n = std::min<std::int64_t>(steps - s0, kMaxSteps8);
    __m256i c00 = zero, c01 = zero, c02 = zero, c03 = zero, c10 = zero, c11 = zero, c12 = zero, c13 = zero;
    steps_2x4<kHalf>(ag + s0 * (kHalf ? MR : MR * 2), bp + s0 * 4 * 2, n, c00, c01, c02, c03, c10, c11, c12, c13);
    // Written out per register: arrays here (with the asm's "+x" operands) compiled to
    // spills and cost 8-10% at K = 576.
    if (s0 == 0) {  // the first chunk's sums need no add (most tiles have one chunk)
      t00 = _mm256_sad_epu8(c00, zero), t01 = _mm256_sad_epu8(c01, zero);
      t02 = _mm256_sad_epu8(c02, zero), t03 = _mm256_sad_epu8(c03, zero);
      t10 = _mm256_sad_epu8(c10, zero), t11 = _mm256_sad_epu8(c11, zero);
      t12 = _mm256_sad_epu8(c12, zero), t13 = _mm256_sad_epu8(c13, zero);
      continue;
    }
    t00 = _mm256_add_epi64(t00, _mm256_sad_epu8(c00, zero));
    t01 = _mm256_add_epi64(t01, _mm256_sad_epu8(c01, zero));
    t02 = _mm256_add_epi64(t02, _mm256_sad_epu8(c02, zero));
    t03 = _mm256_add_epi64(t03, _mm256_sad_epu8(c03, zero));
    t10 = _mm256_add_epi64(t10, _mm256_sad_epu8(c10, zero));
    t11 = _mm256_add_epi64(t11, _mm256_sad_epu8(c11, zero));
    t12 = _mm256_add_epi64(t12, _mm256_sad_epu8(c12, zero));
    t13 = _mm256_add_epi64(t13, _mm256_sad_epu8(c13, zero));
  }
  __m256i pc0 = hsum8(t00, t01, t02, t03), pc1 = hsum8(t10, t11, t12, t13);
  if (L.tail) {
    const __m256i* at = ag + steps * (kHalf ? MR : MR * 2);
    const __m256i* bt = bp + steps * 4 * 2;
    pc0 = _mm256_add_epi32(pc0, tail_2x8(at, bt));
    pc1 = _mm256_add_epi32(pc1, tail_2x8(at + 2, bt));
  }
  const __m256i k = _mm256_set1_epi32(k_bits);
  out[0] = _mm256_sub_epi32(k, _mm256_slli_epi32(pc0, 1));
  out[1] = _mm256_sub_epi32(k, _mm256_slli_epi32(pc1, 1));
}

// The two tile shapes as policies of one blocked loop.
struct Tile2x4 {
  static constexpr int NR = 4;
  using L = Layout;
  using Out = __m128i;
  static constexpr std::int64_t kABlockBytes = 128 * 1024;
  static L layout(std::int64_t words) { return L{words / kStepWords, words % kStepWords}; }
  static L layout_t(std::int64_t words) { return layout(words); }  // the swapped form's A groups
  // Bytes per row of the split A and B (cache blocking).
  static std::int64_t a_row_bytes(const L& l) { return std::max<std::int64_t>(l.steps + l.tail, 1) * 64; }
  static std::int64_t b_row_bytes(const L& l) { return a_row_bytes(l); }
  static void split_a(const word_t* src, std::int64_t ld, std::int64_t count, std::int64_t, const L& l, __m256i* d) {
    kernels::split_a(src, ld, count, l, d);
  }
  static void split_b(const word_t* src, std::int64_t ld, std::int64_t count, std::int64_t, const L& l, __m256i* d) {
    kernels::split_b(src, ld, count, l, d);
  }
  static void micro(const __m256i* ag, const __m256i* bp, const L& l, std::int32_t k_bits, Out out[MR]) {
    micro_2x4(ag, bp, l, k_bits, out);
  }
  static void micro_t(const __m256i* ag, const __m256i* bp, const L& l, std::int32_t k_bits, Out out[MR]) {
    micro_2x4(ag, bp, l, k_bits, out);
  }
  static void store(Out v, std::int32_t* dst) { _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), v); }
};

struct Tile2x8 {
  static constexpr int NR = 8;
  using L = Layout8;
  using Out = __m256i;
  // The broadcast A layout takes twice the bytes per row: the same rows per block as 2x4
  // (a 64 x 8064-bit A in one block, not two that each re-split all of B).
  static constexpr std::int64_t kABlockBytes = 256 * 1024;
  static L layout(std::int64_t words) { return L{words / 2, words % 2}; }
  static L layout_t(std::int64_t words) { return L{words / 2, words % 2, true}; }  // see Layout8::half
  static std::int64_t a_row_bytes(const L& l) { return std::max<std::int64_t>(l.group_vecs() / MR, 2) * 32; }
  static std::int64_t b_row_bytes(const L& l) { return std::max<std::int64_t>(l.steps + l.tail, 1) * 32; }
  static void split_a(const word_t* src, std::int64_t ld, std::int64_t count, std::int64_t words, const L& l,
                      __m256i* d) {
    split_a8(src, ld, count, words, l, d);
  }
  static void split_b(const word_t* src, std::int64_t ld, std::int64_t count, std::int64_t words, const L& l,
                      __m256i* d) {
    split_b8(src, ld, count, words, l, d);
  }
  static void micro(const __m256i* ag, const __m256i* bp, const L& l, std::int32_t k_bits, Out out[MR]) {
    micro_2x8<false>(ag, bp, l, k_bits, out);
  }
  static void micro_t(const __m256i* ag, const __m256i* bp, const L& l, std::int32_t k_bits, Out out[MR]) {
    micro_2x8<true>(ag, bp, l, k_bits, out);  // layout_t's groups
  }
  static void store(Out v, std::int32_t* dst) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), v); }
};

// The blocked loop of run and run_packed. packed_b: B as pack_b's output for all its
// rows (n0 a multiple of NR), or nullptr to split B here, block by block.
template <class T>
void blocked(const word_t* a, std::int64_t lda, const word_t* b, std::int64_t ldb, const word_t* packed_b,
             std::int64_t m0, std::int64_t m1, std::int64_t n0, std::int64_t n1, std::int64_t words,
             std::int32_t k_bits, std::int32_t* c, std::int64_t ldc) {
  if (m1 <= m0 || n1 <= n0) return;
  constexpr int NR = T::NR;
  const typename T::L L = T::layout(words);
  // Block sizes: A block in L2 (kABlockBytes), B block ~96 KiB; both rounded to whole tiles.
  const std::int64_t mc = std::max<std::int64_t>(MR, (T::kABlockBytes / T::a_row_bytes(L)) / MR * MR);
  const std::int64_t nc = std::max<std::int64_t>(NR, (96 * 1024 / T::b_row_bytes(L)) / NR * NR);
  Scratch& sc = scratch();
  const std::int64_t mcap = std::min(mc, (m1 - m0 + MR - 1) / MR * MR);
  const std::int64_t ncap = std::min(nc, (n1 - n0 + NR - 1) / NR * NR);
  auto* abuf = reinterpret_cast<__m256i*>(
      sc.a.get(4 * static_cast<std::size_t>(std::max<std::int64_t>(mcap / MR * L.group_vecs(), 1))));
  __m256i* bbuf = packed_b ? nullptr
                           : reinterpret_cast<__m256i*>(sc.b.get(
                                 4 * static_cast<std::size_t>(std::max<std::int64_t>(ncap / NR * L.panel_vecs(), 1))));
  // Groups of A per L1 run (~16 KiB).
  const std::int64_t gsub = std::max<std::int64_t>(1, 16 * 1024 / (std::max<std::int64_t>(L.group_vecs(), 1) * 32));
  typename T::Out res[MR];
  for (std::int64_t mb = m0; mb < m1; mb += mc) {
    const std::int64_t mrows = std::min(mc, m1 - mb);
    const std::int64_t groups = (mrows + MR - 1) / MR;
    T::split_a(a + mb * lda, lda, mrows, words, L, abuf);
    for (std::int64_t nb = n0; nb < n1; nb += nc) {
      const std::int64_t ncols = std::min(nc, n1 - nb);
      const std::int64_t panels = (ncols + NR - 1) / NR;
      const __m256i* bblock;
      if (packed_b) {
        bblock = reinterpret_cast<const __m256i*>(packed_b) + nb / NR * L.panel_vecs();
      } else {
        T::split_b(b + nb * ldb, ldb, ncols, words, L, bbuf);
        bblock = bbuf;
      }
      // A in L1-sized runs of groups, each met by every panel of the B block: with a tall
      // A and a short B (a convolution: patch rows against 64 filters) every panel would
      // otherwise stream the whole A block from L2.
      for (std::int64_t g0 = 0; g0 < groups; g0 += gsub)
      for (std::int64_t p = 0; p < panels; ++p) {
        const __m256i* bp = bblock + p * L.panel_vecs();
        const int nv = static_cast<int>(std::min<std::int64_t>(NR, ncols - p * NR));
        for (std::int64_t g = g0; g < std::min(groups, g0 + gsub); ++g) {
          T::micro(abuf + g * L.group_vecs(), bp, L, k_bits, res);
          const int mv = static_cast<int>(std::min<std::int64_t>(MR, mrows - g * MR));
          std::int32_t* cr = c + (mb + g * MR) * ldc + nb + p * NR;
          for (int i = 0; i < mv; ++i) {
            if (nv == NR) {
              T::store(res[i], cr + i * ldc);
            } else {
              alignas(32) std::int32_t t[NR];
              T::store(res[i], t);
              for (int j = 0; j < nv; ++j) cr[i * ldc + j] = t[j];
            }
          }
        }
      }
    }
  }
}

// The swapped form (bgemm picks it when N pads to the panel width worse than M: a 7x7
// layer's N = 49 pixels against M = 64 filters): A given in panels (pack_b of A), rows of
// B split here in groups as A rows are in blocked(), and each tile's results, one vector
// per B row over 8 rows of A, stored transposed into c[m * ldc + n].
template <class T>
void blocked_t(const word_t* b, std::int64_t ldb, const word_t* packed_a, std::int64_t m0, std::int64_t m1,
               std::int64_t n0, std::int64_t n1, std::int64_t words, std::int32_t k_bits, std::int32_t* c,
               std::int64_t ldc) {
  if (m1 <= m0 || n1 <= n0) return;
  constexpr int NR = T::NR;
  const typename T::L L = T::layout_t(words);  // panel_vecs() as pack()'s layout
  const std::int64_t nc = std::max<std::int64_t>(MR, (T::kABlockBytes / T::a_row_bytes(L)) / MR * MR);
  const std::int64_t ncap = std::min(nc, (n1 - n0 + MR - 1) / MR * MR);
  auto* gbuf = reinterpret_cast<__m256i*>(
      scratch().a.get(4 * static_cast<std::size_t>(std::max<std::int64_t>(ncap / MR * L.group_vecs(), 1))));
  typename T::Out res[MR];
  for (std::int64_t nb = n0; nb < n1; nb += nc) {
    const std::int64_t nrows = std::min(nc, n1 - nb);
    const std::int64_t groups = (nrows + MR - 1) / MR;
    T::split_a(b + nb * ldb, ldb, nrows, words, L, gbuf);
    for (std::int64_t mb = m0; mb < m1; mb += NR) {
      const __m256i* ap = reinterpret_cast<const __m256i*>(packed_a) + mb / NR * L.panel_vecs();
      const int mv = static_cast<int>(std::min<std::int64_t>(NR, m1 - mb));
      for (std::int64_t g = 0; g < groups; ++g) {
        T::micro_t(gbuf + g * L.group_vecs(), ap, L, k_bits, res);
        const int nv = static_cast<int>(std::min<std::int64_t>(MR, nrows - g * MR));
        std::int32_t* cc = c + mb * ldc + nb + g * MR;
        if constexpr (NR == 8 && MR == 2) {
          if (nv == 2 && mv == 8) {
            // Whole tile: the two B rows' results are adjacent in every row of C; pair
            // them up (unpack) and store 8 bytes per row.
            const __m256i lo = _mm256_unpacklo_epi32(res[0], res[1]);  // C rows 0, 1 | 4, 5
            const __m256i hi = _mm256_unpackhi_epi32(res[0], res[1]);  // C rows 2, 3 | 6, 7
            const __m128i q[4] = {_mm256_castsi256_si128(lo), _mm256_castsi256_si128(hi),
                                  _mm256_extracti128_si256(lo, 1), _mm256_extracti128_si256(hi, 1)};
            for (int h = 0; h < 4; ++h) {
              _mm_storel_epi64(reinterpret_cast<__m128i*>(cc + (2 * h) * ldc), q[h]);
              _mm_storel_epi64(reinterpret_cast<__m128i*>(cc + (2 * h + 1) * ldc), _mm_unpackhi_epi64(q[h], q[h]));
            }
            continue;
          }
        }
        for (int i = 0; i < nv; ++i) {
          alignas(32) std::int32_t t[NR];
          T::store(res[i], t);
          for (int r = 0; r < mv; ++r) cc[r * ldc + i] = t[r];
        }
      }
    }
  }
}

template <class T>
std::int64_t packed_words(std::int64_t n, std::int64_t words) {
  // At least one vector per panel, so that K = 0 still has a (never read) buffer.
  return (n + T::NR - 1) / T::NR * std::max<std::int64_t>(T::layout(words).panel_vecs(), 1) * 4;
}

template <class T>
void pack(const word_t* b, std::int64_t ldb, std::int64_t n, std::int64_t words, word_t* out) {
  const typename T::L L = T::layout(words);
  if (L.panel_vecs() == 0) {
    std::fill(out, out + packed_words<T>(n, words), word_t{0});
    return;
  }
  T::split_b(b, ldb, n, words, L, reinterpret_cast<__m256i*>(out));
}
}  // namespace

void bgemm_2x4__avx2(BMX_BGEMM_ARGS) {
  blocked<Tile2x4>(a, lda, b, ldb, nullptr, m0, m1, n0, n1, words, k_bits, c, ldc);
}
std::int64_t bgemm_2x4__avx2_packed_b_words(std::int64_t n, std::int64_t words) {
  return packed_words<Tile2x4>(n, words);
}
void bgemm_2x4__avx2_pack_b(const word_t* b, std::int64_t ldb, std::int64_t n, std::int64_t words, word_t* out) {
  pack<Tile2x4>(b, ldb, n, words, out);
}
void bgemm_2x4__avx2_run_packed(const word_t* a, std::int64_t lda, const word_t* packed_b, std::int64_t m0,
                                std::int64_t m1, std::int64_t n0, std::int64_t n1, std::int64_t words,
                                std::int32_t k_bits, std::int32_t* c, std::int64_t ldc) {
  blocked<Tile2x4>(a, lda, nullptr, 0, packed_b, m0, m1, n0, n1, words, k_bits, c, ldc);
}

void bgemm_2x8__avx2(BMX_BGEMM_ARGS) {
  blocked<Tile2x8>(a, lda, b, ldb, nullptr, m0, m1, n0, n1, words, k_bits, c, ldc);
}
std::int64_t bgemm_2x8__avx2_packed_b_words(std::int64_t n, std::int64_t words) {
  return packed_words<Tile2x8>(n, words);
}
void bgemm_2x8__avx2_pack_b(const word_t* b, std::int64_t ldb, std::int64_t n, std::int64_t words, word_t* out) {
  pack<Tile2x8>(b, ldb, n, words, out);
}
void bgemm_2x8__avx2_run_packed(const word_t* a, std::int64_t lda, const word_t* packed_b, std::int64_t m0,
                                std::int64_t m1, std::int64_t n0, std::int64_t n1, std::int64_t words,
                                std::int32_t k_bits, std::int32_t* c, std::int64_t ldc) {
  blocked<Tile2x8>(a, lda, nullptr, 0, packed_b, m0, m1, n0, n1, words, k_bits, c, ldc);
}
void bgemm_2x8__avx2_run_packed_t(const word_t* b, std::int64_t ldb, const word_t* packed_a, std::int64_t m0,
                                  std::int64_t m1, std::int64_t n0, std::int64_t n1, std::int64_t words,
                                  std::int32_t k_bits, std::int32_t* c, std::int64_t ldc) {
  blocked_t<Tile2x8>(b, ldb, packed_a, m0, m1, n0, n1, words, k_bits, c, ldc);
}

}  // namespace bmx::kernels
