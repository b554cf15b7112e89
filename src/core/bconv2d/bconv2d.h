// Binary 2-D convolution on bit-packed NHWC activations (Rastegari et al., XNOR-Net,
// 2016; Bethge et al., BMXNet 2, 2019), with -1 padding, stride and dilation.
//
// Input : [N, H, W, in_words] packed words, in_words = words_for_bits(C_in); channel c
//         of a pixel is bit c % 64 of word c / 64; tail bits 0.
// Filter: [C_out, KH, KW, in_words] packed words, same layout.
// Output: int32 [N, OH, OW, C_out] holding the +-1 dot product
//         dot = K - 2 * popcount, K = C_in * KH * KW.  Padded positions are -1 (all-ones
//         words), so no correction term is needed.
// groups: not supported here (bmx's binary convs are dense); the runtime splits groups.
#pragma once

#include <cstdint>

#include "bmx/convention.h"

namespace bmx {
class ThreadPool;
struct BgemmKernel;

struct BConv2DShape {
  std::int64_t batch = 1, in_h = 0, in_w = 0, in_c = 0, out_c = 0;
  std::int64_t kernel_h = 3, kernel_w = 3;
  std::int64_t stride_h = 1, stride_w = 1;
  std::int64_t pad_h = 0, pad_w = 0;  // -1 padding on each side
  std::int64_t dilation_h = 1, dilation_w = 1;
  std::int64_t out_h() const { return (in_h + 2 * pad_h - dilation_h * (kernel_h - 1) - 1) / stride_h + 1; }
  std::int64_t out_w() const { return (in_w + 2 * pad_w - dilation_w * (kernel_w - 1) - 1) / stride_w + 1; }
  std::int64_t in_words() const { return words_for_bits(in_c); }
  std::int32_t k_bits() const { return static_cast<std::int32_t>(in_c * kernel_h * kernel_w); }
};

// Throws std::invalid_argument on a shape that makes no sense (non-positive sizes,
// empty output).
// packed_filter (optional, all int32 forms): bconv2d_pack_filter's output for `kernel`
// (filters arranged once, as a loaded model holds them); nullptr: `filter` is re-arranged
// inside every call.
void bconv2d(const word_t* input, const word_t* filter, const BConv2DShape& s, std::int32_t* out,
             ThreadPool* pool = nullptr, const BgemmKernel* kernel = nullptr, const word_t* packed_filter = nullptr);

// The same with the input given as float32 / int8 NHWC values (bit 1 iff value < 0), packed
// inside the convolution's own parallel loop (each block packs the rows it reads).
void bconv2d(const float* input, const word_t* filter, const BConv2DShape& s, std::int32_t* out,
             ThreadPool* pool = nullptr, const BgemmKernel* kernel = nullptr, const word_t* packed_filter = nullptr);
void bconv2d(const std::int8_t* input, const word_t* filter, const BConv2DShape& s, std::int32_t* out,
             ThreadPool* pool = nullptr, const BgemmKernel* kernel = nullptr, const word_t* packed_filter = nullptr);

// Float output fused into the convolution (a binary layer's BatchNorm / scale epilogue):
//   out[p * out_ps + c] = relu?(scale[c] * match + shift[c]) (+ residual),  match = (dot + K) / 2,
// computed block by block while the block's int32 results are still in cache (no
// full-size int32 buffer, no second pass). scale == nullptr: 1; shift == nullptr: 0.
struct BConvOutput {
  const float* scale = nullptr;
  const float* shift = nullptr;
  bool relu = false;
  float* out = nullptr;
  std::int64_t out_ps = 0;  // floats per output pixel (>= out_c: a slice of a wider tensor)
  // Optional residual added last (a following element-wise Add fused in):
  //   out = relu?(scale * match + shift) + residual[p * residual_ps + c].
  const float* residual = nullptr;
  std::int64_t residual_ps = 0;
};

// The filter re-arranged for `kernel` by bconv2d_pack_filter (e.g. once at model load);
// empty when the kernel has no packed form (then bconv2d uses the plain filter).
std::int64_t bconv2d_packed_filter_words(const BConv2DShape& s, const BgemmKernel& kernel);
void bconv2d_pack_filter(const word_t* filter, const BConv2DShape& s, const BgemmKernel& kernel, word_t* out);

// packed_filter: bconv2d_pack_filter's output for `kernel` (or nullptr).
void bconv2d(const word_t* input, const word_t* filter, const BConv2DShape& s, const BConvOutput& out,
             ThreadPool* pool = nullptr, const BgemmKernel* kernel = nullptr,
             const word_t* packed_filter = nullptr);

}  // namespace bmx
