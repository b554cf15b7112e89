// Concat: channel concatenation of Float values. The planner (planner.cc) places most
// inputs directly in their slice of the output, so this usually copies nothing.
#include "runtime/check.h"
#include "runtime/ops/op_util.h"
#include "runtime/registry.h"

namespace bmx::rt {

namespace {

void load(const fb::Op* fop, OpNode& op, const Graph& g, bool prepare) {
  OpChecker ck(g, op);
  (void)fop;
  (void)prepare;
  if (op.in.empty()) ck.fail("expected at least 1 input");
  const ValueInfo& a = ck.input(0, false);
  std::int64_t c = 0;
  for (std::size_t i = 0; i < op.in.size(); ++i) {
    const ValueInfo& v = ck.input(i, false);
    if (v.h != a.h || v.w != a.w) ck.fail("input " + std::to_string(i) + " has a different spatial size");
    c += v.c;
  }
  if (c > kMaxDim) ck.fail("too many channels");
  ck.output(4, c, a.h, a.w, false);
}

void run(const RunContext& c, const OpNode& op) {
  const ValueInfo& y = c.value(op.out);
  const std::int64_t pixels = static_cast<std::int64_t>(c.batch) * y.h * y.w;
  std::int64_t off = 0;
  float* out = c.fptr(op.out);
  for (int v : op.in) {
    const float* src = c.fptr(v);
    // Inputs placed in their slice by the planner are already there.
    if (src != out + off || c.ps(v) != c.ps(op.out)) {
      copy_channels(src, c.ps(v), out + off, c.ps(op.out), pixels, c.value(v).c, c.pool);
    }
    off += c.value(v).c;
  }
}

}  // namespace

const OpImpl kConcatOp = {&load, nullptr, &run};

}  // namespace bmx::rt
