// Op kernels of the runtime on NHWC storage with a pixel stride (values may be channel
// slices of a larger buffer: concatenation in place). "pixels" counts all pixels of the
// batch (N * H * W); row r of a tensor starts at ptr + r * stride.
#pragma once

#include <cstddef>
#include <cstdint>

#include "bmx/convention.h"
#include "runtime/graph.h"

namespace bmx {
class ThreadPool;
}

namespace bmx::rt {

// Floats of scratch the float convolution needs.
std::size_t conv2d_work_floats(const OpNode& op, const ValueInfo& x, const ValueInfo& y, int batch, int threads);
void conv2d_float(const OpNode& op, const ValueInfo& x, const ValueInfo& y, int batch, const float* in,
                  std::int64_t in_ps, float* out, std::int64_t out_ps, float* work, int threads,
                  ThreadPool* pool);

// Load-time preparation of a BinaryConv2D (filters re-arranged for the kernel).
void prepare_binary_conv(OpNode& op, const ValueInfo& x);

// Bytes of scratch the binary convolution needs (int32 results, group-sliced input).
std::size_t bconv_work_bytes(const OpNode& op, const ValueInfo& x, const ValueInfo& y, int batch);
// Returns the seconds spent in the epilogue (scale * match + shift) when `timed`.
// residual (groups 1 only): added to the output in the epilogue (op.fused_residual).
double binary_conv2d(const OpNode& op, const ValueInfo& x, const ValueInfo& y, int batch, const word_t* in,
                     float* out, std::int64_t out_ps, void* work, ThreadPool* pool, bool timed,
                     const float* residual = nullptr, std::int64_t residual_ps = 0);

// bit_c = (scale[c] * x_c + shift[c] < 0); scale == nullptr: plain sign(x).
void sign_pack(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps, const float* scale,
               const float* shift, word_t* out, ThreadPool* pool);
// Portable form (also the test oracle of the SIMD form).
void sign_pack_portable(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps,
                        const float* scale, const float* shift, word_t* out);
#if defined(BMX_ARCH_X86)
void sign_pack_avx512(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps,
                      const float* scale, const float* shift, word_t* out);
void sign_pack_avx2(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps,
                    const float* scale, const float* shift, word_t* out);
#endif

void pool2d(const OpNode& op, const ValueInfo& x, const ValueInfo& y, int batch, const float* in,
            std::int64_t in_ps, float* out, std::int64_t out_ps, ThreadPool* pool);
void affine(const float* in, std::int64_t in_ps, float* out, std::int64_t out_ps, std::int64_t pixels,
            std::int64_t c, const float* scale, const float* shift, bool relu, ThreadPool* pool);
void add(const float* a, std::int64_t a_ps, const float* b, std::int64_t b_ps, float* out, std::int64_t out_ps,
         std::int64_t pixels, std::int64_t c, ThreadPool* pool);
void add_to_last_channels(const float* a, std::int64_t a_ps, std::int64_t ca, const float* b, std::int64_t b_ps,
                          std::int64_t cb, float* out, std::int64_t out_ps, std::int64_t pixels, ThreadPool* pool);
void copy_channels(const float* in, std::int64_t in_ps, float* out, std::int64_t out_ps, std::int64_t pixels,
                   std::int64_t c, ThreadPool* pool);
void channel_shuffle(const float* in, std::int64_t in_ps, float* out, std::int64_t out_ps, std::int64_t pixels,
                     std::int64_t c, std::int64_t groups, ThreadPool* pool);
// out[N, U] = x[N, F] * W^T + b; x rows at stride ldx.
void dense(const float* x, std::int64_t ldx, std::int64_t batch, std::int64_t f, const float* w,
           const float* b, std::int64_t units, float* out, ThreadPool* pool);
// NHWC (pixel stride ps) -> NCHW, and back (with the NaN/Inf check of inputs).
void nhwc_to_nchw(const float* in, std::int64_t ps, std::int64_t batch, std::int64_t c, std::int64_t hw,
                  float* out);
// Returns the flat index of the first non-finite input, or -1.
std::int64_t nchw_to_nhwc_checked(const float* in, std::int64_t batch, std::int64_t c, std::int64_t hw,
                                  float* out, std::int64_t ps, ThreadPool* pool = nullptr);

// Row-major SGEMM C[m, n] (ldc) = A[m, k] (lda) * B (k x n, ldb; or n x k when trans_b);
// OpenBLAS (single-threaded: bmx threads its own loops) or the reference loops.
void sgemm(std::int64_t m, std::int64_t n, std::int64_t k, const float* a, std::int64_t lda, const float* b,
           std::int64_t ldb, bool trans_b, float* c, std::int64_t ldc);
bool have_blas();

}  // namespace bmx::rt
