// Bit-packing: portable kernel and run-time dispatch (convention: bmx/convention.h).
#include "core/bitpack/bitpack.h"

#include "core/bitpack/kernels.h"
#include "core/common/cpu.h"
#include "core/common/threadpool.h"

namespace bmx {
namespace kernels {

namespace {
template <typename T>
void pack_scalar(const T* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride, word_t* out,
                 std::int64_t out_stride) {
  pack_rows_by_word(in, rows, k, in_stride, out, out_stride,
                    [](const T* x) { return pack_word_scalar(x, static_cast<int>(kWordBits)); });
}

bool always() { return true; }
#if defined(BMX_ARCH_X86)
bool has_avx2() { return cpu_features().avx2; }
bool has_avx512bw() { return cpu_features().avx512_vpopcntdq; }  // set only with avx512f + bw + vl
#endif
#if defined(BMX_ARCH_ARM64) || defined(BMX_ARCH_ARM32) || defined(__ARM_NEON)
bool has_neon() { return cpu_features().neon; }
#endif

const PackKernel kPackKernels[] = {
    {"pack__scalar", &always, &pack_f32__scalar, &pack_i8__scalar},
#if defined(BMX_ARCH_X86)
    {"pack__avx2", &has_avx2, &pack_f32__avx2, &pack_i8__avx2},
    {"pack__avx512", &has_avx512bw, &pack_f32__avx512, &pack_i8__avx512},
#endif
#if defined(BMX_ARCH_ARM64) || defined(BMX_ARCH_ARM32) || defined(__ARM_NEON)
    {"pack__neon", &has_neon, &pack_f32__neon, &pack_i8__neon},
#endif
};
}  // namespace

void pack_f32__scalar(const float* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride,
                      word_t* out, std::int64_t out_stride) {
  pack_scalar(in, rows, k, in_stride, out, out_stride);
}
void pack_i8__scalar(const std::int8_t* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride,
                     word_t* out, std::int64_t out_stride) {
  pack_scalar(in, rows, k, in_stride, out, out_stride);
}

const PackKernel* pack_kernels(int* count) {
  *count = static_cast<int>(sizeof(kPackKernels) / sizeof(kPackKernels[0]));
  return kPackKernels;
}

const PackKernel& pack_kernel_auto() {
  static const PackKernel* best = [] {
    int n = 0;
    const PackKernel* ks = pack_kernels(&n);
    const PackKernel* b = &ks[0];
    for (int i = 1; i < n; ++i)
      if (ks[i].available()) b = &ks[i];  // later entries are faster
    return b;
  }();
  return *best;
}

}  // namespace kernels

namespace {
template <typename T, typename Fn>
void pack_dispatch(Fn fn, const T* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride,
                   word_t* out, std::int64_t out_stride, ThreadPool* pool) {
  if (rows <= 0 || k <= 0) return;
  // Threads only pay off for a few thousand words.
  if (pool == nullptr || rows * k < (std::int64_t{1} << 15)) {
    fn(in, rows, k, in_stride, out, out_stride);
    return;
  }
  parallel_for(pool, rows, [&](std::int64_t b, std::int64_t e) {
    fn(in + b * in_stride, e - b, k, in_stride, out + b * out_stride, out_stride);
  });
}
}  // namespace

void pack_rows(const float* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride, word_t* out,
               std::int64_t out_stride, ThreadPool* pool) {
  pack_dispatch(kernels::pack_kernel_auto().f32, in, rows, k, in_stride, out, out_stride, pool);
}

void pack_rows(const std::int8_t* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride, word_t* out,
               std::int64_t out_stride, ThreadPool* pool) {
  pack_dispatch(kernels::pack_kernel_auto().i8, in, rows, k, in_stride, out, out_stride, pool);
}

}  // namespace bmx
