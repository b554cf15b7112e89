// Affine: per-channel scale and shift of a Float value (a BatchNorm kept in float, e.g.
// after a binary conv's output is concatenated), with an optional ReLU; in place when
// the planner allows. The element-wise kernel here also runs Relu (ops/relu.cc).
#include "core/common/cpu.h"
#include "runtime/check.h"
#include "runtime/ops/op_util.h"
#include "runtime/registry.h"

namespace bmx::rt {

namespace {

BMX_SIMD_CLONES void affine_rows(const float* in, std::int64_t in_ps, float* out, std::int64_t out_ps,
                                 std::int64_t p0, std::int64_t p1, std::int64_t c, const float* scale,
                                 const float* shift, bool relu) {
  for (std::int64_t p = p0; p < p1; ++p) {
    const float* s = in + p * in_ps;
    float* o = out + p * out_ps;
    if (scale) {
      if (relu) {
        for (std::int64_t ch = 0; ch < c; ++ch) o[ch] = std::max(s[ch] * scale[ch] + shift[ch], 0.0f);
      } else {
        for (std::int64_t ch = 0; ch < c; ++ch) o[ch] = s[ch] * scale[ch] + shift[ch];
      }
    } else {
      for (std::int64_t ch = 0; ch < c; ++ch) o[ch] = relu_if(s[ch], relu);
    }
  }
}

}  // namespace

void affine(const float* in, std::int64_t in_ps, float* out, std::int64_t out_ps, std::int64_t pixels,
            std::int64_t c, const float* scale, const float* shift, bool relu, ThreadPool* pool) {
  pfor(pool, pixels, 256, [&](std::int64_t p0, std::int64_t p1) {
    affine_rows(in, in_ps, out, out_ps, p0, p1, c, scale, shift, relu);
  });
}

namespace {

void load(const fb::Op* fop, OpNode& op, const Graph& g, bool prepare) {
  OpChecker ck(g, op);
  const fb::Affine* p = fop->options_as_Affine();
  ck.arity(1);
  const ValueInfo& x = ck.input(0, false, 0);
  read_scale_shift(ck, p, op, x.c, false, prepare);
  op.relu = read_relu(ck, p);
  ck.output(x.rank, x.c, x.h, x.w, false);
}

void run(const RunContext& c, const OpNode& op) {
  const ValueInfo& x = c.value(op.in[0]);
  const ValueInfo& y = c.value(op.out);
  const std::int64_t pixels = static_cast<std::int64_t>(c.batch) * y.h * y.w;
  affine(c.fptr(op.in[0]), c.ps(op.in[0]), c.fptr(op.out), c.ps(op.out), pixels, x.c, op.scale.data(),
         op.shift.data(), op.relu, c.pool);
}

}  // namespace

const OpImpl kAffineOp = {&load, nullptr, &run};

}  // namespace bmx::rt
