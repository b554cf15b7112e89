// Dense: the float classifier, out[N, U] = x[N, F] * W^T + b, on a 2-D value or a 4-D
// one flattened in NCHW order (the weight columns are re-ordered at load to the engine's
// NHWC storage order; a strided view is made contiguous in scratch first).
#include <cstring>

#include "runtime/check.h"
#include "runtime/ops/op_util.h"
#include "runtime/registry.h"

namespace bmx::rt {

namespace {

void dense(const float* x, std::int64_t ldx, std::int64_t batch, std::int64_t f, const float* w, const float* b,
           std::int64_t units, float* out, ThreadPool* pool) {
  // Split the units over threads: each part is a GEMM against a slice of W.
  pfor(pool, units, 64, [&](std::int64_t u0, std::int64_t u1) {
    sgemm(batch, u1 - u0, f, x, ldx, w + u0 * f, f, true, out + u0, units);
    for (std::int64_t n = 0; n < batch; ++n)
      for (std::int64_t u = u0; u < u1; ++u) out[n * units + u] += b[u];
  });
}

void load(const fb::Op* fop, OpNode& op, const Graph& g, bool prepare) {
  OpChecker ck(g, op);
  const fb::Dense* p = fop->options_as_Dense();
  ck.arity(1);
  const ValueInfo& x = ck.input(0, false, 0);
  op.out_c = p->units();
  if (op.out_c < 1 || op.out_c > kMaxDim) ck.fail("units " + std::to_string(op.out_c) + " out of range");
  const std::int64_t f = x.c * x.h * x.w;
  const std::int64_t nw = ck.mul(op.out_c, f, "weight");
  ck.bytes(p->weight(), nw * 4, "weight", false);
  ck.bytes(p->bias(), op.out_c * 4, "bias", true);
  if (!all_finite_bytes(p->weight()) || !all_finite_bytes(p->bias())) ck.fail("weight or bias is not finite");
  ck.output(2, op.out_c, 1, 1, false);
  if (!prepare) return;
  // Columns in NCHW flatten order -> the engine's NHWC storage order.
  op.w.resize(nw);
  const std::uint8_t* src = p->weight()->data();
  const std::int64_t hw = x.h * x.w;
  for (std::int64_t u = 0; u < op.out_c; ++u)
    for (std::int64_t c = 0; c < x.c; ++c)
      for (std::int64_t q = 0; q < hw; ++q)
        std::memcpy(&op.w[u * f + q * x.c + c], src + 4 * (u * f + c * hw + q), 4);
  op.b.resize(op.out_c);
  if (p->bias() && p->bias()->size()) std::memcpy(op.b.data(), p->bias()->data(), op.out_c * 4);
}

// A 4-D input is copied to contiguous rows when it is a strided view (run below).
std::size_t work_bytes(const OpNode& op, const Graph& g, int batch, int /*threads*/) {
  const ValueInfo& x = g.values[op.in[0]];
  if (x.rank == 4 && x.h * x.w > 1) return static_cast<std::size_t>(batch) * x.c * x.h * x.w * sizeof(float);
  return 0;
}

void run(const RunContext& c, const OpNode& op) {
  const ValueInfo& x = c.value(op.in[0]);
  const int n = c.batch;
  const float* in = c.fptr(op.in[0]);
  const std::int64_t f = x.c * x.h * x.w;
  std::int64_t ld = c.ps(op.in[0]) * x.h * x.w;  // row of one sample
  if (x.h * x.w > 1 && c.ps(op.in[0]) != x.c) {
    float* tmp = reinterpret_cast<float*>(c.work);
    copy_channels(in, c.ps(op.in[0]), tmp, x.c, static_cast<std::int64_t>(n) * x.h * x.w, x.c, c.pool);
    in = tmp;
    ld = f;
  }
  dense(in, ld, n, f, op.w.data(), op.b.data(), op.out_c, c.fptr(op.out), c.pool);
}

}  // namespace

const OpImpl kDenseOp = {&load, &work_bytes, &run};

}  // namespace bmx::rt
