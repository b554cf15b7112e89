// Fixed thread pool with low-latency fork-join and stable chunk-to-thread affinity.
//
// A binary layer of BinaryDenseNet at 7x7 takes ~8 us on one core, and on a server-class
// mesh one cache-line transfer between cores costs ~0.1-0.2 us, so every transfer on the
// critical path of a job counts. Three design points follow:
//
// * Affinity. Chunk ranges are dealt out deterministically: thread t (the caller is
//   thread 0) owns chunks [ceil(C*t/T), ceil(C*(t+1)/T)) and runs them front to back.
//   The same call shape therefore gives every thread the same rows on every call, so a
//   layer's output (and its B panels) stays in the L2 of the core that wrote it. With first-come claiming
//   the ranges swapped between cores from call to call; a 64x3136x576 bgemm ran 25% slower
//   per thread for that alone.
// * No shared read-modify-write on the fast path. Each thread claims its own chunks with a
//   CAS on its own 128-byte line (still exclusive in its cache from the previous job) and
//   reports completion on another line of its own; the caller writes one job line. A job
//   costs about two line transfers: job line to the workers, done lines back.
// * Stealing for robustness. A thread that has finished its range takes unclaimed chunks
//   from the back of the other ranges, so a descheduled worker delays at most the chunk it
//   is in, and the caller never waits for a worker that is not running (on a busy or
//   oversubscribed machine the caller simply runs everything).
//
// Workers spin on the job line for a short while after each job (the next layer follows
// within microseconds), then sleep on a condition variable.
#include "core/common/threadpool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <memory>
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
// Two lines: Intel's adjacent-line prefetcher moves 128-byte pairs.
constexpr std::size_t kLine = 128;
// Chunks per job: a range end must fit in 16 bits of a claim word.
constexpr std::int64_t kMaxChunks = 4095;

using Fn = std::function<void(std::int64_t, std::int64_t)>;

// Generation numbers are 32-bit and compared with serial-number arithmetic.
inline bool gen_before(std::uint32_t a, std::uint32_t b) { return static_cast<std::int32_t>(a - b) < 0; }

// Claim word of one thread's range: gen(32) | taken from the front(16) | taken from the
// back(16). A word whose gen is older than the job's means nothing taken yet.
inline std::uint64_t claim_word(std::uint32_t gen, std::uint32_t front, std::uint32_t back) {
  return (static_cast<std::uint64_t>(gen) << 32) | (static_cast<std::uint64_t>(front) << 16) | back;
}

struct alignas(kLine) ClaimSlot {
  std::atomic<std::uint64_t> word{0};
};

// A worker's progress: gen(32) of the job it has started | chunks of it completed (32).
inline std::uint64_t done_word(std::uint32_t gen, std::uint32_t count) {
  return (static_cast<std::uint64_t>(gen) << 32) | count;
}
struct alignas(kLine) DoneSlot {
  std::atomic<std::uint64_t> word{0};
};

constexpr std::size_t kArgsWords = ThreadPool::kArgsBytes / 8;

// The job, written by the caller only, under a sequence lock (odd while being written):
// a worker that read a job late never acts on a torn mix of two jobs. The header and the
// first arguments share the line the workers poll; larger arguments continue in the next
// lines (fetched together, not one after another as a chain of pointers would be).
struct alignas(kLine) JobLine {
  std::atomic<std::uint64_t> seq{0};  // 2 * gen (+1 while writing)
  std::atomic<ThreadPool::Trampoline> tramp{nullptr};
  std::atomic<ThreadPool::AnyFn> user_fn{nullptr};
  std::atomic<std::int64_t> n{0};
  std::atomic<std::int64_t> grain{0};  // 0: chunk i is [n * i / chunks, n * (i + 1) / chunks)
  std::atomic<std::int32_t> chunks{0};
  std::atomic<std::int16_t> args_words{0};
  std::atomic<bool> stop{false};  // here because workers poll this line anyway
  std::atomic<std::uint64_t> args[kArgsWords];
};
static_assert(sizeof(JobLine) == 256, "job header and arguments fill four lines");

struct Snapshot {
  std::uint32_t gen;
  ThreadPool::Trampoline tramp;
  ThreadPool::AnyFn user_fn;
  std::int64_t n, grain;
  std::int32_t chunks;
  std::uint64_t args[kArgsWords];
};

template <typename T>
inline void set_if_changed(std::atomic<T>& a, T v) {
  if (a.load(std::memory_order_relaxed) != v) a.store(v, std::memory_order_relaxed);
}

// std::function jobs carry a pointer to the function object.
void call_std_function(const void* args, ThreadPool::AnyFn, std::int64_t b, std::int64_t e) {
  const Fn* fn;
  std::memcpy(&fn, args, sizeof fn);
  (*fn)(b, e);
}

}  // namespace

struct ThreadPool::Impl {
  // Lines are laid out by who writes them: the caller writes `job`, thread t writes
  // claim[t] and done[t]; the rest is touched only on the slow paths.
  int num_threads = 1;
  std::vector<std::thread> workers;
  JobLine job;
  std::unique_ptr<ClaimSlot[]> claim;
  std::unique_ptr<DoneSlot[]> done;
  alignas(kLine) std::atomic<int> sleepers{0};
  alignas(kLine) std::mutex mu;
  std::condition_variable cv;
  std::uint32_t generation = 0;  // caller side
  std::mutex err_mu;
  std::exception_ptr error;

  // The caller's range is one chunk: nobody else takes it (work() never probes it), so the
  // caller runs it without a claim.
  bool caller_single(const Snapshot& s) const { return range_begin(s, 1) == 1; }

  // Rounded up, so that the caller's range (t = 0) is never empty.
  std::int64_t range_begin(const Snapshot& s, int t) const {
    return (static_cast<std::int64_t>(s.chunks) * t + num_threads - 1) / num_threads;
  }

  // Takes the next chunk of thread t's range (from the front if t is the caller's own
  // range, else from the back); -1 when that range is exhausted or the job is over.
  std::int64_t take(const Snapshot& s, int t, bool front) {
    const std::int64_t b = range_begin(s, t), len = range_begin(s, t + 1) - b;
    if (len == 0) return -1;
    auto& w = claim[static_cast<std::size_t>(t)].word;
    std::uint64_t v = w.load(std::memory_order_acquire);
    for (;;) {
      const auto g = static_cast<std::uint32_t>(v >> 32);
      if (gen_before(s.gen, g)) return -1;  // a newer job: this snapshot is stale
      std::uint32_t f = 0, k = 0;
      if (g == s.gen) f = static_cast<std::uint32_t>((v >> 16) & 0xffff), k = static_cast<std::uint32_t>(v & 0xffff);
      if (f + k >= len) return -1;
      const std::uint64_t nv = front ? claim_word(s.gen, f + 1, k) : claim_word(s.gen, f, k + 1);
      if (w.compare_exchange_weak(v, nv, std::memory_order_acq_rel, std::memory_order_acquire))
        return front ? b + f : b + len - 1 - k;
    }
  }

  void run_chunk(const Snapshot& s, std::int64_t i) {
    const std::int64_t b = s.grain ? i * s.grain : s.n * i / s.chunks;
    const std::int64_t e = s.grain ? std::min(s.n, b + s.grain) : s.n * (i + 1) / s.chunks;
    try {
      if (b < e) s.tramp(s.args, s.user_fn, b, e);
    } catch (...) {
      std::lock_guard<std::mutex> lk(err_mu);
      if (!error) error = std::current_exception();
    }
  }

  // Publishes thread `self`'s progress in job s: started, and `count` chunks completed.
  void report(const Snapshot& s, int self, std::uint32_t count) {
    done[static_cast<std::size_t>(self)].word.store(done_word(s.gen, count), std::memory_order_release);
  }

  // Runs thread `self`'s range, then steals what is left elsewhere; returns the count.
  // A range is only probed when stealing from it can help: it has several chunks, or its
  // owner has not started this job (asleep or descheduled). The caller is always running,
  // so its single chunk is never probed. Probing pulls the owner's claim line away from
  // it, which costs that owner a line transfer on its next job.
  // `first`: a chunk of the own range claimed already (the caller claims one before it
  // publishes the job, while no locked instruction has to wait for the job line), or -1.
  std::uint32_t work(const Snapshot& s, int self, std::int64_t first = -1) {
    std::uint32_t count = 0;
    std::int64_t i = first >= 0 ? first : take(s, self, true);
    // A worker announces the job after its first claim: a locked CAS would wait for the
    // store to leave the store buffer, and the caller may hold the line.
    if (self != 0) report(s, self, 0);
    if (self == 0 && i >= 0 && caller_single(s)) {
      run_chunk(s, i);  // unclaimed, see caller_single
      ++count;
    } else {
      for (; i >= 0; i = take(s, self, true), ++count) run_chunk(s, i);
    }
    if (self != 0 && count) report(s, self, count);
    for (int d = 1; d < num_threads; ++d) {
      const int t = (self + d) % num_threads;
      const std::int64_t len = range_begin(s, t + 1) - range_begin(s, t);
      if (len == 0 || (len == 1 && (t == 0 || started(s, t)))) continue;
      std::uint32_t stolen = 0;
      for (std::int64_t j; (j = take(s, t, false)) >= 0; ++stolen) run_chunk(s, j);
      count += stolen;
      if (stolen && self != 0) report(s, self, count);
    }
    return count;
  }

  bool started(const Snapshot& s, int t) const {
    const std::uint64_t d = done[static_cast<std::size_t>(t)].word.load(std::memory_order_acquire);
    return static_cast<std::uint32_t>(d >> 32) == s.gen;
  }

  // A consistent copy of the current job, or false while it is being written.
  bool read_job(Snapshot* s) {
    const std::uint64_t q = job.seq.load(std::memory_order_acquire);
    if (q & 1) return false;
    s->tramp = job.tramp.load(std::memory_order_relaxed);
    s->user_fn = job.user_fn.load(std::memory_order_relaxed);
    s->n = job.n.load(std::memory_order_relaxed);
    s->grain = job.grain.load(std::memory_order_relaxed);
    s->chunks = job.chunks.load(std::memory_order_relaxed);
    const int words = std::min<int>(job.args_words.load(std::memory_order_relaxed), static_cast<int>(kArgsWords));
    for (int w = 0; w < words; ++w) s->args[w] = job.args[w].load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (job.seq.load(std::memory_order_relaxed) != q) return false;
    s->gen = static_cast<std::uint32_t>(q >> 1);
    return true;
  }

  void worker(int self) {
    std::uint32_t seen = 0;
    for (;;) {
      // Spin first: the next job usually follows within microseconds.
      auto t0 = std::chrono::steady_clock::now();
      int spins = 0;
      Snapshot s{};
      for (;;) {
        if (job.stop.load(std::memory_order_relaxed)) return;
        const std::uint64_t q = job.seq.load(std::memory_order_acquire);
        if (!(q & 1) && static_cast<std::uint32_t>(q >> 1) != seen && read_job(&s)) break;
        BMX_CPU_RELAX();
        if (++spins == 256) {
          spins = 0;
          if (std::chrono::steady_clock::now() - t0 > kSpinTime) {
            std::unique_lock<std::mutex> lk(mu);
            sleepers.fetch_add(1, std::memory_order_seq_cst);
            cv.wait(lk, [&] {
              return job.stop.load() || static_cast<std::uint32_t>(job.seq.load(std::memory_order_seq_cst) >> 1) != seen;
            });
            sleepers.fetch_sub(1, std::memory_order_relaxed);
            t0 = std::chrono::steady_clock::now();
          }
        }
      }
      seen = s.gen;
      work(s, self);
    }
  }
};

ThreadPool::ThreadPool(int num_threads) : impl_(new Impl) {
  Impl& p = *impl_;
  p.num_threads = num_threads < 1 ? 1 : (num_threads > 1024 ? 1024 : num_threads);
  p.claim.reset(new ClaimSlot[static_cast<std::size_t>(p.num_threads)]);
  p.done.reset(new DoneSlot[static_cast<std::size_t>(p.num_threads)]);
  for (int i = 1; i < p.num_threads; ++i) p.workers.emplace_back([this, i] { impl_->worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(impl_->mu);
    impl_->job.stop.store(true);
  }
  impl_->cv.notify_all();
  for (auto& t : impl_->workers) t.join();
  delete impl_;
}

int ThreadPool::num_threads() const { return impl_->num_threads; }

void ThreadPool::parallel_for(std::int64_t n, const Fn& fn) {
  if (n <= 0) return;
  const Fn* f = &fn;
  run(n, 0, static_cast<int>(n < impl_->num_threads ? n : impl_->num_threads), &call_std_function, nullptr, &f,
      sizeof f);
}

void ThreadPool::parallel_for_dynamic(std::int64_t n, std::int64_t grain, const Fn& fn) {
  const Fn* f = &fn;
  run_args(n, grain, &call_std_function, nullptr, &f, sizeof f);
}

void ThreadPool::run_args(std::int64_t n, std::int64_t grain, Trampoline tramp, AnyFn user_fn,
                          const void* args, std::size_t bytes) {
  if (n <= 0) return;
  grain = std::max<std::int64_t>(grain, 1);
  grain = std::max<std::int64_t>(grain, (n + kMaxChunks - 1) / kMaxChunks);
  run(n, grain, static_cast<int>((n + grain - 1) / grain), tramp, user_fn, args, bytes);
}

void ThreadPool::run(std::int64_t n, std::int64_t grain, int chunks, Trampoline tramp, AnyFn user_fn,
                     const void* args, std::size_t bytes) {
  Impl& p = *impl_;
  Snapshot s;
  s.tramp = tramp, s.user_fn = user_fn, s.n = n, s.grain = grain, s.chunks = chunks;
  const int words = static_cast<int>((std::min(bytes, ThreadPool::kArgsBytes) + 7) / 8);
  std::memcpy(s.args, args, std::min(bytes, ThreadPool::kArgsBytes));
  if (chunks == 1 || p.num_threads == 1) {
    if (grain == 0) {
      tramp(s.args, user_fn, 0, n);
    } else {
      for (std::int64_t b = 0; b < n; b += grain) tramp(s.args, user_fn, b, std::min(n, b + grain));
    }
    return;
  }
  if (p.error) p.error = nullptr;  // no store on the fast path
  const std::uint32_t gen = ++p.generation == 0 ? ++p.generation : p.generation;
  s.gen = gen;
  // Claim the caller's first chunk now, before the job line is written; a single chunk
  // needs no claim (caller_single), and the locked instruction would delay publication.
  const std::int64_t first = p.caller_single(s) ? 0 : p.take(s, 0, true);
  // Publish under the sequence lock. No fence after it: a worker that goes to sleep just
  // as the job appears may miss it (the caller then runs its range, see work), and is
  // woken by the next job, whose publication sees it in `sleepers`.
  p.job.seq.store(2 * static_cast<std::uint64_t>(gen) - 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  // Fields equal to the previous job's are not written: a line the workers hold stays
  // valid in their caches, so repeated calls with the same arguments (the same layer on
  // a stream of inputs) cost the workers only the header line.
  set_if_changed(p.job.tramp, tramp);
  set_if_changed(p.job.user_fn, user_fn);
  set_if_changed(p.job.n, n);
  set_if_changed(p.job.grain, grain);
  set_if_changed(p.job.chunks, chunks);
  set_if_changed(p.job.args_words, static_cast<std::int16_t>(words));
  for (int w = 0; w < words; ++w) set_if_changed(p.job.args[w], s.args[w]);
  p.job.seq.store(2 * static_cast<std::uint64_t>(gen), std::memory_order_release);
  if (p.sleepers.load(std::memory_order_relaxed) > 0) {
    { std::lock_guard<std::mutex> lk(p.mu); }
    p.cv.notify_all();
  }
  std::int64_t finished = p.work(s, 0, first);
  // Every chunk is claimed by now; wait for the workers' counts of this job.
  int spins = 0;
  for (;;) {
    std::int64_t total = finished;
    for (int t = 1; t < p.num_threads; ++t) {
      const std::uint64_t d = p.done[static_cast<std::size_t>(t)].word.load(std::memory_order_acquire);
      if (static_cast<std::uint32_t>(d >> 32) == gen) total += static_cast<std::uint32_t>(d);
    }
    if (total == chunks) break;
    BMX_CPU_RELAX();
    if (++spins > 4096) std::this_thread::yield();  // a worker holding a chunk was descheduled
  }
  if (p.error) std::rethrow_exception(p.error);
}

void parallel_for(ThreadPool* pool, std::int64_t n, const Fn& fn) {
  if (n <= 0) return;
  if (pool == nullptr || pool->num_threads() == 1 || n == 1) {
    fn(0, n);
    return;
  }
  pool->parallel_for(n, fn);
}

void parallel_for_dynamic(ThreadPool* pool, std::int64_t n, std::int64_t grain, const Fn& fn) {
  if (n <= 0) return;
  if (pool == nullptr || pool->num_threads() == 1 || n <= grain) {
    fn(0, n);
    return;
  }
  pool->parallel_for_dynamic(n, grain, fn);
}

}  // namespace bmx
