// Fixed thread pool with low-latency dispatch.
//
// A binary layer of BinaryDenseNet at 7x7 takes ~20 us on one core, so waking sleeping
// threads through the kernel (tens of us) would eat the gain of a second thread. Workers
// therefore spin on a generation counter for a short while after each job and only then
// sleep on a condition variable; the calling thread runs chunk 0 itself.
#include "core/common/threadpool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BMX_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define BMX_CPU_RELAX() __asm__ __volatile__("yield" ::: "memory")
#else
#define BMX_CPU_RELAX() ((void)0)
#endif

namespace bmx {

namespace {
// How long an idle worker keeps spinning before it sleeps. Long enough to bridge the
// gap between consecutive layers of a network, short enough not to burn a core when idle.
constexpr auto kSpinTime = std::chrono::microseconds(2000);
}  // namespace

// Job hand-off: one atomic word holds (generation, chunk count, next chunk). Threads claim
// chunks with a CAS that also checks the generation, so a worker that wakes up late can
// never run a chunk of a finished job, and the caller never waits for a worker that is
// not running (on a busy or oversubscribed machine the caller simply takes the chunks).
namespace {
constexpr int kGenShift = 24, kChunkShift = 12;
constexpr std::uint64_t kFieldMask = (1u << kChunkShift) - 1;
}  // namespace

struct ThreadPool::Impl {
  int num_threads = 1;
  std::vector<std::thread> workers;
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<std::uint64_t> claim{0};
  std::atomic<int> done{0};
  std::atomic<bool> stop{false};
  std::uint64_t generation = 0;  // caller-side copy
  // The current job: written by the caller before `claim` publishes it, read by a thread
  // only after it claimed a chunk (the job cannot finish before that chunk is done).
  const std::function<void(std::int64_t, std::int64_t)>* fn = nullptr;
  std::int64_t n = 0;
  std::int64_t grain = 0;  // 0: chunk i is [n * i / chunks, n * (i + 1) / chunks)
  std::mutex err_mu;
  std::exception_ptr error;

  static std::uint64_t gen_of(std::uint64_t c) { return c >> kGenShift; }

  // Claims the next chunk of job `gen`; false when it is finished or superseded.
  bool try_claim(std::uint64_t gen, int* index, int* chunks) {
    std::uint64_t c = claim.load(std::memory_order_acquire);
    for (;;) {
      if (gen_of(c) != gen) return false;
      const int total = static_cast<int>((c >> kChunkShift) & kFieldMask);
      const int next = static_cast<int>(c & kFieldMask);
      if (next >= total) return false;
      if (claim.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
        *index = next;
        *chunks = total;
        return true;
      }
    }
  }

  void run_chunks(std::uint64_t gen) {
    int i = 0, chunks = 0;
    while (try_claim(gen, &i, &chunks)) {
      const std::int64_t b = grain ? i * grain : n * i / chunks;
      const std::int64_t e = grain ? std::min(n, b + grain) : n * (i + 1) / chunks;
      try {
        if (b < e) (*fn)(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> lk(err_mu);
        if (!error) error = std::current_exception();
      }
      done.fetch_add(1, std::memory_order_acq_rel);
    }
  }

  void worker() {
    std::uint64_t seen = 0;
    for (;;) {
      // Spin first: the next job usually follows within microseconds.
      auto t0 = std::chrono::steady_clock::now();
      int spins = 0;
      while (gen_of(claim.load(std::memory_order_acquire)) == seen && !stop.load(std::memory_order_relaxed)) {
        BMX_CPU_RELAX();
        if (++spins == 256) {
          spins = 0;
          if (std::chrono::steady_clock::now() - t0 > kSpinTime) {
            std::unique_lock<std::mutex> lk(mu);
            cv.wait(lk, [&] { return gen_of(claim.load(std::memory_order_acquire)) != seen || stop.load(); });
            break;
          }
        }
      }
      if (stop.load()) return;
      seen = gen_of(claim.load(std::memory_order_acquire));
      run_chunks(seen);
    }
  }
};

ThreadPool::ThreadPool(int num_threads) : impl_(new Impl) {
  impl_->num_threads = num_threads < 1 ? 1 : (num_threads > 1024 ? 1024 : num_threads);
  for (int i = 1; i < impl_->num_threads; ++i) impl_->workers.emplace_back([this] { impl_->worker(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(impl_->mu);
    impl_->stop.store(true);
  }
  impl_->cv.notify_all();
  for (auto& t : impl_->workers) t.join();
  delete impl_;
}

int ThreadPool::num_threads() const { return impl_->num_threads; }

void ThreadPool::parallel_for(std::int64_t n, const std::function<void(std::int64_t, std::int64_t)>& fn) {
  if (n <= 0) return;
  run(n, 0, static_cast<int>(n < impl_->num_threads ? n : impl_->num_threads), fn);
}

void ThreadPool::parallel_for_dynamic(std::int64_t n, std::int64_t grain,
                                      const std::function<void(std::int64_t, std::int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<std::int64_t>(grain, 1);
  grain = std::max<std::int64_t>(grain, (n + static_cast<std::int64_t>(kFieldMask) - 1) / static_cast<std::int64_t>(kFieldMask));
  run(n, grain, static_cast<int>((n + grain - 1) / grain), fn);
}

void ThreadPool::run(std::int64_t n, std::int64_t grain, int chunks,
                     const std::function<void(std::int64_t, std::int64_t)>& fn) {
  Impl& p = *impl_;
  if (chunks == 1 || p.num_threads == 1) {
    if (grain == 0) {
      fn(0, n);
    } else {
      for (std::int64_t b = 0; b < n; b += grain) fn(b, std::min(n, b + grain));
    }
    return;
  }
  p.fn = &fn;
  p.n = n;
  p.grain = grain;
  p.error = nullptr;
  p.done.store(0, std::memory_order_relaxed);
  const std::uint64_t gen = ++p.generation & ((std::uint64_t{1} << (64 - kGenShift)) - 1);
  p.claim.store((gen << kGenShift) | (static_cast<std::uint64_t>(chunks) << kChunkShift), std::memory_order_release);
  { std::lock_guard<std::mutex> lk(p.mu); }  // a worker about to sleep re-checks `claim` under mu
  p.cv.notify_all();
  p.run_chunks(gen);
  int spins = 0;
  while (p.done.load(std::memory_order_acquire) != chunks) {
    BMX_CPU_RELAX();
    if (++spins > 4096) std::this_thread::yield();  // a worker holding a chunk was descheduled
  }
  p.fn = nullptr;
  if (p.error) std::rethrow_exception(p.error);
}

void parallel_for(ThreadPool* pool, std::int64_t n,
                  const std::function<void(std::int64_t, std::int64_t)>& fn) {
  if (n <= 0) return;
  if (pool == nullptr || pool->num_threads() == 1 || n == 1) {
    fn(0, n);
    return;
  }
  pool->parallel_for(n, fn);
}


void parallel_for_dynamic(ThreadPool* pool, std::int64_t n, std::int64_t grain,
                          const std::function<void(std::int64_t, std::int64_t)>& fn) {
  if (n <= 0) return;
  if (pool == nullptr || pool->num_threads() == 1 || n <= grain) {
    fn(0, n);
    return;
  }
  pool->parallel_for_dynamic(n, grain, fn);
}

}  // namespace bmx
