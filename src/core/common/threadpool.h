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
  // thread; blocks until all are done. Not reentrant from inside fn. Chunk i of a call
  // runs on the same thread on every call of the same size (cache affinity), unless that
  // thread is late and another one takes it.
  void parallel_for(std::int64_t n, const std::function<void(std::int64_t, std::int64_t)>& fn);
  // Like parallel_for, but [0, n) is cut into chunks of `grain` (the last may be shorter;
  // at most 4095 chunks, grain grows if needed) that threads claim one at a time, so a
  // thread that the OS deschedules delays at most one chunk and uneven work balances.
  void parallel_for_dynamic(std::int64_t n, std::int64_t grain,
                            const std::function<void(std::int64_t, std::int64_t)>& fn);

 private:
  void run(std::int64_t n, std::int64_t grain, int chunks, const std::function<void(std::int64_t, std::int64_t)>& fn);
  struct Impl;
  Impl* impl_;
};

// Run on `pool` if given (and n > 1), else inline on the calling thread.
void parallel_for(ThreadPool* pool, std::int64_t n,
                  const std::function<void(std::int64_t, std::int64_t)>& fn);
// parallel_for_dynamic on `pool` if given, else fn(0, n) inline.
void parallel_for_dynamic(ThreadPool* pool, std::int64_t n, std::int64_t grain,
                          const std::function<void(std::int64_t, std::int64_t)>& fn);

}  // namespace bmx
