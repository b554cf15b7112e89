// Grouped binary convolution: channel slicing, bconv2d per group into a reused int32
// buffer, and the scale/shift epilogue per group (see bconv2d_grouped.h).
#include "core/bconv2d_grouped/bconv2d_grouped.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>

#include "core/common/threadpool.h"

namespace bmx {

namespace {

std::size_t acc_bytes(const BConv2DShape& s, std::int64_t groups) {
  const std::int64_t out_pixels = s.batch * s.out_h() * s.out_w();
  return (static_cast<std::size_t>(out_pixels) * (s.out_c / groups) * sizeof(std::int32_t) + 63) / 64 * 64;
}

}  // namespace

std::size_t bconv2d_grouped_work_bytes(const BConv2DShape& s, std::int64_t groups) {
  std::size_t bytes = acc_bytes(s, groups);
  if (groups > 1) {
    bytes += static_cast<std::size_t>(s.batch) * s.in_h * s.in_w * words_for_bits(s.in_c / groups) * sizeof(word_t);
  }
  return bytes;
}

void slice_channels(const word_t* in, std::int64_t pixels, std::int64_t in_words, std::int64_t bit0, std::int64_t cg,
                    word_t* out, ThreadPool* pool) {
  const std::int64_t wg = words_for_bits(cg);
  const word_t mask = tail_mask(cg);
  pfor(pool, pixels, 256, [&](std::int64_t p0, std::int64_t p1) {
    for (std::int64_t p = p0; p < p1; ++p) {
      const word_t* row = in + p * in_words;
      word_t* dst = out + p * wg;
      for (std::int64_t j = 0; j < wg; ++j) {
        const std::int64_t b = bit0 + j * kWordBits, q = b / kWordBits, sh = b % kWordBits;
        word_t v = row[q] >> sh;
        if (sh && q + 1 < in_words) v |= row[q + 1] << (kWordBits - sh);
        dst[j] = (j == wg - 1) ? (v & mask) : v;
      }
    }
  });
}

void bconv2d_grouped(const word_t* input, const word_t* filter, const BConv2DShape& s, std::int64_t groups,
                     const BConvOutput& out, void* work, ThreadPool* pool, const BgemmKernel* kernel,
                     double* epilogue_seconds) {
  auto bad = [](const std::string& m) { throw std::invalid_argument("bconv2d_grouped: " + m); };
  if (groups < 1 || s.in_c < 1 || s.out_c < 1 || s.in_c % groups || s.out_c % groups) {
    bad("groups " + std::to_string(groups) + " must divide in_c " + std::to_string(s.in_c) + " and out_c " +
        std::to_string(s.out_c));
  }
  if (!out.scale || !out.shift) bad("scale and shift are required");
  if (out.residual) bad("a residual is not supported");
  if (!work || !out.out) bad("null work or output buffer");
  const std::int64_t cg = s.in_c / groups, og = s.out_c / groups;
  if (out.out_ps < s.out_c) bad("output pixel stride below out_c");
  const std::int64_t wg = words_for_bits(cg), in_words = words_for_bits(s.in_c);
  const std::int64_t out_pixels = s.batch * s.out_h() * s.out_w();
  const std::int64_t in_pixels = s.batch * s.in_h * s.in_w;
  auto* acc = static_cast<std::int32_t*>(work);
  word_t* slice = reinterpret_cast<word_t*>(static_cast<char*>(work) + acc_bytes(s, groups));

  BConv2DShape gs = s;  // one group
  gs.in_c = cg;
  gs.out_c = og;
  const std::int32_t k = gs.k_bits();
  const bool timed = epilogue_seconds != nullptr;
  double epi_seconds = 0.0;
  for (std::int64_t g = 0; g < groups; ++g) {
    const word_t* src = input;
    if (groups > 1) {
      slice_channels(input, in_pixels, in_words, g * cg, cg, slice, pool);
      src = slice;
    }
    bconv2d(src, filter + g * og * s.kernel_h * s.kernel_w * wg, gs, acc, pool, kernel);
    auto t0 = timed ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    // match = (dot + K) / 2 (exact: dot and K have the same parity); y = scale*match + shift.
    const float* scale = out.scale + g * og;
    const float* shift = out.shift + g * og;
    const bool relu = out.relu;
    float* dst = out.out;
    const std::int64_t out_ps = out.out_ps;
    pfor(pool, out_pixels, 64, [&](std::int64_t p0, std::int64_t p1) {
      for (std::int64_t p = p0; p < p1; ++p) {
        const std::int32_t* a = acc + p * og;
        float* o = dst + p * out_ps + g * og;
        for (std::int64_t c = 0; c < og; ++c) {
          const float match = static_cast<float>((a[c] + k) >> 1);
          const float v = scale[c] * match + shift[c];
          o[c] = relu ? std::max(v, 0.0f) : v;
        }
      }
    });
    if (timed) epi_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  if (timed) *epilogue_seconds = epi_seconds;
}

}  // namespace bmx
