// Direct float convolution: shape checks, dispatch and threading (kernel: __avx512).
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
}
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
}  // namespace

bool fconv2d_supported(const FConv2DShape& s) {
#if defined(BMX_ARCH_X86)
  return cpu_features().avx512f && s.out_c % 16 == 0 && shape_ok(s);
#else
  (void)s;
  return false;
#endif
}

void fconv2d(const float* in, std::int64_t in_ps, const float* weight, const float* bias, bool relu,
             const FConv2DShape& s, float* out, std::int64_t out_ps, ThreadPool* pool) {
  if (!fconv2d_supported(s))
    throw std::invalid_argument("fconv2d: shape or CPU not supported (needs AVX-512F and C_out % 16 == 0; C_out = " +
                                std::to_string(s.out_c) + ")");
  if (in_ps < s.in_c || out_ps < s.out_c) throw std::invalid_argument("fconv2d: pixel stride below channel count");
#if defined(BMX_ARCH_X86)
  const std::int64_t rows = s.batch * s.out_h();
  const std::int64_t threads = pool ? pool->num_threads() : 1;
  // A few rows per chunk, claimed one at a time (balance; a descheduled thread holds up
  // only its chunk).
  const std::int64_t grain = std::max<std::int64_t>(1, rows / (threads * 8));
  parallel_for_dynamic(pool, rows, grain, [&](std::int64_t r0, std::int64_t r1) {
    kernels::fconv2d_rows__avx512(in, in_ps, weight, bias, relu, s, out, out_ps, r0, r1);
  });
#else
  (void)in, (void)weight, (void)bias, (void)relu, (void)out, (void)pool;
#endif
}

}  // namespace bmx
