// Fused BatchNorm + sign + bit-packing: the portable kernel, the kernel list and the
// threaded dispatch.
#include "core/signpack/signpack.h"

#include <algorithm>

#include "core/bitpack/bitpack.h"
#include "core/common/cpu.h"
#include "core/common/threadpool.h"

namespace bmx {

namespace kernels {

void sign_pack__scalar(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps, const float* scale,
                       const float* shift, word_t* out) {
  const std::int64_t words = words_for_bits(c);
  for (std::int64_t p = 0; p < pixels; ++p) {
    const float* x = in + p * in_ps;
    word_t* o = out + p * words;
    for (std::int64_t j = 0; j < words; ++j) {
      const std::int64_t c0 = j * kWordBits, c1 = std::min(c, c0 + kWordBits);
      word_t w = 0;
      if (scale) {
        for (std::int64_t ch = c0; ch < c1; ++ch) {
          const float v = scale[ch] * x[ch] + shift[ch];
          w |= static_cast<word_t>(v < 0.0f) << (ch - c0);
        }
      } else {
        for (std::int64_t ch = c0; ch < c1; ++ch) w |= static_cast<word_t>(x[ch] < 0.0f) << (ch - c0);
      }
      o[j] = w;
    }
  }
}

// Levels by thresholds: L = #{t in 1..n : u >= t - 0.5} for u = clip(v, 0, 1) * n is the
// round-half-up of u (exact: t - 0.5 is a float), and for a count, bit i of L is the parity
// of the thresholds t <= L that are multiples of 2^i: plane i = xor of those masks. The
// unclipped v * n crosses the same thresholds (products are monotone; 1 * n = n).
void level_planes(const word_t* masks, int planes, std::int64_t words, word_t* out) {
  const int n = (1 << planes) - 1;
  for (int i = 0; i < planes; ++i) {
    word_t w = 0;
    for (int t = 1 << i; t <= n; t += 1 << i) w ^= masks[t];
    out[i * words] = w;
  }
}

void level_pack__scalar(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps, const float* scale,
                        const float* shift, int planes, word_t* out) {
  const std::int64_t words = words_for_bits(c);
  const int n = (1 << planes) - 1;
  for (std::int64_t p = 0; p < pixels; ++p) {
    const float* x = in + p * in_ps;
    for (std::int64_t j = 0; j < words; ++j) {
      const std::int64_t c0 = j * kWordBits, c1 = std::min(c, c0 + kWordBits);
      word_t masks[16] = {};
      for (std::int64_t ch = c0; ch < c1; ++ch) {
        const float u = (scale ? scale[ch] * x[ch] + shift[ch] : x[ch]) * static_cast<float>(n);
        for (int t = 1; t <= n; ++t) masks[t] |= static_cast<word_t>(u >= t - 0.5f) << (ch - c0);
      }
      level_planes(masks, planes, words, out + p * planes * words + j);
    }
  }
}

}  // namespace kernels

namespace {
bool always() { return true; }
#if defined(BMX_ARCH_X86)
bool has_avx2() { return cpu_features().avx2; }
bool has_avx512f() { return cpu_features().avx512f; }
#endif
}  // namespace

const std::vector<SignPackKernel>& sign_pack_kernels() {
  static const std::vector<SignPackKernel> list = {
      {"sign_pack__scalar", &always, &kernels::sign_pack__scalar},
#if defined(BMX_ARCH_X86)
      {"sign_pack__avx2", &has_avx2, &kernels::sign_pack__avx2},
      {"sign_pack__avx512", &has_avx512f, &kernels::sign_pack__avx512},
#endif
  };
  return list;
}

const SignPackKernel& sign_pack_best_kernel() {
  static const SignPackKernel* best = [] {
    const SignPackKernel* b = &sign_pack_kernels().front();
    for (const auto& k : sign_pack_kernels())
      if (k.available()) b = &k;  // later entries are faster
    return b;
  }();
  return *best;
}

const std::vector<LevelPackKernel>& level_pack_kernels() {
  static const std::vector<LevelPackKernel> list = {
      {"level_pack__scalar", &always, &kernels::level_pack__scalar},
#if defined(BMX_ARCH_X86)
      {"level_pack__avx2", &has_avx2, &kernels::level_pack__avx2},
      {"level_pack__avx512", &has_avx512f, &kernels::level_pack__avx512},
#endif
  };
  return list;
}

void level_pack(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps, const float* scale,
                const float* shift, int planes, word_t* out, ThreadPool* pool) {
  if (pixels <= 0) return;
  static const kernels::LevelPackFn fn = [] {
    kernels::LevelPackFn best = level_pack_kernels().front().run;
    for (const auto& k : level_pack_kernels())
      if (k.available()) best = k.run;  // later entries are faster
    return best;
  }();
  const std::int64_t stride = planes * words_for_bits(c);
  if (!pool || pixels < 2 * 64) {
    fn(in, pixels, c, in_ps, scale, shift, planes, out);
    return;
  }
  parallel_for(pool, pixels, [&](std::int64_t p0, std::int64_t p1) {
    fn(in + p0 * in_ps, p1 - p0, c, in_ps, scale, shift, planes, out + p0 * stride);
  });
}

void sign_pack(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps, const float* scale,
               const float* shift, word_t* out, ThreadPool* pool) {
  const std::int64_t words = words_for_bits(c);
  if (!scale) {
    pack_rows(in, pixels, c, in_ps, out, words, pool);  // bmx kernel (SIMD dispatch inside)
    return;
  }
  if (pixels <= 0) return;
  const kernels::SignPackFn fn = sign_pack_best_kernel().run;
  // Tiny jobs stay on the calling thread.
  if (!pool || pixels < 2 * 64) {
    fn(in, pixels, c, in_ps, scale, shift, out);
    return;
  }
  parallel_for(pool, pixels, [&](std::int64_t p0, std::int64_t p1) {
    fn(in + p0 * in_ps, p1 - p0, c, in_ps, scale, shift, out + p0 * words);
  });
}

}  // namespace bmx
