// KbitConv2D: k-bit convolution by bit-plane decomposition (Zhou et al., DoReFa-Net, 2016;
// Bethge et al., BMXNet 2, 2019). With activations a = am * La + aa and weights
// w = wm * Lw + wa for unsigned levels La, Lw (Levels input: am = 1/(2^k - 1), aa = 0;
// Bits input: am = -2, aa = 1; sign weights: wm = -2, wa = 1; DoReFa weights:
// wm = 2/(2^p - 1), wa = -1), the dot product of a window is
//   dot = am*wm * P + am*wa * SA + aa*wm * SW + aa*wa * K
// with P = sum La*Lw (core/kbgemm: weighted popcounts of plane pairs), SA = sum La over
// the window (kbit_row_sums), SW = sum Lw of the filter and K its size. The file's output
// y = scale * dot + shift is folded at load into per-channel factors of P, SA and 1.
// Padding: the file means the value -1. A Bits input pads with bit 1 (exactly -1); a
// Levels input pads with level 0 (value 0) and each output pixel whose window reaches
// into the padding adds -scale * (the weights on its padded taps), precomputed per tap.
#include <algorithm>
#include <cstring>

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
  double mul, add;  // value = mul * level + add
};
Encoding act_encoding(const ValueInfo& x) {
  return x.levels ? Encoding{1.0 / ((1 << x.planes) - 1), 0.0} : Encoding{-2.0, 1.0};
}
Encoding weight_encoding(int planes) {
  return planes == 1 ? Encoding{-2.0, 1.0} : Encoding{2.0 / ((1 << planes) - 1), -1.0};
}

// Sum of the levels of `words` words of each of `planes` planes (plane stride `ps`).
std::int64_t level_sum(const word_t* w, std::int64_t ps, std::int64_t words, int planes) {
  std::int64_t s = 0;
  for (int q = 0; q < planes; ++q)
    for (std::int64_t i = 0; i < words; ++i) s += static_cast<std::int64_t>(__builtin_popcountll(w[q * ps + i])) << q;
  return s;
}

// The per-channel factors of the output (see the top of the file): scale = factor of P,
// b = factor of SA, shift = constant, w = [C_out][KH*KW] terms of the padded taps.
void prepare_factors(const fb::KbitConv2D* p, OpNode& op, const ValueInfo& x) {
  const Encoding a = act_encoding(x), wq = weight_encoding(op.w_planes);
  const std::int64_t wc = words_for_bits(x.c), taps = op.kh * op.kw, row = taps * wc;
  op.scale.resize(op.out_c), op.shift.resize(op.out_c), op.b.resize(op.out_c);
  op.w.resize(x.levels ? op.out_c * taps : 0);
  for (std::int64_t c = 0; c < op.out_c; ++c) {
    const double s = p->scale()->Get(c), t = p->shift()->Get(c);
    const word_t* wr = op.wbits.data() + c * op.w_planes * row;
    const double sw = static_cast<double>(level_sum(wr, row, row, op.w_planes));
    op.scale[c] = static_cast<float>(s * a.mul * wq.mul);
    op.b[c] = static_cast<float>(s * a.mul * wq.add);
    op.shift[c] = static_cast<float>(s * (a.add * wq.mul * sw + a.add * wq.add * op.k_bits) + t);
    for (std::int64_t k = 0; x.levels && k < taps; ++k) {
      // the -1 the file pads with, times the weights of this tap
      const double tap = wq.mul * level_sum(wr + k * wc, row, wc, op.w_planes) + wq.add * x.c;
      op.w[c * taps + k] = static_cast<float>(-s * tap);
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
  prepare_factors(p, op, x);
}

struct Geometry {
  std::int64_t h, w, c, oh, ow, wc, planes, row, in_ps;
  bool levels;
};

// Rows [m0, m1) of the im2col matrix: per output pixel, per plane, the KH*KW taps of wc
// words; padded taps hold level 0 (Levels) or bit 1 in every channel (Bits: -1).
void im2col(const word_t* in, const Geometry& g, const OpNode& op, std::int64_t m0, std::int64_t m1, word_t* a) {
  const word_t last = tail_mask(g.c);
  for (std::int64_t m = m0; m < m1; ++m) {
    const std::int64_t n = m / (g.oh * g.ow), oy = m / g.ow % g.oh, ox = m % g.ow;
    word_t* r = a + (m - m0) * g.planes * g.row;
    for (std::int64_t i = 0; i < op.kh; ++i)
      for (std::int64_t j = 0; j < op.kw; ++j) {
        const std::int64_t y = oy * op.sh - op.ph + i * op.dh, xx = ox * op.sw - op.pw + j * op.dw;
        const std::int64_t off = (i * op.kw + j) * g.wc;
        const bool inside = y >= 0 && y < g.h && xx >= 0 && xx < g.w;
        const word_t* src = in + ((n * g.h + y) * g.w + xx) * g.in_ps;
        for (std::int64_t q = 0; q < g.planes; ++q) {
          word_t* dst = r + q * g.row + off;
          if (inside) {
            std::memcpy(dst, src + q * g.wc, g.wc * sizeof(word_t));
          } else {
            for (std::int64_t k = 0; k < g.wc; ++k) dst[k] = g.levels ? 0 : (k + 1 < g.wc ? ~word_t{0} : last);
          }
        }
      }
  }
}

// The padded-tap correction of output pixel (oy, ox) for channel c (0 inside the map).
float pad_correction(const OpNode& op, const Geometry& g, std::int64_t oy, std::int64_t ox, std::int64_t c) {
  float s = 0.0f;
  for (std::int64_t i = 0; i < op.kh; ++i) {
    const std::int64_t y = oy * op.sh - op.ph + i * op.dh;
    for (std::int64_t j = 0; j < op.kw; ++j) {
      const std::int64_t x = ox * op.sw - op.pw + j * op.dw;
      if (y < 0 || y >= g.h || x < 0 || x >= g.w) s += op.w[c * op.kh * op.kw + i * op.kw + j];
    }
  }
  return s;
}

bool window_padded(const OpNode& op, const Geometry& g, std::int64_t oy, std::int64_t ox) {
  const std::int64_t y0 = oy * op.sh - op.ph, x0 = ox * op.sw - op.pw;
  return y0 < 0 || x0 < 0 || y0 + op.dh * (op.kh - 1) >= g.h || x0 + op.dw * (op.kw - 1) >= g.w;
}

void run(const RunContext& c, const OpNode& op) {
  const ValueInfo& x = c.value(op.in[0]);
  const ValueInfo& y = c.value(op.out);
  Geometry g{x.h, x.w, x.c, y.h, y.w, words_for_bits(x.c), x.planes, 0, c.ps(op.in[0]), x.levels};
  g.row = op.kh * op.kw * g.wc;
  const std::int64_t m = static_cast<std::int64_t>(c.batch) * y.h * y.w, n = op.out_c;
  const std::int64_t blocks = (m + kRowsPerBlock - 1) / kRowsPerBlock;
  const KbgemmKernel& k = kbgemm_kernel("auto");
  const word_t* in = c.wptr(op.in[0]);
  float* out = c.fptr(op.out);
  const std::int64_t out_ps = c.ps(op.out);
  pfor(c.pool, blocks, 1, [&](std::int64_t b0, std::int64_t b1) {
    thread_local ScratchBuffer<word_t> a_buf;
    thread_local ScratchBuffer<std::int32_t> c_buf;
    word_t* a = a_buf.get(kRowsPerBlock * g.planes * g.row);
    std::int32_t* acc = c_buf.get(kRowsPerBlock * (n + 1));
    std::int32_t* sa = acc + kRowsPerBlock * n;
    for (std::int64_t b = b0; b < b1; ++b) {
      const std::int64_t m0 = b * kRowsPerBlock, m1 = std::min(m, m0 + kRowsPerBlock);
      im2col(in, g, op, m0, m1, a);
      k.run(a, g.planes * g.row, op.wbits.data(), op.w_planes * g.row, 0, m1 - m0, 0, n, g.row,
            static_cast<int>(g.planes), op.w_planes, acc, n);
      kbit_row_sums(a, g.planes * g.row, m1 - m0, g.row, static_cast<int>(g.planes), sa);
      for (std::int64_t r = m0; r < m1; ++r) {
        const std::int32_t* p = acc + (r - m0) * n;
        const float s = static_cast<float>(sa[r - m0]);
        float* o = out + r * out_ps;
        for (std::int64_t ch = 0; ch < n; ++ch)
          o[ch] = op.scale[ch] * static_cast<float>(p[ch]) + op.b[ch] * s + op.shift[ch];
        const std::int64_t oy = r / g.ow % g.oh, ox = r % g.ow;
        if (g.levels && window_padded(op, g, oy, ox))
          for (std::int64_t ch = 0; ch < n; ++ch) o[ch] += pad_correction(op, g, oy, ox, ch);
        if (op.relu)
          for (std::int64_t ch = 0; ch < n; ++ch) o[ch] = std::max(o[ch], 0.0f);
      }
    }
  });
}

}  // namespace

const OpImpl kKbitConv2DOp = {&load, nullptr, &run};

}  // namespace bmx::rt
