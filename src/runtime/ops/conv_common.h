// Load checks shared by the two convolution ops (ops/conv2d.cc, ops/binary_conv2d.cc):
// window, groups and output channels of their tables, and the output shape.
#pragma once

#include <string>

#include "runtime/check.h"

namespace bmx::rt {

// Window, groups and output channels shared by Conv2D and BinaryConv2D tables.
template <typename ConvTable>
void read_conv_geometry(OpChecker& ck, const ConvTable* p, OpNode& op) {
  ck.pair(p->kernel(), "kernel", 1, kMaxWindow, -1, op.kh, op.kw);
  ck.pair(p->stride(), "stride", 1, kMaxWindow, 1, op.sh, op.sw);
  ck.pair(p->pad(), "pad", 0, kMaxWindow, 0, op.ph, op.pw);
  ck.pair(p->dilation(), "dilation", 1, kMaxWindow, 1, op.dh, op.dw);
  op.groups = p->groups();
  op.out_c = p->out_channels();
}

// Channel/group/activation checks and the output shape, shared by both conv tables.
template <typename ConvTable>
void check_conv_output(OpChecker& ck, const ConvTable* p, OpNode& op, const ValueInfo& x) {
  if (op.out_c < 1 || op.out_c > kMaxDim) ck.fail("out_channels " + std::to_string(op.out_c) + " out of range");
  if (op.groups < 1 || x.c % op.groups || op.out_c % op.groups) {
    ck.fail("groups " + std::to_string(op.groups) + " must divide in_channels " + std::to_string(x.c) +
            " and out_channels " + std::to_string(op.out_c));
  }
  op.relu = read_relu(ck, p);
  const std::int64_t eh = op.dh * (op.kh - 1) + 1, ew = op.dw * (op.kw - 1) + 1;
  if (x.h + 2 * op.ph < eh || x.w + 2 * op.pw < ew) ck.fail("kernel larger than the padded input");
  const std::int64_t oh = (x.h + 2 * op.ph - eh) / op.sh + 1, ow = (x.w + 2 * op.pw - ew) / op.sw + 1;
  ck.output(4, op.out_c, oh, ow, false);
}

}  // namespace bmx::rt
