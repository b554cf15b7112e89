// ThreadPool: every index visited exactly once, chunks contiguous, exceptions propagate,
// repeated dispatch (the spin/sleep hand-off) never loses a job.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/common/threadpool.h"

namespace {

TEST(ThreadPool, CoversRangeOnce) {
  for (int threads : {1, 2, 3, 5}) {
    bmx::ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (std::int64_t n : {1, 2, 3, 7, 64, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
      for (auto& h : hits) h = 0;
      std::atomic<int> calls{0};
      pool.parallel_for(n, [&](std::int64_t b, std::int64_t e) {
        ASSERT_LT(b, e);
        ++calls;
        for (std::int64_t i = b; i < e; ++i) ++hits[static_cast<std::size_t>(i)];
      });
      for (std::int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[static_cast<std::size_t>(i)], 1) << "threads=" << threads << " n=" << n;
      EXPECT_LE(calls.load(), threads);
    }
  }
}

TEST(ThreadPool, UsesSeveralThreads) {
  // Chunks are claimed dynamically (the caller takes what no worker took yet), so ask
  // for long chunks: a worker picks the second one while the caller sleeps in the first.
  bmx::ThreadPool pool(2);
  bool concurrent = false;
  for (int attempt = 0; attempt < 20 && !concurrent; ++attempt) {
    std::mutex mu;
    std::vector<std::thread::id> ids;
    pool.parallel_for(2, [&](std::int64_t, std::int64_t) {
      {
        std::lock_guard<std::mutex> lk(mu);
        ids.push_back(std::this_thread::get_id());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    });
    ASSERT_EQ(ids.size(), 2u);
    concurrent = ids[0] != ids[1];
  }
  EXPECT_TRUE(concurrent);
}

TEST(ThreadPool, ManyRapidJobsAndSleepWake) {
  bmx::ThreadPool pool(3);
  std::atomic<std::int64_t> sum{0};
  for (int it = 0; it < 20000; ++it)
    pool.parallel_for(3, [&](std::int64_t b, std::int64_t e) { sum += e - b; });
  EXPECT_EQ(sum.load(), 60000);
  // Let the workers fall asleep, then wake them.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  pool.parallel_for(3, [&](std::int64_t b, std::int64_t e) { sum += e - b; });
  EXPECT_EQ(sum.load(), 60003);
}

TEST(ThreadPool, ExceptionPropagates) {
  bmx::ThreadPool pool(2);
  EXPECT_THROW(pool.parallel_for(2, [](std::int64_t b, std::int64_t) {
    if (b == 1) throw std::runtime_error("boom");
  }),
               std::runtime_error);
  // Still usable afterwards.
  std::atomic<int> n{0};
  pool.parallel_for(2, [&](std::int64_t b, std::int64_t e) { n += static_cast<int>(e - b); });
  EXPECT_EQ(n.load(), 2);
}

TEST(ThreadPool, FreeFunctionWithoutPool) {
  int calls = 0;
  bmx::parallel_for(nullptr, 10, [&](std::int64_t b, std::int64_t e) {
    EXPECT_EQ(b, 0);
    EXPECT_EQ(e, 10);
    ++calls;
  });
  EXPECT_EQ(calls, 1);
}

}  // namespace

namespace {

TEST(ThreadPool, DynamicChunksCoverRangeOnce) {
  for (int threads : {1, 2, 3}) {
    bmx::ThreadPool pool(threads);
    for (std::int64_t n : {1, 5, 100, 10007}) {
      for (std::int64_t grain : {1, 3, 64, 100000}) {
        std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
        for (auto& h : hits) h = 0;
        pool.parallel_for_dynamic(n, grain, [&](std::int64_t b, std::int64_t e) {
          ASSERT_LT(b, e);
          ASSERT_LE(e - b, std::max<std::int64_t>(grain, (n + 4094) / 4095));
          for (std::int64_t i = b; i < e; ++i) ++hits[static_cast<std::size_t>(i)];
        });
        for (std::int64_t i = 0; i < n; ++i)
          ASSERT_EQ(hits[static_cast<std::size_t>(i)], 1) << "threads=" << threads << " n=" << n << " grain=" << grain;
      }
    }
  }
  int calls = 0;
  bmx::parallel_for_dynamic(nullptr, 10, 3, [&](std::int64_t b, std::int64_t e) {
    EXPECT_EQ(b, 0);
    EXPECT_EQ(e, 10);
    ++calls;
  });
  EXPECT_EQ(calls, 1);
}

TEST(ThreadPool, CallerRunsChunkZero) {
  // Affinity, the deterministic part: the caller claims the first chunk of its own range
  // before it publishes the job, so chunk 0 always runs on the calling thread.
  bmx::ThreadPool pool(2);
  const auto me = std::this_thread::get_id();
  for (int it = 0; it < 200; ++it) {
    std::thread::id first{};
    pool.parallel_for(2, [&](std::int64_t b, std::int64_t) {
      if (b == 0) first = std::this_thread::get_id();
    });
    ASSERT_EQ(first, me);
    pool.parallel_for_dynamic(64, 4, [&](std::int64_t b, std::int64_t) {
      if (b == 0) first = std::this_thread::get_id();
    });
    ASSERT_EQ(first, me);
  }
}

TEST(ThreadPool, WorkerKeepsItsChunk) {
  // Affinity, the statistical part: with chunks long enough for every worker to show up,
  // chunk i runs on the same worker call after call (a late worker's chunk may be taken
  // by another thread, so only a majority is asserted).
  bmx::ThreadPool pool(3);
  std::vector<std::vector<std::thread::id>> seen(3);
  for (int it = 0; it < 10; ++it) {
    std::mutex mu;
    pool.parallel_for(3, [&](std::int64_t b, std::int64_t) {
      std::this_thread::sleep_for(std::chrono::milliseconds(3));
      std::lock_guard<std::mutex> lk(mu);
      seen[static_cast<std::size_t>(b)].push_back(std::this_thread::get_id());
    });
  }
  for (std::size_t c = 1; c < 3; ++c) {
    int best = 0;
    for (const auto& id : seen[c]) best = std::max(best, static_cast<int>(std::count(seen[c].begin(), seen[c].end(), id)));
    EXPECT_GE(best, 6) << "chunk " << c;
  }
}

TEST(ThreadPool, ArgumentsCarriedInJobLines) {
  // Jobs with a plain function and arguments copied into the job lines: every chunk sees
  // the arguments of its own call (a worker never mixes two jobs), for argument sizes up
  // to the limit, with 1-3 threads and repeated back-to-back calls.
  struct Small {
    std::int64_t base;
    std::atomic<int>* hits;
  };
  for (int threads : {1, 2, 3}) {
    bmx::ThreadPool pool(threads);
    std::vector<std::atomic<int>> hits(1000);
    for (int call = 0; call < 300; ++call) {
      for (auto& h : hits) h = 0;
      Small a{call * 7, hits.data()};
      bmx::parallel_for_dynamic(
          &pool, 1000, 7 + call % 5,
          +[](const Small& s, std::int64_t b, std::int64_t e) {
            for (std::int64_t i = b; i < e; ++i) s.hits[i] += static_cast<int>(s.base + 1);
          },
          a);
      for (auto& h : hits) ASSERT_EQ(h.load(), call * 7 + 1) << "threads=" << threads << " call=" << call;
    }
  }
  bmx::ThreadPool pool(2);
  std::vector<std::atomic<int>> hits(64);
  for (auto& h : hits) h = 0;
  struct Max {
    std::uint64_t pattern[25];
    std::atomic<int>* hits;
  } m;
  static_assert(sizeof(Max) == bmx::ThreadPool::kArgsBytes, "");
  for (int i = 0; i < 25; ++i) m.pattern[i] = 0x9e3779b97f4a7c15ULL * static_cast<std::uint64_t>(i + 1);
  m.hits = hits.data();
  bmx::parallel_for_dynamic(
      &pool, 64, 1,
      +[](const Max& a, std::int64_t b, std::int64_t e) {
        for (int i = 0; i < 25; ++i)
          if (a.pattern[i] != 0x9e3779b97f4a7c15ULL * static_cast<std::uint64_t>(i + 1)) return;
        for (std::int64_t i = b; i < e; ++i) ++a.hits[i];
      },
      m);
  for (auto& h : hits) EXPECT_EQ(h.load(), 1);
  // Exceptions thrown by the function reach the caller.
  EXPECT_THROW(bmx::parallel_for_dynamic(
                   &pool, 8, 1,
                   +[](const Max&, std::int64_t b, std::int64_t) {
                     if (b == 5) throw std::runtime_error("boom");
                   },
                   m),
               std::runtime_error);
}


TEST(ThreadPool, SoloCallerChunkAlternatingWithClaimedRanges) {
  // A caller whose range is one chunk runs it without a claim (no other thread takes it),
  // so its claim word keeps an older job's generation; jobs where the caller's range has
  // several chunks (claimed) must still see every chunk exactly once when they alternate
  // with those.
  bmx::ThreadPool pool(2);
  for (int it = 0; it < 3000; ++it) {
    const std::int64_t n = it % 2 ? 2 : 2 + it % 13;
    std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
    for (auto& h : hits) h = 0;
    pool.parallel_for_dynamic(n, 1, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) ++hits[static_cast<std::size_t>(i)];
    });
    for (std::int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<std::size_t>(i)], 1) << "it=" << it << " n=" << n;
  }
}

}  // namespace
