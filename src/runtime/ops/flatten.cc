// Flatten: a 4-D Float value as [N, C * H * W] in NCHW order (the engine stores NHWC).
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
  ck.output(2, x.c * x.h * x.w, 1, 1, false);
}

void run(const RunContext& c, const OpNode& op) {
  // NCHW flatten order from NHWC storage.
  const ValueInfo& x = c.value(op.in[0]);
  const int n = c.batch;
  const float* in = c.fptr(op.in[0]);
  float* out = c.fptr(op.out);
  const std::int64_t hw = x.h * x.w, s = c.ps(op.in[0]), f = x.c * hw;
  for (std::int64_t b = 0; b < n; ++b)
    for (std::int64_t ch = 0; ch < x.c; ++ch)
      for (std::int64_t p = 0; p < hw; ++p) out[b * f + ch * hw + p] = in[(b * hw + p) * s + ch];
}

}  // namespace

const OpImpl kFlattenOp = {&load, nullptr, &run};

}  // namespace bmx::rt
