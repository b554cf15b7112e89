// Bit-packing (dispatching entry points). Convention: bmx/convention.h.
#pragma once

#include <cstdint>

#include "bmx/convention.h"

namespace bmx {
class ThreadPool;

// Pack `rows` rows of `k` values each. Row r starts at in + r * in_stride (elements);
// its words_for_bits(k) words go to out + r * out_stride (words). Tail bits are 0.
void pack_rows(const float* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride,
               word_t* out, std::int64_t out_stride, ThreadPool* pool = nullptr);
void pack_rows(const std::int8_t* in, std::int64_t rows, std::int64_t k, std::int64_t in_stride,
               word_t* out, std::int64_t out_stride, ThreadPool* pool = nullptr);

}  // namespace bmx
