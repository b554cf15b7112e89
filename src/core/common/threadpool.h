// A small fixed thread pool for data-parallel loops (no OpenMP dependency, so the
// same code runs in the cross builds and under sanitizers).
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>

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

  // Most bytes of arguments a job can carry in the pool's own job lines (see below).
  static constexpr std::size_t kArgsBytes = 208;

  // parallel_for_dynamic for a plain function whose arguments are copied into the job
  // lines that the workers poll: a worker then starts with everything it needs in the
  // lines it has just received. A lambda capturing the caller's locals by reference costs
  // every worker one cache-line transfer per line of the caller's stack it touches (the
  // caller has just written them), ~0.3 us per job on a 7x7 layer's ~4 us.
  template <typename Args>
  void parallel_for_dynamic(std::int64_t n, std::int64_t grain, void (*fn)(const Args&, std::int64_t, std::int64_t),
                            const Args& args) {
    static_assert(std::is_trivially_copyable<Args>::value && std::is_default_constructible<Args>::value,
                  "job arguments are copied bytewise");
    static_assert(sizeof(Args) <= kArgsBytes, "job arguments too large for the job lines");
    run_args(n, grain, &trampoline<Args>, reinterpret_cast<AnyFn>(fn), &args, sizeof(Args));
  }

  // Any function pointer, stored type-erased (a function pointer converts to another
  // function pointer type and back exactly; to void* only conditionally).
  using AnyFn = void (*)();
  // fn(args, user_fn, begin, end): calls user_fn with the copied arguments.
  using Trampoline = void (*)(const void* args, AnyFn user_fn, std::int64_t, std::int64_t);

 private:
  template <typename Args>
  static void trampoline(const void* args, AnyFn user_fn, std::int64_t b, std::int64_t e) {
    Args a;
    std::memcpy(&a, args, sizeof(Args));
    reinterpret_cast<void (*)(const Args&, std::int64_t, std::int64_t)>(user_fn)(a, b, e);
  }
  void run_args(std::int64_t n, std::int64_t grain, Trampoline tramp, AnyFn user_fn, const void* args,
                std::size_t bytes);
  void run(std::int64_t n, std::int64_t grain, int chunks, Trampoline tramp, AnyFn user_fn, const void* args,
           std::size_t bytes);
  struct Impl;
  Impl* impl_;
};

// Run on `pool` if given (and n > 1), else inline on the calling thread.
void parallel_for(ThreadPool* pool, std::int64_t n,
                  const std::function<void(std::int64_t, std::int64_t)>& fn);
// Split [0, n) over the pool in contiguous parts; tiny jobs stay on the calling thread.
template <typename F>
void pfor(ThreadPool* pool, std::int64_t n, std::int64_t min_per_task, F&& fn) {
  if (n <= 0) return;
  if (!pool || n < 2 * min_per_task) {
    fn(std::int64_t{0}, n);
    return;
  }
  parallel_for(pool, n, [&](std::int64_t b, std::int64_t e) { fn(b, e); });
}
// parallel_for_dynamic on `pool` if given, else fn(0, n) inline.
void parallel_for_dynamic(ThreadPool* pool, std::int64_t n, std::int64_t grain,
                          const std::function<void(std::int64_t, std::int64_t)>& fn);
// The same with a plain function and arguments carried in the job lines.
template <typename Args>
void parallel_for_dynamic(ThreadPool* pool, std::int64_t n, std::int64_t grain,
                          void (*fn)(const Args&, std::int64_t, std::int64_t), const Args& args) {
  if (n <= 0) return;
  if (pool == nullptr || pool->num_threads() == 1 || n <= grain) {
    fn(args, 0, n);
    return;
  }
  pool->parallel_for_dynamic(n, grain, fn, args);
}

}  // namespace bmx
