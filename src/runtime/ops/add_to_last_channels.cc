// AddToLastChannels: adds input 1 (C1 channels) to the last C1 channels of input 0
// (MeliusNet's improvement block); in place when the planner allows.
#include <cstring>

#include "core/common/cpu.h"
#include "runtime/check.h"
#include "runtime/ops/op_util.h"
#include "runtime/registry.h"

namespace bmx::rt {

namespace {

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

void load(const fb::Op* fop, OpNode& op, const Graph& g, bool prepare) {
  OpChecker ck(g, op);
  (void)fop;
  (void)prepare;
  ck.arity(2);
  const ValueInfo& a = ck.input(0, false);
  const ValueInfo& b = ck.input(1, false);
  if (a.h != b.h || a.w != b.w) ck.fail("inputs differ in spatial size");
  if (b.c > a.c) ck.fail("input 1 has more channels than input 0");
  ck.output(4, a.c, a.h, a.w, false);
}

void run(const RunContext& c, const OpNode& op) {
  const ValueInfo& x = c.value(op.in[0]);
  const ValueInfo& y = c.value(op.out);
  const std::int64_t pixels = static_cast<std::int64_t>(c.batch) * y.h * y.w;
  const float* a = c.fptr(op.in[0]);
  const float* b = c.fptr(op.in[1]);
  float* out = c.fptr(op.out);
  const std::int64_t a_ps = c.ps(op.in[0]), b_ps = c.ps(op.in[1]), out_ps = c.ps(op.out);
  const std::int64_t ca = x.c, cb = c.value(op.in[1]).c;
  pfor(c.pool, pixels, 256, [&](std::int64_t p0, std::int64_t p1) {
    add_last_rows(a, a_ps, ca, b, b_ps, cb, out, out_ps, p0, p1);
  });
}

}  // namespace

const OpImpl kAddToLastChannelsOp = {&load, nullptr, &run};

}  // namespace bmx::rt
