// Fused BatchNorm + sign + bit-packing (dispatching entry point): the Sign op of a binary
// layer with its BatchNorm folded into a per-channel scale and shift (Bethge et al.,
// "BMXNet 2", 2019). Convention: bmx/convention.h; source of truth: reference.h.
#pragma once

#include <cstdint>
#include <vector>

#include "bmx/convention.h"
#include "core/signpack/kernels.h"

namespace bmx {
class ThreadPool;

// The kernels, XNNPACK-named, portable first and best last; one list drives dispatch,
// the tests and the benchmarks. Every kernel but the portable one needs scale and shift.
struct SignPackKernel {
  const char* name;     // "sign_pack__avx512"
  bool (*available)();  // can this CPU run it?
  kernels::SignPackFn run;
};
const std::vector<SignPackKernel>& sign_pack_kernels();
// The best kernel this CPU runs (the portable one at worst).
const SignPackKernel& sign_pack_best_kernel();

// bit c of pixel p = (scale[c] * x + shift[c] < 0), x = in[p * in_ps + c]; scale ==
// nullptr: plain sign (x < 0, bmx::pack_rows). Output: words_for_bits(c) words per pixel.
void sign_pack(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps, const float* scale,
               const float* shift, word_t* out, ThreadPool* pool = nullptr);

// k-bit activations (reference.h level_pack): L = round(clip(scale[c] * x + shift[c], 0, 1)
// * (2^planes - 1)) as `planes` bit planes per pixel (planes * words_for_bits(c) words);
// scale == nullptr: x itself. 1 <= planes <= 4.
struct LevelPackKernel {
  const char* name;     // "level_pack__avx2"
  bool (*available)();
  kernels::LevelPackFn run;
};
const std::vector<LevelPackKernel>& level_pack_kernels();
void level_pack(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps, const float* scale,
                const float* shift, int planes, word_t* out, ThreadPool* pool = nullptr);

}  // namespace bmx
