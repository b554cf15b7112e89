// Add: element-wise sum of two Float values of one shape (residual connections); in
// place when the planner allows, and nothing at all when the planner fused it into the
// preceding binary conv's epilogue (OpNode::fused_away).
#include "core/common/cpu.h"
#include "runtime/check.h"
#include "runtime/ops/op_util.h"
#include "runtime/registry.h"

namespace bmx::rt {

namespace {

BMX_SIMD_CLONES void add_rows(const float* a, std::int64_t a_ps, const float* b, std::int64_t b_ps, float* out,
                              std::int64_t out_ps, std::int64_t p0, std::int64_t p1, std::int64_t c) {
  for (std::int64_t p = p0; p < p1; ++p) {
    const float* x = a + p * a_ps;
    const float* y = b + p * b_ps;
    float* o = out + p * out_ps;
    for (std::int64_t ch = 0; ch < c; ++ch) o[ch] = x[ch] + y[ch];
  }
}

void load(const fb::Op* fop, OpNode& op, const Graph& g, bool prepare) {
  OpChecker ck(g, op);
  (void)fop;
  (void)prepare;
  ck.arity(2);
  const ValueInfo& a = ck.input(0, false, 0);
  const ValueInfo& b = ck.input(1, false, 0);
  if (a.rank != b.rank || a.c != b.c || a.h != b.h || a.w != b.w) ck.fail("inputs differ in shape");
  ck.output(a.rank, a.c, a.h, a.w, false);
}

void run(const RunContext& c, const OpNode& op) {
  if (op.fused_away) return;  // done in the preceding binary conv's epilogue
  const ValueInfo& y = c.value(op.out);
  const std::int64_t pixels = static_cast<std::int64_t>(c.batch) * y.h * y.w;
  pfor(c.pool, pixels, 256, [&](std::int64_t p0, std::int64_t p1) {
    add_rows(c.fptr(op.in[0]), c.ps(op.in[0]), c.fptr(op.in[1]), c.ps(op.in[1]), c.fptr(op.out), c.ps(op.out), p0,
             p1, y.c);
  });
}

}  // namespace

const OpImpl kAddOp = {&load, nullptr, &run};

}  // namespace bmx::rt
