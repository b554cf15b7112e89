// KbitConv2D: k-bit convolution by bit-plane decomposition (Zhou et al., DoReFa-Net, 2016;
// Bethge et al., BMXNet 2, 2019). Activations and weights are integer affine maps of
// unsigned levels La, Lw over a common denominator: a = (am * La + aa) / da (Levels input:
// am = 1, aa = 0, da = 2^k - 1; Bits input: am = -2, aa = 1, da = 1) and w = (wm * Lw + wa)
// / dw (sign weights: wm = -2, wa = 1, dw = 1; DoReFa weights: wm = 2, wa = -n, dw = n =
// 2^p - 1). A window's dot product is I / (da * dw) with the integer
//   I = am*wm * P + am*wa * SA + aa*wm * SW + aa*wa * K,
// P = sum La*Lw (core/kbgemm: weighted popcounts of plane pairs, the weights in the
// kernel's packed panels), SA = sum La over the window (from each input pixel's level
// sum), SW = sum Lw of the filter, K its size. I is computed exactly (doubles holding
// integers) and scaled once: y = scale / (da * dw) * I + shift. Folding the float factors
// into per-term scales instead would cancel large terms in float32 (relative errors of
// 1e-5 at C_in = 160 with 3-bit weights, which then flip later signs).
// Padding: the file means the value -1. A Bits input pads with bit 1 (exactly -1); a
// Levels input pads with level 0 (value 0) and each output pixel whose window reaches
// into the padding adds -da * (the weights of its padded taps, times dw): integers
// precomputed per tap.
#include <algorithm>
#include <cstring>

#include "core/common/cpu.h"
#include "core/common/scratch.h"
#include "core/kbgemm/kbgemm.h"
#include "runtime/check.h"
#include "runtime/ops/conv_common.h"
#include "runtime/ops/op_util.h"
#include "runtime/registry.h"

namespace bmx::rt {

namespace {

constexpr std::int64_t kRowsPerBlock = 64;  // output pixels per GEMM block (per thread)

struct Encoding {
  std::int64_t mul, add, den;  // value = (mul * level + add) / den
};
Encoding act_encoding(const ValueInfo& x) {
  return x.levels ? Encoding{1, 0, (1 << x.planes) - 1} : Encoding{-2, 1, 1};
}
Encoding weight_encoding(int planes) {
  const std::int64_t n = (1 << planes) - 1;
  return planes == 1 ? Encoding{-2, 1, 1} : Encoding{2, -n, n};
}

// Sum of the levels of `words` words of each of `planes` planes (plane stride `ps`).
std::int64_t level_sum(const word_t* w, std::int64_t ps, std::int64_t words, int planes) {
  std::int64_t s = 0;
  for (int q = 0; q < planes; ++q)
    for (std::int64_t i = 0; i < words; ++i) s += static_cast<std::int64_t>(__builtin_popcountll(w[q * ps + i])) << q;
  return s;
}

// The integer terms (see the top of the file): p_mul, sa_mul; kterms row 0 = the constant
// aa*wm*SW + aa*wa*K per channel, rows 1 + tap (Levels input) = the padded tap's -da * dw *
// (its weights' sum); scale = scale / (da * dw).
void prepare_terms(const fb::KbitConv2D* p, OpNode& op, const ValueInfo& x) {
  const Encoding a = act_encoding(x), wq = weight_encoding(op.w_planes);
  const std::int64_t wc = words_for_bits(x.c), taps = op.kh * op.kw, row = taps * wc, n = op.out_c;
  op.p_mul = static_cast<double>(a.mul * wq.mul);
  op.sa_mul = static_cast<double>(a.mul * wq.add);
  op.scale.resize(n), op.shift.resize(n);
  op.kterms.resize(n * (x.levels ? 1 + taps : 1));
  for (std::int64_t c = 0; c < n; ++c) {
    const word_t* wr = op.wbits.data() + c * op.w_planes * row;
    const std::int64_t sw = level_sum(wr, row, row, op.w_planes);
    op.scale[c] = static_cast<float>(static_cast<double>(p->scale()->Get(c)) / static_cast<double>(a.den * wq.den));
    op.shift[c] = p->shift()->Get(c);
    op.kterms[c] = static_cast<double>(a.add * wq.mul * sw + a.add * wq.add * op.k_bits);
    for (std::int64_t k = 0; x.levels && k < taps; ++k) {
      const std::int64_t tap = wq.mul * level_sum(wr + k * wc, row, wc, op.w_planes) + wq.add * x.c;  // dw * sum w
      op.kterms[(1 + k) * n + c] = static_cast<double>(-a.den * tap);  // the value -1 = -da / da
    }
  }
}

void load(const fb::Op* fop, OpNode& op, const Graph& g, bool prepare) {
  OpChecker ck(g, op);
  ck.since(3);
  const fb::KbitConv2D* p = fop->options_as_KbitConv2D();
  ck.arity(1);
  const ValueInfo& x = ck.input_packed(0);
  ck.pair(p->kernel(), "kernel", 1, kMaxWindow, -1, op.kh, op.kw);
  ck.pair(p->stride(), "stride", 1, kMaxWindow, 1, op.sh, op.sw);
  ck.pair(p->pad(), "pad", 0, kMaxWindow, 0, op.ph, op.pw);
  ck.pair(p->dilation(), "dilation", 1, kMaxWindow, 1, op.dh, op.dw);
  op.groups = 1, op.out_c = p->out_channels();
  if (p->in_channels() != x.c) {
    ck.fail("in_channels " + std::to_string(p->in_channels()) + " differs from the input's " + std::to_string(x.c));
  }
  check_conv_output(ck, p, op, x);
  op.w_planes = p->weight_planes();
  if (op.w_planes < 1 || op.w_planes > kMaxKbitPlanes) {
    ck.fail("weight_planes " + std::to_string(op.w_planes) + " out of range [1, " + std::to_string(kMaxKbitPlanes) + "]");
  }
  const std::int64_t wc = words_for_bits(x.c);
  op.k_bits = ck.mul(x.c, op.kh * op.kw, "K");
  const std::int64_t row = ck.mul(wc, op.kh * op.kw, "weight_bits");
  if (op.k_bits > kMaxReduction || row > kbgemm_max_words(x.planes, op.w_planes)) {
    ck.fail("reduction size too large for " + std::to_string(x.planes) + " x " + std::to_string(op.w_planes) +
            " planes");
  }
  const std::int64_t nwords = ck.mul(ck.mul(op.out_c, op.w_planes, "weight_bits"), row, "weight_bits");
  ck.bytes(p->weight_bits(), nwords * 8, "weight_bits", false);
  ck.floats(p->scale(), op.out_c, "scale", false);
  ck.floats(p->shift(), op.out_c, "shift", false);
  if (!all_finite(p->scale()) || !all_finite(p->shift())) ck.fail("scale or shift is not finite");
  const std::uint8_t* wb = p->weight_bits()->data();
  check_weight_tails(ck, wb, nwords / wc, x.c, "in_channels");
  if (!prepare) return;
  op.wbits.resize(nwords);
  std::memcpy(op.wbits.data(), wb, nwords * 8);
  prepare_terms(p, op, x);
  const std::vector<word_t> panels = kbgemm_pack_b(kbgemm_kernel("auto"), op.wbits.data(), op.w_planes * row,
                                                   op.out_c, row, op.w_planes);
  op.wpanels.resize(panels.size(), /*zero=*/false);
  if (!panels.empty()) std::memcpy(op.wpanels.data(), panels.data(), panels.size() * sizeof(word_t));
}

// The work buffer holds each input pixel's level sum (int32, batch * H * W).
std::size_t work_bytes(const OpNode& op, const Graph& g, int batch, int /*threads*/) {
  const ValueInfo& x = g.values[op.in[0]];
  return static_cast<std::size_t>(batch) * x.h * x.w * sizeof(std::int32_t);
}

struct Geometry {
  std::int64_t h, w, c, oh, ow, wc, planes, row, in_ps;
  bool levels;
};

// Rows [m0, m1) of the im2col matrix: per output pixel, per plane, the KH*KW taps of wc
// words; padded taps hold level 0 (Levels) or bit 1 in every channel (Bits: -1). Fields
// are copied to locals: the stores through `a` would otherwise make the compiler reload
// them for every word.
void im2col(const word_t* in, const Geometry& g, const OpNode& op, std::int64_t m0, std::int64_t m1, word_t* a) {
  const std::int64_t h = g.h, w = g.w, oh = g.oh, ow = g.ow, wc = g.wc, planes = g.planes, row = g.row;
  const std::int64_t in_ps = g.in_ps, kh = op.kh, kw = op.kw, sh = op.sh, sw = op.sw, ph = op.ph, pw = op.pw;
  const std::int64_t dh = op.dh, dw = op.dw;
  const word_t last = tail_mask(g.c), fill = g.levels ? 0 : ~word_t{0}, fill_last = g.levels ? 0 : last;
  for (std::int64_t m = m0; m < m1; ++m) {
    const std::int64_t n = m / (oh * ow), y0 = m / ow % oh * sh - ph, x0 = m % ow * sw - pw;
    word_t* r = a + (m - m0) * planes * row;
    for (std::int64_t i = 0; i < kh; ++i) {
      const std::int64_t y = y0 + i * dh;
      const bool y_in = y >= 0 && y < h;
      const word_t* src_row = in + (n * h + (y_in ? y : 0)) * w * in_ps;
      for (std::int64_t j = 0; j < kw; ++j) {
        const std::int64_t x = x0 + j * dw;
        word_t* dst = r + (i * kw + j) * wc;
        if (y_in && x >= 0 && x < w) {
          const word_t* src = src_row + x * in_ps;
          for (std::int64_t q = 0; q < planes; ++q)
            for (std::int64_t k = 0; k < wc; ++k) dst[q * row + k] = src[q * wc + k];
        } else {
          for (std::int64_t q = 0; q < planes; ++q) {
            for (std::int64_t k = 0; k + 1 < wc; ++k) dst[q * row + k] = fill;
            dst[q * row + wc - 1] = fill_last;
          }
        }
      }
    }
  }
}

// The padded-tap term of output pixel (oy, ox) for every channel: the sum of the kterms
// rows of its taps that fall into the padding.
void pad_correction(const OpNode& op, const Geometry& g, std::int64_t oy, std::int64_t ox, double* corr) {
  const std::int64_t n = op.out_c;
  std::fill(corr, corr + n, 0.0);
  for (std::int64_t i = 0; i < op.kh; ++i) {
    const std::int64_t y = oy * op.sh - op.ph + i * op.dh;
    for (std::int64_t j = 0; j < op.kw; ++j) {
      const std::int64_t x = ox * op.sw - op.pw + j * op.dw;
      if (y >= 0 && y < g.h && x >= 0 && x < g.w) continue;
      const double* t = op.kterms.data() + (1 + i * op.kw + j) * n;
      for (std::int64_t ch = 0; ch < n; ++ch) corr[ch] += t[ch];
    }
  }
}

bool window_padded(const OpNode& op, const Geometry& g, std::int64_t oy, std::int64_t ox) {
  const std::int64_t y0 = oy * op.sh - op.ph, x0 = ox * op.sw - op.pw;
  return y0 < 0 || x0 < 0 || y0 + op.dh * (op.kh - 1) >= g.h || x0 + op.dw * (op.kw - 1) >= g.w;
}

// One output pixel: the exact numerator I = p_mul * P + base + kterms[c] (+ corr[c], the
// padded taps at the border of a Levels input; base = sa_mul * SA), y = scale * I + shift,
// then the ReLU.
BMX_SIMD_CLONES void epilogue(const std::int32_t* p, double base, double p_mul, const double* kterms,
                              const double* corr, const float* scale, const float* shift, std::int64_t n,
                              bool relu, float* o) {
  if (corr) {
    for (std::int64_t ch = 0; ch < n; ++ch)
      o[ch] = scale[ch] * static_cast<float>(p_mul * p[ch] + base + kterms[ch] + corr[ch]) + shift[ch];
  } else {
    for (std::int64_t ch = 0; ch < n; ++ch)
      o[ch] = scale[ch] * static_cast<float>(p_mul * p[ch] + base + kterms[ch]) + shift[ch];
  }
  if (relu)
    for (std::int64_t ch = 0; ch < n; ++ch) o[ch] = std::max(o[ch], 0.0f);
}

// Level sum of every input pixel (all planes, weighted 2^i), so that a window's SA is a
// sum over its taps instead of popcounts of its im2col row.
void pixel_sums(const word_t* in, const Geometry& g, std::int64_t pixels, std::int32_t* out, ThreadPool* pool) {
  pfor(pool, pixels, 1024, [&](std::int64_t p0, std::int64_t p1) {
    for (std::int64_t p = p0; p < p1; ++p)
      out[p] = static_cast<std::int32_t>(level_sum(in + p * g.in_ps, g.wc, g.wc, static_cast<int>(g.planes)));
  });
}

// SA of output pixel m: the level sums of its taps; a padded tap of a Bits input is -1 in
// every channel (bit 1: C levels), of a Levels input level 0.
std::int64_t window_sum(const std::int32_t* sums, const Geometry& g, const OpNode& op, std::int64_t m) {
  const std::int64_t n = m / (g.oh * g.ow), oy = m / g.ow % g.oh, ox = m % g.ow;
  std::int64_t s = 0;
  for (std::int64_t i = 0; i < op.kh; ++i)
    for (std::int64_t j = 0; j < op.kw; ++j) {
      const std::int64_t y = oy * op.sh - op.ph + i * op.dh, x = ox * op.sw - op.pw + j * op.dw;
      if (y >= 0 && y < g.h && x >= 0 && x < g.w) s += sums[(n * g.h + y) * g.w + x];
      else if (!g.levels) s += g.c;
    }
  return s;
}

void run(const RunContext& c, const OpNode& op) {
  const ValueInfo& x = c.value(op.in[0]);
  const ValueInfo& y = c.value(op.out);
  Geometry g{x.h, x.w, x.c, y.h, y.w, words_for_bits(x.c), x.planes, 0, c.ps(op.in[0]), x.levels};
  g.row = op.kh * op.kw * g.wc;
  const std::int64_t m = static_cast<std::int64_t>(c.batch) * y.h * y.w, n = op.out_c;
  const std::int64_t blocks = (m + kRowsPerBlock - 1) / kRowsPerBlock;
  const KbgemmKernel& k = kbgemm_kernel("auto");  // the one the weights were packed for
  const word_t* in = c.wptr(op.in[0]);
  std::int32_t* sums = reinterpret_cast<std::int32_t*>(c.work);
  pixel_sums(in, g, static_cast<std::int64_t>(c.batch) * x.h * x.w, sums, c.pool);
  float* out = c.fptr(op.out);
  const std::int64_t out_ps = c.ps(op.out), lda = g.planes * g.row;
  const int pa = static_cast<int>(g.planes);
  const float *scale = op.scale.data(), *shift = op.shift.data();
  pfor(c.pool, blocks, 1, [&](std::int64_t b0, std::int64_t b1) {
    thread_local ScratchBuffer<word_t> a_buf;
    thread_local ScratchBuffer<std::int32_t> c_buf;
    thread_local ScratchBuffer<double> corr_buf;
    word_t* a = a_buf.get(kRowsPerBlock * lda);
    std::int32_t* acc = c_buf.get(kRowsPerBlock * n);
    double* corr = corr_buf.get(n);
    for (std::int64_t b = b0; b < b1; ++b) {
      const std::int64_t m0 = b * kRowsPerBlock, m1 = std::min(m, m0 + kRowsPerBlock);
      im2col(in, g, op, m0, m1, a);
      if (op.wpanels.empty()) {
        k.run(a, lda, op.wbits.data(), op.w_planes * g.row, 0, m1 - m0, 0, n, g.row, pa, op.w_planes, acc, n);
      } else {
        k.run_packed(a, lda, op.wpanels.data(), 0, m1 - m0, 0, n, g.row, pa, op.w_planes, acc, n);
      }
      for (std::int64_t r = m0; r < m1; ++r) {
        const std::int32_t* p = acc + (r - m0) * n;
        const double base = op.sa_mul * static_cast<double>(window_sum(sums, g, op, r));
        const std::int64_t oy = r / g.ow % g.oh, ox = r % g.ow;
        const bool border = g.levels && window_padded(op, g, oy, ox);
        if (border) pad_correction(op, g, oy, ox, corr);
        epilogue(p, base, op.p_mul, op.kterms.data(), border ? corr : nullptr, scale, shift, n, op.relu,
                 out + r * out_ps);
      }
    }
  });
}

}  // namespace

const OpImpl kKbitConv2DOp = {&load, &work_bytes, &run};

}  // namespace bmx::rt
