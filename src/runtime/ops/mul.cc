// Mul: element-wise product y = a * b of two Float values, b of a's shape or of one channel
// (broadcast over a's channels: XNOR-Net's per-position input scale); in place when the
// planner allows (format 2).
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
  ck.arity(2);
  const ValueInfo& a = ck.input(0, false, 0);
  const ValueInfo& b = ck.input(1, false, 0);
  if (a.rank != b.rank || a.h != b.h || a.w != b.w || (b.c != a.c && b.c != 1)) {
    ck.fail("the second input must have the first's shape or one channel, is " + shape_str(b) + " against " +
            shape_str(a));
  }
  ck.output(a.rank, a.c, a.h, a.w, false);
}

void run(const RunContext& c, const OpNode& op) {
  const ValueInfo& y = c.value(op.out);
  const bool bcast = c.value(op.in[1]).c == 1;
  const float* a = c.fptr(op.in[0]);
  const float* b = c.fptr(op.in[1]);
  float* out = c.fptr(op.out);
  const std::int64_t a_ps = c.ps(op.in[0]), b_ps = c.ps(op.in[1]), o_ps = c.ps(op.out);
  const std::int64_t pixels = static_cast<std::int64_t>(c.batch) * y.h * y.w;
  pfor(c.pool, pixels, 256, [&](std::int64_t p0, std::int64_t p1) {
    for (std::int64_t p = p0; p < p1; ++p) {
      const float* x = a + p * a_ps;
      const float* s = b + p * b_ps;
      float* o = out + p * o_ps;
      if (bcast) {
        const float k = s[0];
        for (std::int64_t ch = 0; ch < y.c; ++ch) o[ch] = x[ch] * k;
      } else {
        for (std::int64_t ch = 0; ch < y.c; ++ch) o[ch] = x[ch] * s[ch];
      }
    }
  });
}

}  // namespace

const OpImpl kMulOp = {&load, nullptr, &run};

}  // namespace bmx::rt
