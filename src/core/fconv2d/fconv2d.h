// Direct float32 2-D convolution on NHWC activations (the full-precision stem and
// downsampling convs that BNNs keep: Bethge et al., "Back to Simplicity", 2019).
//
// The ImageNet stem (7x7/2, 3 -> 64 channels) is the largest single op of ResNetE-18 and
// BinaryDenseNet-28 in the engine; as im2col + SGEMM its K = 147 is awkward for BLAS and
// the im2col copy is 12544 x 147 floats. The direct kernel keeps an MR-pixel x 64-channel
// block of outputs in registers and streams the weights, reading input pixels in place.
//
// Input : [N, H, W] pixels at a stride of in_ps floats (channels 0..C_in-1 used).
// Weight: [KH][KW][C_in][C_out] (the runtime's GEMM B layout for one group), C_out % 16 == 0.
// Output: [N, OH, OW] pixels at a stride of out_ps floats; out = bias + conv, relu optional.
// Zero padding, any stride and dilation; groups are handled by the caller.
#pragma once

#include <cstdint>
#include <vector>

namespace bmx {
class ThreadPool;

struct FConv2DShape {
  std::int64_t batch = 1, in_h = 0, in_w = 0, in_c = 0, out_c = 0;
  std::int64_t kernel_h = 3, kernel_w = 3;
  std::int64_t stride_h = 1, stride_w = 1;
  std::int64_t pad_h = 0, pad_w = 0;  // zero padding on each side
  std::int64_t dilation_h = 1, dilation_w = 1;
  // > 1: the dense weight is block-diagonal (a grouped conv expanded, zeros outside the
  // groups' blocks); the kernel then skips the zero blocks (16 outputs at a time read only
  // the input channels of the groups they belong to). C_in and C_out divisible by it.
  std::int64_t groups = 1;
  std::int64_t out_h() const { return (in_h + 2 * pad_h - dilation_h * (kernel_h - 1) - 1) / stride_h + 1; }
  std::int64_t out_w() const { return (in_w + 2 * pad_w - dilation_w * (kernel_w - 1) - 1) / stride_w + 1; }
};

// The direct kernels, XNNPACK-named, best last; one list drives dispatch and the tests.
struct FConv2DKernel {
  const char* name;     // "fconv2d_6x64__avx512"
  bool (*available)();  // can this CPU run it?
  // Output rows [r0, r1) (flattened n, oy) of the whole convolution.
  void (*rows)(const float* in, std::int64_t in_ps, const float* w, const float* bias, bool relu,
               const FConv2DShape& s, float* out, std::int64_t out_ps, std::int64_t r0, std::int64_t r1);
};
const std::vector<FConv2DKernel>& fconv2d_kernels();
// The best kernel this CPU runs, or nullptr (no x86 AVX2 + FMA).
const FConv2DKernel* fconv2d_best_kernel();

// Whether fconv2d can run this shape on this CPU (AVX-512F, or AVX2 with FMA; C_out a
// multiple of 16); callers fall back to im2col + SGEMM otherwise.
bool fconv2d_supported(const FConv2DShape& s);

// Throws std::invalid_argument when !fconv2d_supported(s) (or `kernel` is given and not
// available) or the shape makes no sense. kernel: nullptr for the best available.
void fconv2d(const float* in, std::int64_t in_ps, const float* weight, const float* bias, bool relu,
             const FConv2DShape& s, float* out, std::int64_t out_ps, ThreadPool* pool = nullptr,
             const FConv2DKernel* kernel = nullptr);

}  // namespace bmx
