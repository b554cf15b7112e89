// Naive bit-packing: the source of truth for every optimized packing kernel.
// Packs rows of length k (contiguous) into words_for_bits(k) words each, following
// bmx/convention.h (bit 1 iff value < 0, LSB first, tail bits 0).
#pragma once

#include <cstdint>

#include "bmx/convention.h"

namespace bmx::ref {

template <typename T>
void pack_rows(const T* in, std::int64_t rows, std::int64_t k, word_t* out) {
  const std::int64_t w = words_for_bits(k);
  for (std::int64_t r = 0; r < rows; ++r) {
    word_t* o = out + r * w;
    for (std::int64_t j = 0; j < w; ++j) o[j] = 0;
    for (std::int64_t i = 0; i < k; ++i) {
      if (to_bit(in[r * k + i])) o[i / kWordBits] |= word_t{1} << (i % kWordBits);
    }
  }
}

}  // namespace bmx::ref
