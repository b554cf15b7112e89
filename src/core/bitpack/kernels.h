// Bit-packing kernels behind bmx::pack_rows (internal). Each packs `rows` rows of `k`
// values (row r at in + r * in_stride) into words_for_bits(k) words at
// out + r * out_stride, bit 1 iff value < 0 (NaN and -0.0 give 0), tail bits 0.
#pragma once

#include <cstdint>

#include "bmx/convention.h"

namespace bmx::kernels {

// The loop every packing kernel shares: full words from `full_word(x)` (64 values at x),
// the last partial word value by value. In an unnamed namespace on purpose: each kernel
// file compiles its own copy with its own ISA flags, and one merged inline copy built for
// AVX-512 must never end up in the portable kernel.
namespace {
template <typename T>
inline word_t pack_word_scalar(const T* x, int n) {
  word_t w = 0;
  for (int i = 0; i < n; ++i) w |= static_cast<word_t>(x[i] < T(0)) << i;
  return w;
}

template <typename T, typename FullWord>
inline void pack_rows_by_word(const T* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride, word_t* out,
                              std::int64_t out_stride, FullWord full_word) {
  const std::int64_t full = k / kWordBits;
  const int tail = static_cast<int>(k % kWordBits);
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* x = in + r * in_stride;
    word_t* o = out + r * out_stride;
    for (std::int64_t j = 0; j < full; ++j) o[j] = full_word(x + j * kWordBits);
    if (tail) o[full] = pack_word_scalar(x + full * kWordBits, tail);
  }
}
}  // namespace

using PackF32Fn = void (*)(const float*, std::int64_t, std::int64_t, std::int64_t, word_t*, std::int64_t);
using PackI8Fn = void (*)(const std::int8_t*, std::int64_t, std::int64_t, std::int64_t, word_t*, std::int64_t);

void pack_f32__scalar(const float* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride,
                      word_t* out, std::int64_t out_stride);
void pack_i8__scalar(const std::int8_t* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride,
                     word_t* out, std::int64_t out_stride);
#if defined(BMX_ARCH_X86)
void pack_f32__avx2(const float* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride,
                    word_t* out, std::int64_t out_stride);
void pack_i8__avx2(const std::int8_t* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride,
                   word_t* out, std::int64_t out_stride);
void pack_f32__avx512(const float* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride,
                      word_t* out, std::int64_t out_stride);
void pack_i8__avx512(const std::int8_t* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride,
                     word_t* out, std::int64_t out_stride);
#endif
#if defined(BMX_ARCH_ARM64) || defined(BMX_ARCH_ARM32) || defined(__ARM_NEON)
void pack_f32__neon(const float* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride,
                    word_t* out, std::int64_t out_stride);
void pack_i8__neon(const std::int8_t* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride,
                   word_t* out, std::int64_t out_stride);
#endif

// A named packing kernel (for tests and benchmarks; dispatch picks the best available).
struct PackKernel {
  const char* name;
  bool (*available)();
  PackF32Fn f32;
  PackI8Fn i8;
};
const PackKernel* pack_kernels(int* count);
const PackKernel& pack_kernel_auto();

}  // namespace bmx::kernels
