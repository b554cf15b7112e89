// Quantize: the k-bit activation quantizer (BMXNet 2's 'round', DoReFa-Net's activations)
// with the preceding BatchNorm folded in, Float -> Levels of k planes:
//   L = round(clip(scale[c] * x + shift[c], 0, 1) * (2^k - 1))   (halves away from zero),
// in float32 as MXNet computes round(clip(x, 0, 1) * n); bit i of L goes to plane i.
// Kernel: core/signpack (level_pack).
#include "core/signpack/signpack.h"
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
  read_scale_shift(ck, p, op, x.c, true, prepare);
  const ValueInfo& y = g.values[op.out];
  if (!y.levels) ck.fail("output '" + y.name + "' must be a Levels value, is " + shape_str(y));
  ck.output(4, x.c, x.h, x.w, true, y.planes);
}

void run(const RunContext& c, const OpNode& op) {
  const ValueInfo& x = c.value(op.in[0]);
  const ValueInfo& y = c.value(op.out);
  const std::int64_t pixels = static_cast<std::int64_t>(c.batch) * y.h * y.w;
  const float* in = c.fptr(op.in[0]);
  word_t* out = c.wptr(op.out);
  const std::int64_t in_ps = c.ps(op.in[0]);  // Levels are never views: planes * words per pixel
  const float* scale = op.scale.empty() ? nullptr : op.scale.data();
  const float* shift = op.shift.empty() ? nullptr : op.shift.data();
  level_pack(in, pixels, x.c, in_ps, scale, shift, y.planes, out, c.pool);
}

}  // namespace

const OpImpl kQuantizeOp = {&load, nullptr, &run};

}  // namespace bmx::rt
