// A small fixed thread pool for data-parallel loops (no OpenMP dependency, so the
// same code runs in the cross builds and under sanitizers).
#pragma once

#include <cstdint>
#include <functional>

namespace bmx {

class ThreadPool {
 public:
  // num_threads >= 1 (the calling thread counts as one worker).
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const;
  // Run fn(begin, end) over [0, n) split into contiguous chunks, at most one per
  // thread; blocks until all are done. Not reentrant from inside fn.
  void parallel_for(std::int64_t n, const std::function<void(std::int64_t, std::int64_t)>& fn);

 private:
  struct Impl;
  Impl* impl_;
};

// Run on `pool` if given (and n > 1), else inline on the calling thread.
void parallel_for(ThreadPool* pool, std::int64_t n,
                  const std::function<void(std::int64_t, std::int64_t)>& fn);

}  // namespace bmx
