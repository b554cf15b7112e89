// Direct float convolution: shape checks, the kernel list, dispatch and threading.
#include "core/fconv2d/fconv2d.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "core/common/cpu.h"
#include "core/common/threadpool.h"

namespace bmx {

#if defined(BMX_ARCH_X86)
namespace kernels {
void fconv2d_rows__avx512(const float* in, std::int64_t in_ps, const float* w, const float* bias, bool relu,
                          const FConv2DShape& s, float* out, std::int64_t out_ps, std::int64_t r0, std::int64_t r1);
void fconv2d_rows__avx2(const float* in, std::int64_t in_ps, const float* w, const float* bias, bool relu,
                        const FConv2DShape& s, float* out, std::int64_t out_ps, std::int64_t r0, std::int64_t r1);
}  // namespace kernels
#endif

namespace {
[[maybe_unused]] bool shape_ok(const FConv2DShape& s) {
  return s.batch >= 1 && s.in_h >= 1 && s.in_w >= 1 && s.in_c >= 1 && s.out_c >= 1 && s.kernel_h >= 1 &&
         s.kernel_w >= 1 && s.stride_h >= 1 && s.stride_w >= 1 && s.pad_h >= 0 && s.pad_w >= 0 &&
         s.dilation_h >= 1 && s.dilation_w >= 1 && s.out_h() >= 1 && s.out_w() >= 1 &&
         s.in_h + 2 * s.pad_h >= s.dilation_h * (s.kernel_h - 1) + 1 &&
         s.in_w + 2 * s.pad_w >= s.dilation_w * (s.kernel_w - 1) + 1 && s.groups >= 1 &&
         s.in_c % s.groups == 0 && s.out_c % s.groups == 0;
}
#if defined(BMX_ARCH_X86)
bool has_avx512f() { return cpu_features().avx512f; }
bool has_avx2_fma() { return cpu_features().avx2 && cpu_features().fma; }
#endif
}  // namespace

const std::vector<FConv2DKernel>& fconv2d_kernels() {
  static const std::vector<FConv2DKernel> list = {
#if defined(BMX_ARCH_X86)
      {"fconv2d_6x16__avx2", &has_avx2_fma, &kernels::fconv2d_rows__avx2},
      {"fconv2d_6x64__avx512", &has_avx512f, &kernels::fconv2d_rows__avx512},
#endif
  };
  return list;
}

const FConv2DKernel* fconv2d_best_kernel() {
  const FConv2DKernel* best = nullptr;
  for (const auto& k : fconv2d_kernels())
    if (k.available()) best = &k;
  return best;
}

bool fconv2d_supported(const FConv2DShape& s) {
  return fconv2d_best_kernel() != nullptr && s.out_c % 16 == 0 && shape_ok(s);
}

void fconv2d(const float* in, std::int64_t in_ps, const float* weight, const float* bias, bool relu,
             const FConv2DShape& s, float* out, std::int64_t out_ps, ThreadPool* pool, const FConv2DKernel* kernel) {
  if (!fconv2d_supported(s))
    throw std::invalid_argument(
        "fconv2d: shape or CPU not supported (needs AVX-512F or AVX2 with FMA, and C_out % 16 == 0; C_out = " +
        std::to_string(s.out_c) + ")");
  if (kernel != nullptr && !kernel->available())
    throw std::invalid_argument(std::string("fconv2d: kernel ") + kernel->name + " is not available on this CPU");
  if (in_ps < s.in_c || out_ps < s.out_c) throw std::invalid_argument("fconv2d: pixel stride below channel count");
  const FConv2DKernel& k = kernel ? *kernel : *fconv2d_best_kernel();
  const std::int64_t rows = s.batch * s.out_h();
  const std::int64_t threads = pool ? pool->num_threads() : 1;
  // A few rows per chunk, claimed one at a time (balance; a descheduled thread holds up
  // only its chunk).
  const std::int64_t grain = std::max<std::int64_t>(1, rows / (threads * 8));
  parallel_for_dynamic(pool, rows, grain, [&](std::int64_t r0, std::int64_t r1) {
    k.rows(in, in_ps, weight, bias, relu, s, out, out_ps, r0, r1);
  });
}

}  // namespace bmx
