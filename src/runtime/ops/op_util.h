// Helpers shared by the op files (ops/<op>.cc) and the engine: threading of simple loops,
// SGEMM, channel copies and the layout conversions at the model's input and output.
// Storage is NHWC with a pixel stride (values may be channel slices of a larger buffer:
// concatenation in place); "pixels" counts all pixels of the batch (N * H * W).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "bmx/convention.h"
#include "core/common/threadpool.h"

namespace bmx::rt {

inline float relu_if(float v, bool relu) { return relu ? std::max(v, 0.0f) : v; }

// Row-major SGEMM C[m, n] (ldc) = A[m, k] (lda) * B (k x n, ldb; or n x k when trans_b);
// OpenBLAS (single-threaded: bmx threads its own loops) or the reference loops.
void sgemm(std::int64_t m, std::int64_t n, std::int64_t k, const float* a, std::int64_t lda, const float* b,
           std::int64_t ldb, bool trans_b, float* c, std::int64_t ldc);
bool have_blas();

void copy_channels(const float* in, std::int64_t in_ps, float* out, std::int64_t out_ps, std::int64_t pixels,
                   std::int64_t c, ThreadPool* pool);
// out = relu?(in * scale + shift) per channel; scale == nullptr: out = relu?(in) (ops/affine.cc).
void affine(const float* in, std::int64_t in_ps, float* out, std::int64_t out_ps, std::int64_t pixels,
            std::int64_t c, const float* scale, const float* shift, bool relu, ThreadPool* pool);

// NHWC (pixel stride ps) -> NCHW, and back (with the NaN/Inf check of inputs).
void nhwc_to_nchw(const float* in, std::int64_t ps, std::int64_t batch, std::int64_t c, std::int64_t hw,
                  float* out);
// Returns the flat index of the first non-finite input, or -1.
std::int64_t nchw_to_nhwc_checked(const float* in, std::int64_t batch, std::int64_t c, std::int64_t hw,
                                  float* out, std::int64_t ps, ThreadPool* pool = nullptr);

}  // namespace bmx::rt
