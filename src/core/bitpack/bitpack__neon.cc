// NEON bit-packing: compare x < 0 per lane (NaN and -0.0 give 0), then fold the lane
// masks into bits with a per-lane weight and pairwise additions.
#include <arm_neon.h>

#include "core/bitpack/kernels.h"

namespace bmx::kernels {

namespace {
// 16 bytes, each 0xFF or 0, to a 16-bit mask (byte i -> bit i).
inline unsigned movemask_u8(uint8x16_t m) {
  static const uint8_t kWeights[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const uint8x16_t bits = vandq_u8(m, vld1q_u8(kWeights));
  const uint8x8_t lo = vget_low_u8(bits), hi = vget_high_u8(bits);
  // Sum the 8 weighted bytes of each half (three pairwise additions).
  uint8x8_t s = vpadd_u8(lo, hi);
  s = vpadd_u8(s, s);
  s = vpadd_u8(s, s);
  return static_cast<unsigned>(vget_lane_u8(s, 0)) | (static_cast<unsigned>(vget_lane_u8(s, 1)) << 8);
}
}  // namespace

void pack_f32__neon(const float* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride,
                    word_t* out, std::int64_t out_stride) {
  const float32x4_t zero = vdupq_n_f32(0.0f);
  pack_rows_by_word(in, rows, k, in_stride, out, out_stride, [zero](const float* x) {
    word_t w = 0;
    for (int q = 0; q < 4; ++q) {
      // 16 floats -> 16 byte masks -> 16 bits.
      const uint32x4_t m0 = vcltq_f32(vld1q_f32(x + 16 * q), zero);
      const uint32x4_t m1 = vcltq_f32(vld1q_f32(x + 16 * q + 4), zero);
      const uint32x4_t m2 = vcltq_f32(vld1q_f32(x + 16 * q + 8), zero);
      const uint32x4_t m3 = vcltq_f32(vld1q_f32(x + 16 * q + 12), zero);
      const uint16x8_t h01 = vcombine_u16(vmovn_u32(m0), vmovn_u32(m1));
      const uint16x8_t h23 = vcombine_u16(vmovn_u32(m2), vmovn_u32(m3));
      const uint8x16_t b = vcombine_u8(vmovn_u16(h01), vmovn_u16(h23));
      w |= static_cast<word_t>(movemask_u8(b)) << (16 * q);
    }
    return w;
  });
}

void pack_i8__neon(const std::int8_t* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride,
                   word_t* out, std::int64_t out_stride) {
  const int8x16_t zero = vdupq_n_s8(0);
  pack_rows_by_word(in, rows, k, in_stride, out, out_stride, [zero](const std::int8_t* x) {
    word_t w = 0;
    for (int q = 0; q < 4; ++q)
      w |= static_cast<word_t>(movemask_u8(vcltq_s8(vld1q_s8(x + 16 * q), zero))) << (16 * q);
    return w;
  });
}

}  // namespace bmx::kernels
