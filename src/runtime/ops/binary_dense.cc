// BinaryDense: a binary fully connected layer on packed inputs (xnor + popcount) with the
// folded offset form, BatchNorm and optional weight scaling as a per-unit scale and shift
// of the match count, then an optional ReLU (format 2). Over a [C, H, W] input it is the
// binary convolution whose kernel covers the whole input (H x W, no padding, one output
// pixel), so it runs the core/bconv2d kernel with its fused epilogue.
#include <cstring>

#include "core/bconv2d/bconv2d.h"
#include "runtime/check.h"
#include "runtime/ops/conv_common.h"
#include "runtime/registry.h"

namespace bmx::rt {

namespace {

BConv2DShape whole_input_conv(const OpNode& op, const ValueInfo& x, int batch) {
  BConv2DShape s;
  s.batch = batch; s.in_h = x.h; s.in_w = x.w; s.in_c = x.c; s.out_c = op.out_c;
  s.kernel_h = op.kh; s.kernel_w = op.kw;
  return s;
}

void load(const fb::Op* fop, OpNode& op, const Graph& g, bool prepare) {
  OpChecker ck(g, op);
  ck.since(2);
  const fb::BinaryDense* p = fop->options_as_BinaryDense();
  ck.arity(1);
  const ValueInfo& x = ck.input(0, true, 0);
  op.out_c = p->units();
  if (op.out_c < 1 || op.out_c > kMaxDim) ck.fail("units " + std::to_string(op.out_c) + " out of range");
  op.kh = x.h, op.kw = x.w;
  op.k_bits = ck.mul(x.c, x.h * x.w, "K");
  if (op.k_bits > kMaxReduction) ck.fail("reduction size too large");
  op.relu = read_relu(ck, p);
  const std::int64_t rows = ck.mul(op.out_c, x.h * x.w, "weight_bits");
  const std::int64_t nwords = ck.mul(rows, words_for_bits(x.c), "weight_bits");
  ck.bytes(p->weight_bits(), nwords * 8, "weight_bits", false);
  ck.floats(p->scale(), op.out_c, "scale", false);
  ck.floats(p->shift(), op.out_c, "shift", false);
  if (!all_finite(p->scale()) || !all_finite(p->shift())) ck.fail("scale or shift is not finite");
  check_weight_tails(ck, p->weight_bits()->data(), rows, x.c, "the input's channels");
  ck.output(2, op.out_c, 1, 1, false);
  if (!prepare) return;
  op.wbits.resize(nwords);
  std::memcpy(op.wbits.data(), p->weight_bits()->data(), nwords * 8);
  copy_floats(p->scale(), op.scale);
  copy_floats(p->shift(), op.shift);
  pack_binary_filters(op, x.c);
}

void run(const RunContext& c, const OpNode& op) {
  BConvOutput o;
  o.scale = op.scale.data(), o.shift = op.shift.data(), o.relu = op.relu;
  o.out = c.fptr(op.out), o.out_ps = c.ps(op.out);
  bconv2d(c.wptr(op.in[0]), op.wbits.data(), whole_input_conv(op, c.value(op.in[0]), c.batch), o, c.pool, nullptr,
          op.wpanels.empty() ? nullptr : op.wpanels.data());
}

}  // namespace

const OpImpl kBinaryDenseOp = {&load, nullptr, &run};

}  // namespace bmx::rt
