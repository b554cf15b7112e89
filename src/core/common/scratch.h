// Growable scratch buffer with 64-byte alignment, for per-thread working memory
// (thread_local ScratchBuffer<T>). std::vector's 16-byte alignment is not enough: a
// 64-byte vector load from a panel that straddles two cache lines is a split load, and a
// 7x7 layer's bgemm ran 3.65 or 4.9 us depending on where malloc put its packed panels.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>

namespace bmx {

template <typename T>
class ScratchBuffer {
 public:
  ScratchBuffer() = default;
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  ~ScratchBuffer() { std::free(p_); }

  // At least n elements (contents are not kept when it grows).
  T* get(std::size_t n) {
    if (n > cap_) {
      std::free(p_);
      p_ = nullptr;
      cap_ = 0;
      // aligned_alloc needs a size that is a multiple of the alignment (C11; ASan checks it).
      const std::size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
      p_ = static_cast<T*>(std::aligned_alloc(64, bytes));
      if (p_ == nullptr) throw std::bad_alloc();
      cap_ = n;
    }
    return p_;
  }
  const T* data() const { return p_; }
  std::size_t capacity() const { return cap_; }

 private:
  T* p_ = nullptr;
  std::size_t cap_ = 0;
};

}  // namespace bmx
