// Sign: sign + bit-packing of a Float value into Bits, with the preceding BatchNorm folded
// into an optional per-channel scale and shift (bit = scale * x + shift < 0). Kernel:
// core/signpack (plain sign: core/bitpack). A 2-D [1, C] input gives 2-D Bits (one pixel).
#include "core/signpack/signpack.h"
#include "runtime/check.h"
#include "runtime/ops/op_util.h"
#include "runtime/registry.h"

namespace bmx::rt {

namespace {

void load(const fb::Op* fop, OpNode& op, const Graph& g, bool prepare) {
  OpChecker ck(g, op);
  const fb::Sign* p = fop->options_as_Sign();
  ck.arity(1);
  const ValueInfo& x = ck.input(0, false, 0);  // 2-D inputs need format 2 (2-D Bits values)
  read_scale_shift(ck, p, op, x.c, true, prepare);
  ck.output(x.rank, x.c, x.h, x.w, true);
}

void run(const RunContext& c, const OpNode& op) {
  const ValueInfo& x = c.value(op.in[0]);
  const ValueInfo& y = c.value(op.out);
  const std::int64_t pixels = static_cast<std::int64_t>(c.batch) * y.h * y.w;
  sign_pack(c.fptr(op.in[0]), pixels, x.c, c.ps(op.in[0]), op.scale.empty() ? nullptr : op.scale.data(),
            op.shift.empty() ? nullptr : op.shift.data(), c.wptr(op.out), c.pool);
}

}  // namespace

const OpImpl kSignOp = {&load, nullptr, &run};

}  // namespace bmx::rt
