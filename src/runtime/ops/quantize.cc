// Quantize: the k-bit activation quantizer (BMXNet 2's 'round', DoReFa-Net's activations)
// with the preceding BatchNorm folded in, Float -> Levels of k planes:
//   L = round(clip(scale[c] * x + shift[c], 0, 1) * (2^k - 1))   (halves away from zero),
// in float32 as MXNet computes round(clip(x, 0, 1) * n); bit i of L goes to plane i.
#include <algorithm>
#include <cmath>

#include "runtime/check.h"
#include "runtime/ops/op_util.h"
#include "runtime/registry.h"

namespace bmx::rt {

namespace {

void load(const fb::Op* fop, OpNode& op, const Graph& g, bool prepare) {
  OpChecker ck(g, op);
  ck.since(3);
  const fb::Quantize* p = fop->options_as_Quantize();
  ck.arity(1);
  const ValueInfo& x = ck.input(0, false);
  check_scale_shift(ck, p->scale(), p->shift(), x.c, true);
  const ValueInfo& y = g.values[op.out];
  if (!y.levels) ck.fail("output '" + y.name + "' must be a Levels value, is " + shape_str(y));
  ck.output(4, x.c, x.h, x.w, true, y.planes);
  if (prepare && p->scale() && p->scale()->size()) {
    copy_floats(p->scale(), op.scale);
    copy_floats(p->shift(), op.shift);
  }
}

// One pixel: the levels of its c channels, 64 at a time, spread over the planes.
void quantize_pixel(const float* x, std::int64_t c, const float* scale, const float* shift, int planes,
                    word_t* out) {
  const float n = static_cast<float>((1 << planes) - 1);
  const std::int64_t words = words_for_bits(c);
  for (std::int64_t w = 0; w < words; ++w) {
    const std::int64_t c0 = w * kWordBits, len = std::min<std::int64_t>(kWordBits, c - c0);
    std::uint8_t lv[kWordBits];
    for (std::int64_t j = 0; j < len; ++j) {
      float v = x[c0 + j];
      if (scale) v = scale[c0 + j] * v + shift[c0 + j];
      v = v > 0.0f ? std::min(v, 1.0f) : 0.0f;
      lv[j] = static_cast<std::uint8_t>(std::round(v * n));
    }
    for (int i = 0; i < planes; ++i) {
      word_t bits = 0;
      for (std::int64_t j = 0; j < len; ++j) bits |= static_cast<word_t>((lv[j] >> i) & 1u) << j;
      out[i * words + w] = bits;
    }
  }
}

void run(const RunContext& c, const OpNode& op) {
  const ValueInfo& x = c.value(op.in[0]);
  const ValueInfo& y = c.value(op.out);
  const std::int64_t pixels = static_cast<std::int64_t>(c.batch) * y.h * y.w;
  const float* in = c.fptr(op.in[0]);
  word_t* out = c.wptr(op.out);
  const std::int64_t in_ps = c.ps(op.in[0]), out_ps = c.ps(op.out);
  const float* scale = op.scale.empty() ? nullptr : op.scale.data();
  const float* shift = op.shift.empty() ? nullptr : op.shift.data();
  pfor(c.pool, pixels, 64, [&](std::int64_t p0, std::int64_t p1) {
    for (std::int64_t p = p0; p < p1; ++p) quantize_pixel(in + p * in_ps, x.c, scale, shift, y.planes, out + p * out_ps);
  });
}

}  // namespace

const OpImpl kQuantizeOp = {&load, nullptr, &run};

}  // namespace bmx::rt
