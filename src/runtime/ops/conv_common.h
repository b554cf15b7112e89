// Load checks shared by the two convolution ops (ops/conv2d.cc, ops/binary_conv2d.cc):
// window, groups and output channels of their tables, and the output shape; the filter
// packing shared by the binary ops (BinaryConv2D, BinaryDense).
#pragma once

#include <cstring>
#include <string>

#include "core/bconv2d/bconv2d.h"
#include "core/bgemm/bgemm.h"
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

// Tail bits past `c` in the last word of each of `rows` rows of packed weights must be 0
// (bmx/convention.h), or they would count in popcount.
inline void check_weight_tails(const OpChecker& ck, const std::uint8_t* wb, std::int64_t rows, std::int64_t c,
                               const char* what) {
  const std::int64_t words = words_for_bits(c);
  const word_t mask = tail_mask(c);
  for (std::int64_t r = 0; r < rows; ++r) {
    word_t last;
    std::memcpy(&last, wb + 8 * (r * words + words - 1), 8);
    if (last & ~mask) {
      ck.fail("weight_bits row " + std::to_string(r) + " has bits set past " + what + " = " + std::to_string(c) +
              " (tail bits must be 0)");
    }
  }
}

// op.wbits ([out_c][kh][kw][words(in_c)], one group) re-arranged once for the auto bgemm
// kernel (its panel layout), so no thread re-arranges filters per call; nothing when the
// kernel has no packed form.
inline void pack_binary_filters(OpNode& op, std::int64_t in_c) {
  BConv2DShape s;
  s.in_h = s.in_w = 1, s.in_c = in_c, s.out_c = op.out_c, s.kernel_h = op.kh, s.kernel_w = op.kw;
  const BgemmKernel& k = bgemm_kernel("auto");
  const std::int64_t n = bconv2d_packed_filter_words(s, k);
  if (n <= 0) return;
  op.wpanels.resize(static_cast<std::size_t>(n), /*zero=*/false);
  bconv2d_pack_filter(op.wbits.data(), s, k, op.wpanels.data());
}

}  // namespace bmx::rt
