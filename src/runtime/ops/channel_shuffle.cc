// ChannelShuffle: (groups, C / groups) -> (C / groups, groups) channel permutation of a
// Float value (ShuffleNet-style, after grouped convs).
#include "runtime/check.h"
#include "runtime/ops/op_util.h"
#include "runtime/registry.h"

namespace bmx::rt {

namespace {

void channel_shuffle(const float* in, std::int64_t in_ps, float* out, std::int64_t out_ps, std::int64_t pixels,
                     std::int64_t c, std::int64_t groups, ThreadPool* pool) {
  const std::int64_t per = c / groups;
  pfor(pool, pixels, 256, [&](std::int64_t p0, std::int64_t p1) {
    for (std::int64_t p = p0; p < p1; ++p) {
      const float* s = in + p * in_ps;
      float* o = out + p * out_ps;
      // (groups, per) -> (per, groups): out channel i*groups + gi <- in channel gi*per + i.
      for (std::int64_t gi = 0; gi < groups; ++gi)
        for (std::int64_t i = 0; i < per; ++i) o[i * groups + gi] = s[gi * per + i];
    }
  });
}

void load(const fb::Op* fop, OpNode& op, const Graph& g, bool prepare) {
  OpChecker ck(g, op);
  (void)prepare;
  const fb::ChannelShuffle* p = fop->options_as_ChannelShuffle();
  ck.arity(1);
  const ValueInfo& x = ck.input(0, false);
  op.groups = p->groups();
  if (op.groups < 1 || x.c % op.groups) {
    ck.fail("groups " + std::to_string(op.groups) + " must divide the channels " + std::to_string(x.c));
  }
  ck.output(4, x.c, x.h, x.w, false);
}

void run(const RunContext& c, const OpNode& op) {
  const ValueInfo& x = c.value(op.in[0]);
  const ValueInfo& y = c.value(op.out);
  const std::int64_t pixels = static_cast<std::int64_t>(c.batch) * y.h * y.w;
  channel_shuffle(c.fptr(op.in[0]), c.ps(op.in[0]), c.fptr(op.out), c.ps(op.out), pixels, x.c, op.groups, c.pool);
}

}  // namespace

const OpImpl kChannelShuffleOp = {&load, nullptr, &run};

}  // namespace bmx::rt
