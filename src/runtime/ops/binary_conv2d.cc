// BinaryConv2D: binary 2-D convolution on packed inputs (xnor + popcount, -1 padding)
// with the folded BatchNorm as a per-channel scale and shift of the match count, an
// optional ReLU and, for groups == 1, a residual Add fused in by the planner
// (fuse_residual_adds). Kernels: core/bconv2d (groups == 1, epilogue fused) and
// core/bconv2d_grouped (groups > 1).
#include <cstring>

#include "core/bconv2d/bconv2d.h"
#include "core/bconv2d_grouped/bconv2d_grouped.h"
#include "runtime/check.h"
#include "runtime/ops/conv_common.h"
#include "runtime/registry.h"

namespace bmx::rt {

namespace {

// The per-group convolution shape of the op (in_c = C_in / groups, out_c = C_out / groups).
BConv2DShape group_shape(const OpNode& op, const ValueInfo& x, int batch) {
  BConv2DShape s;
  s.batch = batch; s.in_h = x.h; s.in_w = x.w; s.in_c = x.c / op.groups; s.out_c = op.out_c / op.groups;
  s.kernel_h = op.kh; s.kernel_w = op.kw; s.stride_h = op.sh; s.stride_w = op.sw;
  s.pad_h = op.ph; s.pad_w = op.pw; s.dilation_h = op.dh; s.dilation_w = op.dw;
  return s;
}

void load(const fb::Op* fop, OpNode& op, const Graph& g, bool prepare) {
  OpChecker ck(g, op);
  const fb::BinaryConv2D* p = fop->options_as_BinaryConv2D();
  ck.arity(1);
  const ValueInfo& x = ck.input(0, true);
  read_conv_geometry(ck, p, op);
  if (p->in_channels() != x.c) {
    ck.fail("in_channels " + std::to_string(p->in_channels()) + " differs from the input's " + std::to_string(x.c));
  }
  check_conv_output(ck, p, op, x);
  const std::int64_t cg = x.c / op.groups, wg = words_for_bits(cg);
  op.k_bits = ck.mul(cg, op.kh * op.kw, "K");
  if (op.k_bits > kMaxReduction) ck.fail("reduction size too large");
  const std::int64_t nwords = ck.mul(ck.mul(op.out_c, op.kh * op.kw, "weight_bits"), wg, "weight_bits");
  ck.bytes(p->weight_bits(), nwords * 8, "weight_bits", false);
  ck.floats(p->scale(), op.out_c, "scale", false);
  ck.floats(p->shift(), op.out_c, "shift", false);
  if (!all_finite(p->scale()) || !all_finite(p->shift())) ck.fail("scale or shift is not finite");
  const std::uint8_t* wb = p->weight_bits()->data();
  check_weight_tails(ck, wb, nwords / wg, cg, "in_channels/groups");
  if (!prepare) return;
  op.wbits.resize(nwords);
  std::memcpy(op.wbits.data(), wb, nwords * 8);
  copy_floats(p->scale(), op.scale);
  copy_floats(p->shift(), op.shift);
  if (op.groups == 1) pack_binary_filters(op, x.c);
}

std::size_t work_bytes(const OpNode& op, const Graph& g, int batch, int /*threads*/) {
  if (op.groups == 1) return 0;  // epilogue fused in bconv2d (block-sized buffers of its own)
  BConv2DShape s = group_shape(op, g.values[op.in[0]], batch);
  s.in_c *= op.groups, s.out_c *= op.groups;
  return bconv2d_grouped_work_bytes(s, op.groups);
}

void run(const RunContext& c, const OpNode& op) {
  const ValueInfo& x = c.value(op.in[0]);
  BConvOutput o;
  o.scale = op.scale.data(), o.shift = op.shift.data(), o.relu = op.relu;
  o.out = c.fptr(op.out), o.out_ps = c.ps(op.out);
  double epi = 0.0;
  if (op.groups == 1) {
    // The scale/shift epilogue runs inside the convolution, block by block while the
    // int32 results are in cache (same arithmetic; counted as binary conv time).
    const bool res = op.fused_residual >= 0;
    o.residual = res ? c.fptr(op.fused_residual) : nullptr;
    o.residual_ps = res ? c.ps(op.fused_residual) : 0;
    bconv2d(c.wptr(op.in[0]), op.wbits.data(), group_shape(op, x, c.batch), o, c.pool, nullptr,
            op.wpanels.empty() ? nullptr : op.wpanels.data());
  } else {
    BConv2DShape s = group_shape(op, x, c.batch);
    s.in_c = x.c, s.out_c = op.out_c;
    bconv2d_grouped(c.wptr(op.in[0]), op.wbits.data(), s, op.groups, o, c.work, c.pool, nullptr,
                    c.timed ? &epi : nullptr);
  }
  if (c.timed) {
    // Report the scale/shift epilogue as BN/threshold work, not binary conv.
    c.kind_seconds[kBnThreshold] += epi;
    c.kind_seconds[kBinaryConv] -= epi;
  }
}

}  // namespace

const OpImpl kBinaryConv2DOp = {&load, &work_bytes, &run};

}  // namespace bmx::rt
