// Float-side op kernels of the runtime (NHWC, strided pixels). The binary convolution
// itself is bmx::bconv2d (src/core); this file adds its epilogue and group splitting.
#include "runtime/ops.h"

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/bconv2d/bconv2d.h"
#include "core/bgemm/bgemm.h"
#include "core/fconv2d/fconv2d.h"
#include "core/bitpack/bitpack.h"
#include "core/common/cpu.h"
#include "core/common/threadpool.h"

#if defined(BMX_HAVE_CBLAS)
#include <cblas.h>
// OpenBLAS's own threads would fight bmx's pool: pin it to one thread when it is OpenBLAS
// (weak, so any other CBLAS links too).
extern "C" void openblas_set_num_threads(int) __attribute__((weak));
#endif

namespace bmx::rt {

namespace {

// Split [0, n) over the pool in contiguous parts; tiny jobs stay on the calling thread.
template <typename F>
void pfor(ThreadPool* pool, std::int64_t n, std::int64_t min_per_task, F&& fn) {
  if (n <= 0) return;
  if (!pool || n < 2 * min_per_task) {
    fn(std::int64_t{0}, n);
    return;
  }
  parallel_for(pool, n, [&](std::int64_t b, std::int64_t e) { fn(b, e); });
}

inline float relu_if(float v, bool relu) { return relu ? std::max(v, 0.0f) : v; }

}  // namespace

bool have_blas() {
#if defined(BMX_HAVE_CBLAS)
  return true;
#else
  return false;
#endif
}

void sgemm(std::int64_t m, std::int64_t n, std::int64_t k, const float* a, std::int64_t lda, const float* b,
           std::int64_t ldb, bool trans_b, float* c, std::int64_t ldc) {
  if (m <= 0 || n <= 0) return;
#if defined(BMX_HAVE_CBLAS)
  static const bool pinned = [] {
    if (openblas_set_num_threads) openblas_set_num_threads(1);
    return true;
  }();
  (void)pinned;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), 1.0f, a, static_cast<int>(lda), b, static_cast<int>(ldb),
              0.0f, c, static_cast<int>(ldc));
#else
  for (std::int64_t i = 0; i < m; ++i) {
    float* ci = c + i * ldc;
    for (std::int64_t j = 0; j < n; ++j) ci[j] = 0.0f;
    const float* ai = a + i * lda;
    if (!trans_b) {
      for (std::int64_t p = 0; p < k; ++p) {
        const float av = ai[p];
        const float* bp = b + p * ldb;
        for (std::int64_t j = 0; j < n; ++j) ci[j] += av * bp[j];
      }
    } else {
      for (std::int64_t j = 0; j < n; ++j) {
        const float* bj = b + j * ldb;
        float s = 0.0f;
        for (std::int64_t p = 0; p < k; ++p) s += ai[p] * bj[p];
        ci[j] = s;
      }
    }
  }
#endif
}

// ---------------------------------------------------------------- float convolution

namespace {

bool conv_is_pointwise(const OpNode& op) {
  return op.kh == 1 && op.kw == 1 && op.sh == 1 && op.sw == 1 && op.ph == 0 && op.pw == 0;
}

// Grouped convs with small groups (MeliusNet's grouped stem: 8 outputs per group) make
// per-group GEMMs tiny; a direct loop over taps is several times faster there.
// (Groups up to 8 are expanded at load instead, see OpNode::exec_groups.)
bool conv_is_direct(const OpNode& op, std::int64_t in_c) {
  const std::int64_t cg = in_c / op.exec_groups, og = op.out_c / op.exec_groups;
  return op.exec_groups > 1 && !conv_is_pointwise(op) && (og < 32 || cg < 16);
}

FConv2DShape fconv_shape(const OpNode& op, const ValueInfo& x, int batch) {
  FConv2DShape s;
  s.batch = batch, s.in_h = x.h, s.in_w = x.w, s.in_c = x.c, s.out_c = op.out_c;
  s.kernel_h = op.kh, s.kernel_w = op.kw, s.stride_h = op.sh, s.stride_w = op.sw;
  s.pad_h = op.ph, s.pad_w = op.pw, s.dilation_h = op.dh, s.dilation_w = op.dw;
  // Expanded small groups (exec_groups 1) are block-diagonal: the kernel skips the zeros.
  s.groups = op.exec_groups == 1 ? op.groups : 1;
  return s;
}

// Dense (or block-diagonal expanded) spatial convs run as a direct convolution where the
// CPU has AVX-512 or AVX2 + FMA (core/fconv2d): no im2col copy; the ImageNet stem at 224
// takes 1.8 ms with AVX-512 instead of 3.2 ms as im2col + SGEMM (K = 147 is awkward for
// BLAS), MeliusNet's grouped stem skips the zero blocks of its expanded weights.
bool conv_is_fdirect(const OpNode& op, const ValueInfo& x, const ValueInfo& y, int batch) {
  if (op.exec_groups != 1 || conv_is_pointwise(op)) return false;
  const FConv2DShape s = fconv_shape(op, x, batch);
  return fconv2d_supported(s) && s.out_h() == y.h && s.out_w() == y.w;
}

BMX_SIMD_CLONES void bias_relu_rows(float* out, std::int64_t out_ps, std::int64_t m0, std::int64_t m1, std::int64_t c,
                                    const float* bias, bool relu) {
  for (std::int64_t r = m0; r < m1; ++r) {
    float* o = out + r * out_ps;
    if (relu) {
      for (std::int64_t ch = 0; ch < c; ++ch) o[ch] = std::max(o[ch] + bias[ch], 0.0f);
    } else {
      for (std::int64_t ch = 0; ch < c; ++ch) o[ch] = o[ch] + bias[ch];
    }
  }
}

// Direct grouped convolution over output rows [r0, r1) (row = n * OH + oy), NHWC.
void conv_direct_rows(const OpNode& op, const ValueInfo& x, const ValueInfo& y, const float* in, std::int64_t in_ps,
                      float* out, std::int64_t out_ps, std::int64_t r0, std::int64_t r1) {
  const std::int64_t cg = x.c / op.exec_groups, og = op.out_c / op.exec_groups;
  const float* w = op.w.data();  // [g][KH][KW][cg][og]
  const float* bias = op.b.data();
  for (std::int64_t r = r0; r < r1; ++r) {
    const std::int64_t n = r / y.h, oy = r % y.h;
    for (std::int64_t ox = 0; ox < y.w; ++ox) {
      float* o = out + ((n * y.h + oy) * y.w + ox) * out_ps;
      for (std::int64_t c = 0; c < op.out_c; ++c) o[c] = bias[c];
      for (std::int64_t i = 0; i < op.kh; ++i) {
        const std::int64_t iy = oy * op.sh - op.ph + i * op.dh;
        if (iy < 0 || iy >= x.h) continue;
        for (std::int64_t j = 0; j < op.kw; ++j) {
          const std::int64_t ix = ox * op.sw - op.pw + j * op.dw;
          if (ix < 0 || ix >= x.w) continue;  // zero padding contributes nothing
          const float* xp = in + ((n * x.h + iy) * x.w + ix) * in_ps;
          for (std::int64_t g = 0; g < op.exec_groups; ++g) {
            float* og_out = o + g * og;
            const float* wg = w + ((g * op.kh + i) * op.kw + j) * cg * og;
            for (std::int64_t c = 0; c < cg; ++c) {
              const float xv = xp[g * cg + c];
              const float* wr = wg + c * og;
              for (std::int64_t q = 0; q < og; ++q) og_out[q] += xv * wr[q];
            }
          }
        }
      }
      if (op.relu)
        for (std::int64_t c = 0; c < op.out_c; ++c) o[c] = std::max(o[c], 0.0f);
    }
  }
}

struct ConvTiling {
  std::int64_t m = 0, k = 0, chunk = 0, chunks = 0, tasks = 0;
};

ConvTiling conv_tiling(const OpNode& op, const ValueInfo& x, const ValueInfo& y, int batch, int threads) {
  ConvTiling t;
  t.m = static_cast<std::int64_t>(batch) * y.h * y.w;
  t.k = op.kh * op.kw * (x.c / op.exec_groups);
  // im2col tile of about 128 KiB per thread: stays in L2 while the GEMM reads it.
  // At least 16 rows for GEMM efficiency, unless K is absurd (a hostile file): then the
  // scratch stays bounded by the size of the weights.
  t.chunk = 32768 / std::max<std::int64_t>(t.k, 1);
  if (t.k <= 65536) t.chunk = std::max<std::int64_t>(t.chunk, 16);
  t.chunk = std::clamp<std::int64_t>(t.chunk, 1, 1024);
  t.chunk = std::min(t.chunk, t.m);
  t.chunks = (t.m + t.chunk - 1) / t.chunk;
  t.tasks = std::max<std::int64_t>(1, std::min<std::int64_t>(threads, t.chunks));
  return t;
}

}  // namespace

std::size_t conv2d_work_floats(const OpNode& op, const ValueInfo& x, const ValueInfo& y, int batch, int threads) {
  if (conv_is_pointwise(op) || conv_is_direct(op, x.c) || conv_is_fdirect(op, x, y, batch)) return 0;
  const ConvTiling t = conv_tiling(op, x, y, batch, threads);
  return static_cast<std::size_t>(t.tasks * t.chunk * t.k);
}

void conv2d_float(const OpNode& op, const ValueInfo& x, const ValueInfo& y, int batch, const float* in,
                  std::int64_t in_ps, float* out, std::int64_t out_ps, float* work, int threads,
                  ThreadPool* pool) {
  if (conv_is_direct(op, x.c)) {
    pfor(pool, static_cast<std::int64_t>(batch) * y.h, 1, [&](std::int64_t r0, std::int64_t r1) {
      conv_direct_rows(op, x, y, in, in_ps, out, out_ps, r0, r1);
    });
    return;
  }
  if (conv_is_fdirect(op, x, y, batch)) {
    fconv2d(in, in_ps, op.w.data(), op.b.data(), op.relu, fconv_shape(op, x, batch), out, out_ps, pool);
    return;
  }
  const std::int64_t cg = x.c / op.exec_groups, og = op.out_c / op.exec_groups;
  const ConvTiling t = conv_tiling(op, x, y, batch, threads);
  const bool pointwise = conv_is_pointwise(op);
  const float* bias = op.b.data();
  const bool relu = op.relu;
  if (pointwise && op.exec_groups == 1 && pool && threads > 1 && t.chunks < threads) {
    // Too few rows to split (ResNetE's 14x14 and 7x7 downsampling convs): split the
    // output channels instead, 16 at a time.
    parallel_for(pool, (op.out_c + 15) / 16, [&](std::int64_t b, std::int64_t e) {
      const std::int64_t n0 = b * 16, n1 = std::min(op.out_c, e * 16);
      sgemm(t.m, n1 - n0, cg, in, in_ps, op.w.data() + n0, og, false, out + n0, out_ps);
      bias_relu_rows(out + n0, out_ps, 0, t.m, n1 - n0, bias + n0, relu);
    });
    return;
  }

  auto epilogue = [&](std::int64_t m0, std::int64_t m1) { bias_relu_rows(out, out_ps, m0, m1, op.out_c, bias, relu); };

  auto task = [&](std::int64_t ti) {
    const std::int64_t c0 = ti * t.chunks / t.tasks, c1 = (ti + 1) * t.chunks / t.tasks;
    const std::int64_t m_begin = c0 * t.chunk, m_end = std::min(t.m, c1 * t.chunk);
    if (m_begin >= m_end) return;
    if (pointwise) {
      for (std::int64_t g = 0; g < op.exec_groups; ++g) {
        sgemm(m_end - m_begin, og, cg, in + m_begin * in_ps + g * cg, in_ps, op.w.data() + g * cg * og, og, false,
              out + m_begin * out_ps + g * og, out_ps);
      }
      epilogue(m_begin, m_end);
      return;
    }
    float* col = work + ti * t.chunk * t.k;
    const bool dense_rows = op.dw == 1 && op.exec_groups == 1 && in_ps == cg;
    const std::int64_t ohw = y.h * y.w;
    for (std::int64_t m0 = m_begin; m0 < m_end; m0 += t.chunk) {
      const std::int64_t rows = std::min(t.chunk, m_end - m0);
      for (std::int64_t g = 0; g < op.exec_groups; ++g) {
        // im2col rows ordered (kh, kw, c) with zero padding.
        for (std::int64_t r = 0; r < rows; ++r) {
          const std::int64_t m = m0 + r, n = m / ohw, rem = m % ohw, oy = rem / y.w, ox = rem % y.w;
          float* dst = col + r * t.k;
          for (std::int64_t i = 0; i < op.kh; ++i) {
            const std::int64_t iy = oy * op.sh - op.ph + i * op.dh;
            if (iy < 0 || iy >= x.h) {
              std::memset(dst, 0, op.kw * cg * sizeof(float));
              dst += op.kw * cg;
              continue;
            }
            const std::int64_t ix0 = ox * op.sw - op.pw;
            const float* row = in + (n * x.h + iy) * x.w * in_ps + g * cg;
            if (dense_rows) {
              // Adjacent taps are adjacent pixels, whose channels are contiguous: one
              // copy per kernel row, zeros for the taps in the padding.
              const std::int64_t ja = std::clamp<std::int64_t>(-ix0, 0, op.kw);
              const std::int64_t jb = std::clamp<std::int64_t>(x.w - ix0, ja, op.kw);
              if (ja > 0) std::memset(dst, 0, ja * cg * sizeof(float));
              if (jb > ja) std::memcpy(dst + ja * cg, row + (ix0 + ja) * cg, (jb - ja) * cg * sizeof(float));
              if (jb < op.kw) std::memset(dst + jb * cg, 0, (op.kw - jb) * cg * sizeof(float));
              dst += op.kw * cg;
              continue;
            }
            for (std::int64_t j = 0; j < op.kw; ++j, dst += cg) {
              const std::int64_t ix = ix0 + j * op.dw;
              if (ix < 0 || ix >= x.w) {
                std::memset(dst, 0, cg * sizeof(float));
              } else {
                std::memcpy(dst, row + ix * in_ps, cg * sizeof(float));
              }
            }
          }
        }
        sgemm(rows, og, t.k, col, t.k, op.w.data() + g * t.k * og, og, false, out + m0 * out_ps + g * og, out_ps);
      }
      epilogue(m0, m0 + rows);
    }
  };
  if (t.tasks == 1 || !pool) {
    for (std::int64_t ti = 0; ti < t.tasks; ++ti) task(ti);
  } else {
    parallel_for(pool, t.tasks, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t ti = b; ti < e; ++ti) task(ti);
    });
  }
}

// ---------------------------------------------------------------- binary convolution

void prepare_binary_conv(OpNode& op, const ValueInfo& x) {
  if (op.type != OpType::BinaryConv2D || op.groups != 1) return;
  BConv2DShape s;
  s.in_h = s.in_w = 1, s.in_c = x.c, s.out_c = op.out_c, s.kernel_h = op.kh, s.kernel_w = op.kw;
  const BgemmKernel& k = bgemm_kernel("auto");
  const std::int64_t n = bconv2d_packed_filter_words(s, k);
  if (n <= 0) return;
  op.wpanels.resize(static_cast<std::size_t>(n), /*zero=*/false);
  bconv2d_pack_filter(op.wbits.data(), s, k, op.wpanels.data());
}

std::size_t bconv_work_bytes(const OpNode& op, const ValueInfo& x, const ValueInfo& y, int batch) {
  if (op.groups == 1) return 0;  // epilogue fused in bconv2d (block-sized buffers of its own)
  const std::int64_t og = op.out_c / op.groups;
  std::size_t bytes = static_cast<std::size_t>(batch) * y.h * y.w * og * sizeof(std::int32_t);
  bytes = (bytes + 63) / 64 * 64;
  if (op.groups > 1) {
    bytes += static_cast<std::size_t>(batch) * x.h * x.w * words_for_bits(x.c / op.groups) * sizeof(word_t);
  }
  return bytes;
}

double binary_conv2d(const OpNode& op, const ValueInfo& x, const ValueInfo& y, int batch, const word_t* in,
                     float* out, std::int64_t out_ps, void* work, ThreadPool* pool, bool timed,
                     const float* residual, std::int64_t residual_ps) {
  const std::int64_t cg = x.c / op.groups, og = op.out_c / op.groups;
  const std::int64_t wg = words_for_bits(cg), in_words = words_for_bits(x.c);
  const std::int64_t out_pixels = static_cast<std::int64_t>(batch) * y.h * y.w;
  const std::int64_t in_pixels = static_cast<std::int64_t>(batch) * x.h * x.w;
  auto* acc = static_cast<std::int32_t*>(work);
  std::size_t acc_bytes = (static_cast<std::size_t>(out_pixels) * og * sizeof(std::int32_t) + 63) / 64 * 64;
  word_t* slice = reinterpret_cast<word_t*>(static_cast<char*>(work) + acc_bytes);

  BConv2DShape s;
  s.batch = batch; s.in_h = x.h; s.in_w = x.w; s.in_c = cg; s.out_c = og;
  s.kernel_h = op.kh; s.kernel_w = op.kw; s.stride_h = op.sh; s.stride_w = op.sw;
  s.pad_h = op.ph; s.pad_w = op.pw; s.dilation_h = op.dh; s.dilation_w = op.dw;
  const std::int32_t k = static_cast<std::int32_t>(op.k_bits);
  double epi_seconds = 0.0;
  if (op.groups == 1) {
    // The scale/shift epilogue runs inside the convolution, block by block while the
    // int32 results are in cache (same arithmetic; counted as binary conv time).
    BConvOutput o;
    o.scale = op.scale.data(), o.shift = op.shift.data(), o.relu = op.relu, o.out = out, o.out_ps = out_ps;
    o.residual = residual, o.residual_ps = residual_ps;
    bconv2d(in, op.wbits.data(), s, o, pool, nullptr, op.wpanels.empty() ? nullptr : op.wpanels.data());
    return 0.0;
  }

  for (std::int64_t g = 0; g < op.groups; ++g) {
    const word_t* src = in;
    if (op.groups > 1) {
      // Extract channels [g*cg, (g+1)*cg) of every pixel as a packed row of its own.
      const std::int64_t bit0 = g * cg;
      const word_t mask = tail_mask(cg);
      pfor(pool, in_pixels, 256, [&](std::int64_t p0, std::int64_t p1) {
        for (std::int64_t p = p0; p < p1; ++p) {
          const word_t* row = in + p * in_words;
          word_t* dst = slice + p * wg;
          for (std::int64_t j = 0; j < wg; ++j) {
            const std::int64_t b = bit0 + j * kWordBits, q = b / kWordBits, sh = b % kWordBits;
            word_t v = row[q] >> sh;
            if (sh && q + 1 < in_words) v |= row[q + 1] << (kWordBits - sh);
            dst[j] = (j == wg - 1) ? (v & mask) : v;
          }
        }
      });
      src = slice;
    }
    bconv2d(src, op.wbits.data() + g * og * op.kh * op.kw * wg, s, acc, pool);
    auto t0 = timed ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    // match = (dot + K) / 2 (exact: dot and K have the same parity); y = scale*match + shift.
    const float* scale = op.scale.data() + g * og;
    const float* shift = op.shift.data() + g * og;
    const bool relu = op.relu;
    pfor(pool, out_pixels, 64, [&](std::int64_t p0, std::int64_t p1) {
      for (std::int64_t p = p0; p < p1; ++p) {
        const std::int32_t* a = acc + p * og;
        float* o = out + p * out_ps + g * og;
        for (std::int64_t c = 0; c < og; ++c) {
          const float match = static_cast<float>((a[c] + k) >> 1);
          o[c] = relu_if(scale[c] * match + shift[c], relu);
        }
      }
    });
    if (timed) epi_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return epi_seconds;
}

// ---------------------------------------------------------------- sign + pack

void sign_pack_portable(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps,
                        const float* scale, const float* shift, word_t* out) {
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

void sign_pack(const float* in, std::int64_t pixels, std::int64_t c, std::int64_t in_ps, const float* scale,
               const float* shift, word_t* out, ThreadPool* pool) {
  const std::int64_t words = words_for_bits(c);
  if (!scale) {
    pack_rows(in, pixels, c, in_ps, out, words, pool);  // bmx kernel (SIMD dispatch inside)
    return;
  }
#if defined(BMX_ARCH_X86)
  const bool simd = cpu_features().avx2;
  const bool simd512 = cpu_features().avx512f;
#else
  const bool simd = false;
#endif
  pfor(pool, pixels, 64, [&](std::int64_t p0, std::int64_t p1) {
#if defined(BMX_ARCH_X86)
    if (simd512) {
      sign_pack_avx512(in + p0 * in_ps, p1 - p0, c, in_ps, scale, shift, out + p0 * words);
      return;
    }
    if (simd) {
      sign_pack_avx2(in + p0 * in_ps, p1 - p0, c, in_ps, scale, shift, out + p0 * words);
      return;
    }
#endif
    (void)simd;
    sign_pack_portable(in + p0 * in_ps, p1 - p0, c, in_ps, scale, shift, out + p0 * words);
  });
}

// ---------------------------------------------------------------- pooling

namespace {

BMX_SIMD_CLONES void global_pool(const float* base, std::int64_t in_ps, std::int64_t hw, std::int64_t c, bool max,
                                 float* o) {
  const float inv = 1.0f / static_cast<float>(hw);
  if (max) {
    for (std::int64_t ch = 0; ch < c; ++ch) o[ch] = base[ch];
    for (std::int64_t p = 1; p < hw; ++p)
      for (std::int64_t ch = 0; ch < c; ++ch) o[ch] = std::max(o[ch], base[p * in_ps + ch]);
  } else {
    for (std::int64_t ch = 0; ch < c; ++ch) o[ch] = 0.0f;
    for (std::int64_t p = 0; p < hw; ++p)
      for (std::int64_t ch = 0; ch < c; ++ch) o[ch] += base[p * in_ps + ch];
    for (std::int64_t ch = 0; ch < c; ++ch) o[ch] *= inv;
  }
}

BMX_SIMD_CLONES void pool_rows(const OpNode& op, const ValueInfo& x, const ValueInfo& y, const float* in,
                               std::int64_t in_ps, float* out, std::int64_t out_ps, std::int64_t r0, std::int64_t r1) {
  const std::int64_t c = x.c;
  for (std::int64_t r = r0; r < r1; ++r) {
    const std::int64_t n = r / y.h, oy = r % y.h;
    const std::int64_t y0 = oy * op.sh - op.ph;
    const std::int64_t ya = std::max<std::int64_t>(y0, 0), yb = std::min(y0 + op.kh, x.h);
    for (std::int64_t ox = 0; ox < y.w; ++ox) {
      const std::int64_t x0 = ox * op.sw - op.pw;
      const std::int64_t xa = std::max<std::int64_t>(x0, 0), xb = std::min(x0 + op.kw, x.w);
      float* o = out + ((n * y.h + oy) * y.w + ox) * out_ps;
      if (op.pool_max) {
        for (std::int64_t ch = 0; ch < c; ++ch) o[ch] = -std::numeric_limits<float>::infinity();
        for (std::int64_t iy = ya; iy < yb; ++iy)
          for (std::int64_t ix = xa; ix < xb; ++ix) {
            const float* s = in + ((n * x.h + iy) * x.w + ix) * in_ps;
            for (std::int64_t ch = 0; ch < c; ++ch) o[ch] = std::max(o[ch], s[ch]);
          }
      } else {
        for (std::int64_t ch = 0; ch < c; ++ch) o[ch] = 0.0f;
        for (std::int64_t iy = ya; iy < yb; ++iy)
          for (std::int64_t ix = xa; ix < xb; ++ix) {
            const float* s = in + ((n * x.h + iy) * x.w + ix) * in_ps;
            for (std::int64_t ch = 0; ch < c; ++ch) o[ch] += s[ch];
          }
        // count_include_pad: the window clipped at the padded border (all of it unless
        // ceil_mode made a partial last window); else the real elements.
        const std::int64_t count =
            op.count_include_pad ? (std::min(y0 + op.kh, x.h + op.ph) - y0) * (std::min(x0 + op.kw, x.w + op.pw) - x0)
                                 : (yb - ya) * (xb - xa);
        const float inv = 1.0f / static_cast<float>(count);
        for (std::int64_t ch = 0; ch < c; ++ch) o[ch] *= inv;
      }
    }
  }
}

}  // namespace

void pool2d(const OpNode& op, const ValueInfo& x, const ValueInfo& y, int batch, const float* in,
            std::int64_t in_ps, float* out, std::int64_t out_ps, ThreadPool* pool) {
  if (op.global) {
    const std::int64_t hw = x.h * x.w;
    pfor(pool, batch, 1, [&](std::int64_t n0, std::int64_t n1) {
      for (std::int64_t n = n0; n < n1; ++n) global_pool(in + n * hw * in_ps, in_ps, hw, x.c, op.pool_max, out + n * out_ps);
    });
    return;
  }
  pfor(pool, static_cast<std::int64_t>(batch) * y.h, 1, [&](std::int64_t r0, std::int64_t r1) {
    pool_rows(op, x, y, in, in_ps, out, out_ps, r0, r1);
  });
}

// ---------------------------------------------------------------- element-wise

namespace {

BMX_SIMD_CLONES void affine_rows(const float* in, std::int64_t in_ps, float* out, std::int64_t out_ps,
                                 std::int64_t p0, std::int64_t p1, std::int64_t c, const float* scale,
                                 const float* shift, bool relu) {
  for (std::int64_t p = p0; p < p1; ++p) {
    const float* s = in + p * in_ps;
    float* o = out + p * out_ps;
    if (scale) {
      if (relu) {
        for (std::int64_t ch = 0; ch < c; ++ch) o[ch] = std::max(s[ch] * scale[ch] + shift[ch], 0.0f);
      } else {
        for (std::int64_t ch = 0; ch < c; ++ch) o[ch] = s[ch] * scale[ch] + shift[ch];
      }
    } else {
      for (std::int64_t ch = 0; ch < c; ++ch) o[ch] = relu_if(s[ch], relu);
    }
  }
}

BMX_SIMD_CLONES void add_rows(const float* a, std::int64_t a_ps, const float* b, std::int64_t b_ps, float* out,
                              std::int64_t out_ps, std::int64_t p0, std::int64_t p1, std::int64_t c) {
  for (std::int64_t p = p0; p < p1; ++p) {
    const float* x = a + p * a_ps;
    const float* y = b + p * b_ps;
    float* o = out + p * out_ps;
    for (std::int64_t ch = 0; ch < c; ++ch) o[ch] = x[ch] + y[ch];
  }
}

BMX_SIMD_CLONES void add_last_rows(const float* a, std::int64_t a_ps, std::int64_t ca, const float* b,
                                   std::int64_t b_ps, std::int64_t cb, float* out, std::int64_t out_ps,
                                   std::int64_t p0, std::int64_t p1) {
  const bool in_place = a == out;
  for (std::int64_t p = p0; p < p1; ++p) {
    const float* x = a + p * a_ps;
    const float* y = b + p * b_ps;
    float* o = out + p * out_ps;
    if (!in_place) std::memcpy(o, x, (ca - cb) * sizeof(float));
    for (std::int64_t ch = 0; ch < cb; ++ch) o[ca - cb + ch] = x[ca - cb + ch] + y[ch];
  }
}

}  // namespace

void affine(const float* in, std::int64_t in_ps, float* out, std::int64_t out_ps, std::int64_t pixels,
            std::int64_t c, const float* scale, const float* shift, bool relu, ThreadPool* pool) {
  pfor(pool, pixels, 256, [&](std::int64_t p0, std::int64_t p1) {
    affine_rows(in, in_ps, out, out_ps, p0, p1, c, scale, shift, relu);
  });
}

void add(const float* a, std::int64_t a_ps, const float* b, std::int64_t b_ps, float* out, std::int64_t out_ps,
         std::int64_t pixels, std::int64_t c, ThreadPool* pool) {
  pfor(pool, pixels, 256, [&](std::int64_t p0, std::int64_t p1) { add_rows(a, a_ps, b, b_ps, out, out_ps, p0, p1, c); });
}

void add_to_last_channels(const float* a, std::int64_t a_ps, std::int64_t ca, const float* b, std::int64_t b_ps,
                          std::int64_t cb, float* out, std::int64_t out_ps, std::int64_t pixels, ThreadPool* pool) {
  pfor(pool, pixels, 256, [&](std::int64_t p0, std::int64_t p1) {
    add_last_rows(a, a_ps, ca, b, b_ps, cb, out, out_ps, p0, p1);
  });
}

void copy_channels(const float* in, std::int64_t in_ps, float* out, std::int64_t out_ps, std::int64_t pixels,
                   std::int64_t c, ThreadPool* pool) {
  if (in == out && in_ps == out_ps) return;
  pfor(pool, pixels, 512, [&](std::int64_t p0, std::int64_t p1) {
    for (std::int64_t p = p0; p < p1; ++p) std::memcpy(out + p * out_ps, in + p * in_ps, c * sizeof(float));
  });
}

void channel_shuffle(const float* in, std::int64_t in_ps, float* out, std::int64_t out_ps, std::int64_t pixels,
                     std::int64_t c, std::int64_t groups, ThreadPool* pool) {
  const std::int64_t per = c / groups;
  pfor(pool, pixels, 256, [&](std::int64_t p0, std::int64_t p1) {
    for (std::int64_t p = p0; p < p1; ++p) {
      const float* s = in + p * in_ps;
      float* o = out + p * out_ps;
      // (groups, per) -> (per, groups): out channel i*groups + gi <- in channel gi*per + i.
      for (std::int64_t gi = 0; gi < groups; ++gi)
        for (std::int64_t i = 0; i < per; ++i) o[i * groups + gi] = s[gi * per + i];
    }
  });
}

void dense(const float* x, std::int64_t ldx, std::int64_t batch, std::int64_t f, const float* w, const float* b,
           std::int64_t units, float* out, ThreadPool* pool) {
  // Split the units over threads: each part is a GEMM against a slice of W.
  pfor(pool, units, 64, [&](std::int64_t u0, std::int64_t u1) {
    sgemm(batch, u1 - u0, f, x, ldx, w + u0 * f, f, true, out + u0, units);
    for (std::int64_t n = 0; n < batch; ++n)
      for (std::int64_t u = u0; u < u1; ++u) out[n * units + u] += b[u];
  });
}

void nhwc_to_nchw(const float* in, std::int64_t ps, std::int64_t batch, std::int64_t c, std::int64_t hw,
                  float* out) {
  for (std::int64_t n = 0; n < batch; ++n)
    for (std::int64_t ch = 0; ch < c; ++ch)
      for (std::int64_t p = 0; p < hw; ++p) out[(n * c + ch) * hw + p] = in[(n * hw + p) * ps + ch];
}

namespace {

// Index of the first non-finite value in [b, e), or e. Blocks of 256 are tested without a
// branch per element (vectorised); only a block with a hit is scanned.
BMX_SIMD_CLONES std::int64_t first_non_finite(const float* in, std::int64_t b, std::int64_t e) {
  for (std::int64_t i0 = b; i0 < e; i0 += 256) {
    const std::int64_t i1 = std::min(e, i0 + 256);
    int bad = 0;
    for (std::int64_t i = i0; i < i1; ++i) bad |= !(std::fabs(in[i]) <= FLT_MAX);
    if (bad)
      for (std::int64_t i = i0; i < i1; ++i)
        if (!std::isfinite(in[i])) return i;
  }
  return e;
}

// `run` pixels of one image, planar (channel stride hw) -> interleaved (pixel stride ps).
BMX_SIMD_CLONES void transpose_pixels(const float* in, std::int64_t hw, std::int64_t run, std::int64_t c, float* out,
                                      std::int64_t ps) {
  for (std::int64_t ch = 0; ch < c; ++ch) {
    const float* s = in + ch * hw;
    for (std::int64_t q = 0; q < run; ++q) out[q * ps + ch] = s[q];
  }
}

}  // namespace

std::int64_t nchw_to_nhwc_checked(const float* in, std::int64_t batch, std::int64_t c, std::int64_t hw,
                                  float* out, std::int64_t ps, ThreadPool* pool) {
  // Check first (one streaming pass, split over the threads), then transpose.
  const std::int64_t total = batch * c * hw;
  std::atomic<std::int64_t> first{total};
  pfor(pool, total, 1 << 14, [&](std::int64_t b, std::int64_t e) {
    const std::int64_t i = first_non_finite(in, b, e);
    if (i == e) return;
    std::int64_t cur = first.load();
    while (i < cur && !first.compare_exchange_weak(cur, i)) {
    }
  });
  if (first.load() < total) return first.load();
  pfor(pool, batch * hw, 1 << 12, [&](std::int64_t p0, std::int64_t p1) {
    std::int64_t n = p0 / hw, q = p0 % hw;
    for (std::int64_t p = p0; p < p1;) {
      const std::int64_t run = std::min(p1 - p, hw - q);  // pixels of image n
      transpose_pixels(in + n * c * hw + q, hw, run, c, out + p * ps, ps);
      p += run, q = 0, ++n;
    }
  });
  return -1;
}

}  // namespace bmx::rt
