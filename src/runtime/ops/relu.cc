// Relu: max(x, 0) of a Float value, element-wise (in place when the planner allows);
// the kernel is affine() without scale (ops/affine.cc).
#include "runtime/check.h"
#include "runtime/ops/op_util.h"
#include "runtime/registry.h"

namespace bmx::rt {

namespace {

void load(const fb::Op* fop, OpNode& op, const Graph& g, bool prepare) {
  OpChecker ck(g, op);
  (void)fop;
  (void)prepare;
  ck.arity(1);
  const ValueInfo& x = ck.input(0, false, 0);
  ck.output(x.rank, x.c, x.h, x.w, false);
}

void run(const RunContext& c, const OpNode& op) {
  const ValueInfo& x = c.value(op.in[0]);
  const ValueInfo& y = c.value(op.out);
  const std::int64_t pixels = static_cast<std::int64_t>(c.batch) * y.h * y.w;
  affine(c.fptr(op.in[0]), c.ps(op.in[0]), c.fptr(op.out), c.ps(op.out), pixels, x.c, nullptr, nullptr, true,
         c.pool);
}

}  // namespace

const OpImpl kReluOp = {&load, nullptr, &run};

}  // namespace bmx::rt
