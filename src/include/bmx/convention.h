// bmx bit conventions: the single source of truth for the C++ side.
//
// Rastegari et al. (XNOR-Net, 2016) / Bethge et al. (BMXNet-v2, 2019) binary layers map a
// real value to +-1 with sign(0) = +1. For xnor-popcount arithmetic each +-1 value is one
// bit:
//   * bit = 1  iff  value < 0   (-1 -> 1, +1 -> 0, 0 -> 0, NaN -> 0)
//   * element i of the packed axis is bit (i % 64) of 64-bit word (i / 64), LSB first
//   * bits past the true length K (the tail of the last word) are 0 in both operands,
//     so they cancel in xor and never count.
// The dot product of two +-1 vectors of length K is  K - 2 * popcount(a xor b);
// BMXNet's 1-bit QConv2D/QDense output ("offset" form, (dot + K) / 2) is K - popcount.
// Binary convolutions pad with -1: a padded position is an all-ones word, which is free.
// The Python mirror is bmx/convention.py; tests check that both agree.
#pragma once

#include <cstdint>

namespace bmx {

using word_t = std::uint64_t;
constexpr int kWordBits = 64;
// Packed value of a -1 padding word (every bit set).
constexpr word_t kMinusOneWord = ~word_t{0};

// sign with sign(0) = +1.
constexpr float sign(float x) { return x < 0.0f ? -1.0f : 1.0f; }
// The bit that stores x.
constexpr bool to_bit(float x) { return x < 0.0f; }
constexpr bool to_bit(std::int8_t x) { return x < 0; }
// Number of 64-bit words needed for k bits.
constexpr std::int64_t words_for_bits(std::int64_t k) { return (k + kWordBits - 1) / kWordBits; }
// Mask of the valid bits in the last word of a k-bit row (all ones when k % 64 == 0).
constexpr word_t tail_mask(std::int64_t k) {
  return (k % kWordBits) == 0 ? ~word_t{0} : ((word_t{1} << (k % kWordBits)) - 1);
}
// Accumulator-to-output math, documented once (see header comment).
constexpr std::int32_t xnor_dot(std::int32_t k, std::int32_t popcount_xor) { return k - 2 * popcount_xor; }
constexpr std::int32_t match_count(std::int32_t k, std::int32_t popcount_xor) { return k - popcount_xor; }

}  // namespace bmx
