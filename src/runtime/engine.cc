// bmx::Model: load + plan once, then run the ops over a pre-planned arena. Each op runs
// through the registry (registry.h: op_info(type).impl->run), its scratch likewise.
//
// Concurrency: predict() borrows an execution Context (arena, scratch, thread pool,
// profile counters) from a pool, creating one when every context is busy, and returns it
// afterwards. Serial callers therefore reuse one context (no allocation after the first
// call with a given batch size); concurrent callers get separate buffers and threads.
#include <cstdint>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <atomic>
#include <mutex>
#include <sstream>

#include "bmx/engine.h"
#include "core/common/threadpool.h"
#include "runtime/graph.h"
#include "runtime/limits.h"
#include "runtime/ops/op_util.h"
#include "runtime/registry.h"

namespace bmx {

using rt::Graph;
using rt::OpNode;
using rt::ValueInfo;

namespace {

using rt::kMaxBatch;
using rt::kMaxThreads;

struct Context {
  int batch = 0;
  int threads = 0;
  rt::AlignedBuffer<unsigned char> arena;
  rt::AlignedBuffer<unsigned char> work;
  std::unique_ptr<ThreadPool> pool;
  std::vector<double> op_seconds;            // per op
  double kind_seconds[rt::kNumKinds] = {};
  std::int64_t kind_calls[rt::kNumKinds] = {};
};

int profile_kind(const OpNode& op) { return rt::op_info(op.type).profile; }

}  // namespace

struct Model::Impl {
  Graph g;
  rt::Plan plan;
  std::atomic<int> threads{1};
  std::atomic<bool> profiling{false};

  std::mutex mu;  // guards `free` and the profile totals
  std::vector<std::unique_ptr<Context>> free;
  std::vector<double> op_seconds;
  double kind_seconds[rt::kNumKinds] = {};
  std::int64_t kind_calls[rt::kNumKinds] = {};

  std::size_t checked(std::size_t bytes, std::int64_t batch) const {
    std::size_t r;
    // Cap at 1 TiB, or at what size_t holds on 32-bit targets (armhf).
    constexpr std::uint64_t kCap = std::uint64_t{1} << 40;
    constexpr std::size_t kLimit = kCap < SIZE_MAX ? static_cast<std::size_t>(kCap) : SIZE_MAX;
    if (__builtin_mul_overflow(bytes, static_cast<std::size_t>(batch), &r) || r > kLimit) {
      throw InputError("batch " + std::to_string(batch) + " is too large for this model's buffers");
    }
    return r;
  }

  std::size_t work_bytes(int batch, int nthreads) const {
    std::size_t need = 0;
    for (const OpNode& op : g.ops) {
      const auto work = rt::op_info(op.type).impl->work_bytes;
      if (work) need = std::max(need, work(op, g, batch, nthreads));
    }
    return need;
  }

  std::unique_ptr<Context> acquire(int batch) {
    const int threads = this->threads.load();
    std::unique_ptr<Context> ctx;
    {
      std::lock_guard<std::mutex> lock(mu);
      // Prefer a context already sized for this batch.
      for (auto it = free.begin(); it != free.end(); ++it) {
        if ((*it)->batch == batch && (*it)->threads == threads) {
          ctx = std::move(*it);
          free.erase(it);
          break;
        }
      }
      if (!ctx && !free.empty()) {
        ctx = std::move(free.back());
        free.pop_back();
      }
    }
    if (!ctx) ctx = std::make_unique<Context>();
    if (ctx->threads != threads) {
      ctx->pool = threads > 1 ? std::make_unique<ThreadPool>(threads) : nullptr;
      ctx->threads = threads;
      ctx->batch = 0;
    }
    if (ctx->batch != batch) {
      // Re-plan for this batch size: every planned size scales linearly with it.
      const std::size_t arena = checked(plan.arena_bytes, batch);
      const std::size_t work = std::max(work_bytes(batch, threads), std::size_t{64});
      ctx->arena = rt::AlignedBuffer<unsigned char>();
      ctx->work = rt::AlignedBuffer<unsigned char>();
      try {
        ctx->arena.resize(arena, /*zero=*/false);
        ctx->work.resize(work, /*zero=*/false);
      } catch (const std::bad_alloc&) {
        throw InputError("cannot allocate " + std::to_string(arena + work) + " bytes for batch " +
                         std::to_string(batch));
      }
      ctx->batch = batch;
    }
    ctx->op_seconds.assign(g.ops.size(), 0.0);
    std::fill(std::begin(ctx->kind_seconds), std::end(ctx->kind_seconds), 0.0);
    std::fill(std::begin(ctx->kind_calls), std::end(ctx->kind_calls), 0);
    return ctx;
  }

  void release(std::unique_ptr<Context> ctx, bool profiled) {
    std::lock_guard<std::mutex> lock(mu);
    if (profiled) {
      if (op_seconds.size() != g.ops.size()) op_seconds.assign(g.ops.size(), 0.0);
      for (std::size_t i = 0; i < g.ops.size(); ++i) op_seconds[i] += ctx->op_seconds[i];
      for (int k = 0; k < rt::kNumKinds; ++k) {
        kind_seconds[k] += ctx->kind_seconds[k];
        kind_calls[k] += ctx->kind_calls[k];
      }
    }
    free.push_back(std::move(ctx));
  }

  // Address of value v in the context's arena.
  float* fptr(Context& c, int v) const {
    const rt::Placement& p = plan.place[v];
    return reinterpret_cast<float*>(c.arena.data() + plan.storage_offset[p.storage] * static_cast<std::size_t>(c.batch)) +
           p.chan_offset;
  }
  std::int64_t ps(int v) const { return plan.place[v].pixel_stride; }

  rt::RunContext run_context(Context& c, bool timed) const {
    rt::RunContext r;
    r.g = &g;
    r.plan = &plan;
    r.batch = c.batch;
    r.threads = c.threads;
    r.pool = c.pool.get();
    r.arena = c.arena.data();
    r.work = c.work.data();
    r.timed = timed;
    r.kind_seconds = c.kind_seconds;
    return r;
  }

  // Images per pass through the graph. The graph runs op by op over a whole pass, so a
  // pass whose activations outgrow a core's L2 makes every op stream them from memory:
  // the digits demo model ran 0.06 ms per image at batch 1-32 and 0.11 ms at batch 360.
  // A large batch is therefore run in sub-batches of at most ~1 MiB of arena and scratch
  // (at least one image). Every op works per image; only BLAS float GEMMs may round
  // differently for another batch size (as they did before: ~1e-6 on the demo's logits).
  int sub_batch(int batch) const {
    constexpr std::size_t kBudget = std::size_t{1} << 20;
    const std::size_t per_image = plan.arena_bytes + work_bytes(1, threads.load());
    const std::size_t fit = per_image == 0 ? static_cast<std::size_t>(batch) : kBudget / per_image;
    return static_cast<int>(std::clamp<std::size_t>(fit, 1, static_cast<std::size_t>(batch)));
  }

  void predict(const float* nchw, int batch, float* out) {
    if (batch < 1) throw InputError("batch must be >= 1, got " + std::to_string(batch));
    if (batch > kMaxBatch) throw InputError("batch " + std::to_string(batch) + " is too large");
    if (!nchw || !out) throw InputError("null input or output pointer");
    const ValueInfo& in = g.values[g.input];
    const ValueInfo& o = g.values[g.output];
    const std::int64_t in_size = in.c * in.h * in.w;
    const std::int64_t out_size = o.rank == 2 ? o.c : o.c * o.h * o.w;
    const int sb = sub_batch(batch);
    for (int b0 = 0; b0 < batch; b0 += sb) {
      const int n = std::min(sb, batch - b0);
      run_pass(nchw + b0 * in_size, n, out + b0 * out_size, b0 * in_size);
    }
  }

  // One pass of n images through the graph; `flat_offset`: index of this pass's first
  // input value in the caller's array (for error messages).
  void run_pass(const float* nchw, int batch, float* out, std::int64_t flat_offset) {
    const bool prof = profiling;
    std::unique_ptr<Context> ctx = acquire(batch);
    const ValueInfo& in = g.values[g.input];
    const std::int64_t bad = rt::nchw_to_nhwc_checked(nchw, batch, in.c, in.h * in.w, fptr(*ctx, g.input),
                                                       ps(g.input), ctx->pool.get());
    if (bad >= 0) {
      release(std::move(ctx), false);
      throw InputError("input contains NaN or Inf (first at flat index " + std::to_string(flat_offset + bad) + ")");
    }
    using clock = std::chrono::steady_clock;
    const rt::RunContext rc = run_context(*ctx, prof);
    for (std::size_t k = 0; k < g.ops.size(); ++k) {
      const OpNode& op = g.ops[k];
      const auto t0 = prof ? clock::now() : clock::time_point{};
      try {
        rt::op_info(op.type).impl->run(rc, op);
      } catch (const Error&) {
        throw;
      } catch (const std::exception& e) {
        throw Error(op.describe() + ": " + e.what());
      }
      if (!prof) continue;
      const double dt = std::chrono::duration<double>(clock::now() - t0).count();
      ctx->op_seconds[k] += dt;
      ctx->kind_seconds[profile_kind(op)] += dt;
      ctx->kind_calls[profile_kind(op)] += 1;
    }
    const ValueInfo& o = g.values[g.output];
    const float* res = fptr(*ctx, g.output);
    if (o.rank == 2) {
      std::memcpy(out, res, sizeof(float) * batch * o.c);  // output is never a view: stride == C
    } else {
      rt::nhwc_to_nchw(res, ps(g.output), batch, o.c, o.h * o.w, out);
    }
    release(std::move(ctx), prof);
  }
};

namespace {

std::vector<unsigned char> read_file(const std::string& path) {
  // stat first: opening a FIFO or device would block or never end.
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    throw Error("cannot open model file '" + path + "': " + std::strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) throw Error("cannot open model file '" + path + "': is a directory");
  if (!S_ISREG(st.st_mode)) throw Error("cannot open model file '" + path + "': not a regular file");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot open model file '" + path + "'");
  f.seekg(0, std::ios::end);
  const std::streamoff n = f.tellg();
  if (n < 0) throw Error("cannot read model file '" + path + "'");
  if (n > static_cast<std::streamoff>(rt::kMaxFileBytes)) throw Error("model file '" + path + "' is too large");
  f.seekg(0, std::ios::beg);
  std::vector<unsigned char> buf(static_cast<std::size_t>(n));
  if (n > 0 && !f.read(reinterpret_cast<char*>(buf.data()), n)) {
    throw Error("cannot read model file '" + path + "'");
  }
  return buf;
}

std::unique_ptr<Model::Impl> make_impl(const void* data, std::size_t size, int num_threads) {
  if (num_threads < 1) throw Error("num_threads must be >= 1, got " + std::to_string(num_threads));
  if (num_threads > kMaxThreads) throw Error("num_threads " + std::to_string(num_threads) + " is too large");
  auto impl = std::make_unique<Model::Impl>();
  impl->g = rt::load_graph(data, size, /*prepare=*/true);
  impl->plan = rt::make_plan(impl->g);
  rt::fuse_residual_adds(impl->g, impl->plan);
  impl->threads = num_threads;
  return impl;
}

std::string non_null_path(const char* path) {
  if (path == nullptr) throw Error("model path is a null pointer");
  return path;
}

}  // namespace

Model::Model(const std::string& path, int num_threads) {
  const auto buf = read_file(path);
  try {
    impl_ = make_impl(buf.data(), buf.size(), num_threads);
  } catch (const Error& e) {
    throw Error("'" + path + "': " + e.what());
  }
}
Model::Model(const char* path, int num_threads) : Model(non_null_path(path), num_threads) {}
Model::Model(const std::filesystem::path& path, int num_threads) : Model(path.string(), num_threads) {}
Model::Model(FromBytesTag, const void* data, std::size_t size, int num_threads)
    : impl_(make_impl(data, size, num_threads)) {}
Model Model::from_bytes(const void* data, std::size_t size, int num_threads) {
  return Model(FromBytesTag{}, data, size, num_threads);
}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

std::vector<std::int64_t> Model::input_shape() const {
  const ValueInfo& v = impl_->g.values[impl_->g.input];
  return {1, v.c, v.h, v.w};
}
std::vector<std::int64_t> Model::output_shape() const {
  const ValueInfo& v = impl_->g.values[impl_->g.output];
  if (v.rank == 2) return {1, v.c};
  return {1, v.c, v.h, v.w};
}
std::int64_t Model::input_size() const {
  const ValueInfo& v = impl_->g.values[impl_->g.input];
  return v.c * v.h * v.w;
}
std::int64_t Model::output_size() const {
  const ValueInfo& v = impl_->g.values[impl_->g.output];
  return v.c * v.h * v.w;
}
int Model::num_classes() const { return impl_->g.num_classes; }
std::string Model::producer() const { return impl_->g.producer; }
int Model::num_ops() const { return static_cast<int>(impl_->g.ops.size()); }
std::vector<float> Model::mean() const { return impl_->g.mean; }
std::vector<float> Model::std() const { return impl_->g.std; }

void Model::set_num_threads(int n) {
  if (n < 1) throw Error("num_threads must be >= 1, got " + std::to_string(n));
  if (n > kMaxThreads) throw Error("num_threads " + std::to_string(n) + " is too large");
  impl_->threads = n;
}
int Model::num_threads() const { return impl_->threads; }

void Model::predict(const float* nchw, int batch, float* out) const { impl_->predict(nchw, batch, out); }

std::vector<float> Model::predict(const std::vector<float>& nchw, int batch) const {
  if (batch < 1) throw InputError("batch must be >= 1, got " + std::to_string(batch));
  if (static_cast<std::int64_t>(nchw.size()) != input_size() * batch) {
    throw InputError("input has " + std::to_string(nchw.size()) + " floats, expected " +
                     std::to_string(input_size() * batch) + " (batch " + std::to_string(batch) + " x " +
                     std::to_string(input_size()) + ")");
  }
  std::vector<float> out(static_cast<std::size_t>(output_size() * batch));
  impl_->predict(nchw.data(), batch, out.data());
  return out;
}

void Model::set_profiling(bool on) { impl_->profiling = on; }
bool Model::profiling() const { return impl_->profiling; }

std::vector<ProfileEntry> Model::profile() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<ProfileEntry> r;
  for (int k = 0; k < rt::kNumKinds; ++k) {
    r.push_back({rt::profile_kind_name(k), impl_->kind_seconds[k], impl_->kind_calls[k]});
  }
  return r;
}

std::vector<std::pair<std::string, double>> Model::profile_ops() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<std::pair<std::string, double>> r;
  for (std::size_t i = 0; i < impl_->g.ops.size(); ++i) {
    const OpNode& op = impl_->g.ops[i];
    r.push_back({op.name + " (" + rt::op_type_name(op.type) + ")",
                 i < impl_->op_seconds.size() ? impl_->op_seconds[i] : 0.0});
  }
  return r;
}

void Model::reset_profile() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->op_seconds.assign(impl_->g.ops.size(), 0.0);
  std::fill(std::begin(impl_->kind_seconds), std::end(impl_->kind_seconds), 0.0);
  std::fill(std::begin(impl_->kind_calls), std::end(impl_->kind_calls), 0);
}

std::string Model::summary() const {
  const Graph& g = impl_->g;
  std::ostringstream s;
  s << "bmx model (format " << g.version << ", producer '" << g.producer << "'): " << g.ops.size() << " ops, "
    << "arena " << impl_->plan.arena_bytes << " bytes per sample\n";
  for (const OpNode& op : g.ops) {
    const ValueInfo& y = g.values[op.out];
    s << "  " << std::setw(4) << op.index << " " << std::setw(18) << std::left << rt::op_type_name(op.type)
      << std::right << " " << op.name << " -> [" << y.c << "," << y.h << "," << y.w << "]"
      << (y.levels ? " levels(" + std::to_string(y.planes) + ")" : y.bits ? " bits" : "")
      << "\n";
  }
  return s.str();
}

void validate_model(const void* data, std::size_t size) {
  (void)rt::load_graph(data, size, /*prepare=*/false);
}

}  // namespace bmx
