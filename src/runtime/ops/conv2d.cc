// Conv2D: float 2-D convolution (the full-precision stem, downsampling and transition
// convs that BNNs keep), with groups, bias and an optional ReLU. Weights are re-arranged
// at load into per-group GEMM B operands; at run time a pointwise conv is one SGEMM, a
// spatial one runs as core/fconv2d's direct kernel where the CPU has one, small groups
// as a direct loop, everything else as im2col + SGEMM.
#include <algorithm>
#include <cstring>

#include "core/fconv2d/fconv2d.h"
#include "core/common/cpu.h"
#include "runtime/check.h"
#include "runtime/ops/conv_common.h"
#include "runtime/ops/op_util.h"
#include "runtime/registry.h"

namespace bmx::rt {

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

void load(const fb::Op* fop, OpNode& op, const Graph& g, bool prepare) {
  OpChecker ck(g, op);
  const fb::Conv2D* p = fop->options_as_Conv2D();
  ck.arity(1);
  const ValueInfo& x = ck.input(0, false);
  read_conv_geometry(ck, p, op);
  check_conv_output(ck, p, op, x);
  const std::int64_t cg = x.c / op.groups, og = op.out_c / op.groups;
  const std::int64_t nw = ck.mul(ck.mul(ck.mul(op.out_c, cg, "weight"), op.kh, "weight"), op.kw, "weight");
  if (ck.mul(cg, op.kh * op.kw, "K") > kMaxReduction) ck.fail("reduction size too large");
  ck.bytes(p->weight(), nw * 4, "weight", false);
  ck.bytes(p->bias(), op.out_c * 4, "bias", true);
  if (!all_finite_bytes(p->weight()) || !all_finite_bytes(p->bias())) ck.fail("weight or bias is not finite");
  if (!prepare) return;
  // [C_out, C_in/g, KH, KW] -> [g][KH][KW][C_in/g][C_out/g]: the GEMM B operand of each group
  // for NHWC im2col rows ordered (kh, kw, c).
  const bool pointwise = op.kh == 1 && op.kw == 1 && op.sh == 1 && op.sw == 1 && op.ph == 0 && op.pw == 0;
  const bool expand = op.groups > 1 && op.groups <= 8 && !pointwise && (og < 32 || cg < 16);
  op.exec_groups = expand ? 1 : op.groups;
  const std::int64_t ecg = x.c / op.exec_groups, eog = op.out_c / op.exec_groups;
  op.w.resize(nw * (op.groups / op.exec_groups));  // zero-filled
  const std::uint8_t* src = p->weight()->data();
  for (std::int64_t o = 0; o < op.out_c; ++o) {
    const std::int64_t eg = o / eog, oo = o % eog;
    const std::int64_t c_base = expand ? (o / og) * cg : 0;  // the input block of o's group
    for (std::int64_t c = 0; c < cg; ++c)
      for (std::int64_t i = 0; i < op.kh; ++i)
        for (std::int64_t j = 0; j < op.kw; ++j) {
          float f;
          std::memcpy(&f, src + 4 * (((o * cg + c) * op.kh + i) * op.kw + j), 4);
          op.w[(((eg * op.kh + i) * op.kw + j) * ecg + c_base + c) * eog + oo] = f;
        }
  }
  op.b.resize(op.out_c);  // zero when absent
  if (p->bias() && p->bias()->size()) std::memcpy(op.b.data(), p->bias()->data(), op.out_c * 4);
}

std::size_t work_bytes(const OpNode& op, const Graph& g, int batch, int threads) {
  return conv2d_work_floats(op, g.values[op.in[0]], g.values[op.out], batch, threads) * sizeof(float);
}

void run(const RunContext& c, const OpNode& op) {
  conv2d_float(op, c.value(op.in[0]), c.value(op.out), c.batch, c.fptr(op.in[0]), c.ps(op.in[0]), c.fptr(op.out),
               c.ps(op.out), reinterpret_cast<float*>(c.work), c.threads, c.pool);
}

}  // namespace

const OpImpl kConv2DOp = {&load, &work_bytes, &run};

}  // namespace bmx::rt
