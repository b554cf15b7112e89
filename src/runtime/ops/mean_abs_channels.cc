// MeanAbsChannels: XNOR-Net's input magnitude (Rastegari et al., "XNOR-Net", 2016),
// y[p] = sum over c of |x[p, c]| / C per pixel, Float [1, C, H, W] -> [1, 1, H, W]. A
// following Pool2D (Avg, count_include_pad) averages it over each conv window: the
// per-position input scale K of an XNOR convolution (format 2).
#include <cmath>

#include "runtime/check.h"
#include "runtime/ops/op_util.h"
#include "runtime/registry.h"

namespace bmx::rt {

namespace {

void load(const fb::Op* fop, OpNode& op, const Graph& g, bool prepare) {
  (void)fop;
  (void)prepare;
  OpChecker ck(g, op);
  ck.since(2);
  ck.arity(1);
  const ValueInfo& x = ck.input(0, false);
  ck.output(4, 1, x.h, x.w, false);
}

void run(const RunContext& c, const OpNode& op) {
  const ValueInfo& x = c.value(op.in[0]);
  const std::int64_t pixels = static_cast<std::int64_t>(c.batch) * x.h * x.w;
  const float* in = c.fptr(op.in[0]);
  float* out = c.fptr(op.out);
  const std::int64_t in_ps = c.ps(op.in[0]), out_ps = c.ps(op.out);
  const float inv = 1.0f / static_cast<float>(x.c);
  pfor(c.pool, pixels, 64, [&](std::int64_t p0, std::int64_t p1) {
    for (std::int64_t p = p0; p < p1; ++p) {
      const float* v = in + p * in_ps;
      float s = 0.0f;
      for (std::int64_t ch = 0; ch < x.c; ++ch) s += std::fabs(v[ch]);
      out[p * out_ps] = s * inv;
    }
  });
}

}  // namespace

const OpImpl kMeanAbsChannelsOp = {&load, nullptr, &run};

}  // namespace bmx::rt
