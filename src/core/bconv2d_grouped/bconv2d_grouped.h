// Grouped binary 2-D convolution with its float epilogue: a BinaryConv2D layer with
// groups > 1 (Bethge et al., "BMXNet 2", 2019; -1 padding, stride, dilation).
//
// Each group's input channels are cut out of the packed input as packed rows of their
// own (a bit-level shift, portable), then convolved by bconv2d (its bgemm kernels are
// the arch-specific part, dispatched by the CPU or chosen by `kernel`), then the epilogue
//   out[p * out_ps + g * og + c] = relu?(scale * match + shift),  match = (dot + K) / 2,
// runs per group over the int32 results (product and sum each rounded, no FMA).
//
// Shape s: the whole convolution (in_c = C_in, out_c = C_out); `groups` divides both.
// Input : [N, H, W, words_for_bits(C_in)] packed words, tail bits 0.
// Filter: [C_out][KH][KW][words_for_bits(C_in / groups)]; group g owns filters
//         [g * C_out / groups, (g + 1) * C_out / groups).
// K = C_in / groups * KH * KW. Source of truth: reference.h.
#pragma once

#include <cstddef>
#include <cstdint>

#include "bmx/convention.h"
#include "core/bconv2d/bconv2d.h"

namespace bmx {
class ThreadPool;
struct BgemmKernel;

// Bytes of scratch bconv2d_grouped needs (64-byte aligned int32 results of one group,
// then the group's packed input slice).
std::size_t bconv2d_grouped_work_bytes(const BConv2DShape& s, std::int64_t groups);

// out.scale and out.shift are required, out.residual must be nullptr (std::invalid_argument
// otherwise, and for groups that do not divide C_in and C_out). work: at least
// bconv2d_grouped_work_bytes(s, groups) bytes, 8-byte aligned. epilogue_seconds (optional):
// receives the time spent in the epilogues.
void bconv2d_grouped(const word_t* input, const word_t* filter, const BConv2DShape& s, std::int64_t groups,
                     const BConvOutput& out, void* work, ThreadPool* pool = nullptr,
                     const BgemmKernel* kernel = nullptr, double* epilogue_seconds = nullptr);

// Channels [bit0, bit0 + cg) of every pixel (in_words words each) as packed rows of
// words_for_bits(cg) words, tail bits 0. The portable slicing kernel of bconv2d_grouped.
void slice_channels(const word_t* in, std::int64_t pixels, std::int64_t in_words, std::int64_t bit0,
                    std::int64_t cg, word_t* out, ThreadPool* pool = nullptr);

}  // namespace bmx
