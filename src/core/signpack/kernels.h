// Fused BatchNorm + sign + bit-packing kernels behind bmx::sign_pack (internal; the list
// in signpack.cc names them). Each packs `pixels` pixels of `c` floats (pixel p at
// in + p * in_ps) into words_for_bits(c) words at out + p * words_for_bits(c):
// bit = (scale[c] * x + shift[c] < 0), product and sum each rounded (no FMA), NaN -> 0;
// tail bits 0. scale and shift are required, except by sign_pack__scalar (nullptr: x < 0).
#pragma once

#include <cstdint>

#include "bmx/convention.h"

namespace bmx::kernels {

using SignPackFn = void (*)(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps,
                            const float* scale, const float* shift, word_t* out);

void sign_pack__scalar(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps, const float* scale,
                       const float* shift, word_t* out);
// k-bit level packing (reference.h level_pack): pixel p's `planes` planes of
// words_for_bits(c) words at out + p * planes * words_for_bits(c); scale may be nullptr.
using LevelPackFn = void (*)(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps,
                             const float* scale, const float* shift, int planes, word_t* out);
// Plane i of one word of levels from the threshold masks[t] (bit set iff level >= t).
void level_planes(const word_t* masks, int planes, std::int64_t words, word_t* out);
void level_pack__scalar(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps, const float* scale,
                        const float* shift, int planes, word_t* out);
#if defined(BMX_ARCH_X86)
void level_pack__avx2(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps, const float* scale,
                      const float* shift, int planes, word_t* out);
void level_pack__avx512(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps, const float* scale,
                        const float* shift, int planes, word_t* out);
void sign_pack__avx2(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps, const float* scale,
                     const float* shift, word_t* out);
void sign_pack__avx512(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps, const float* scale,
                       const float* shift, word_t* out);
#endif

}  // namespace bmx::kernels
