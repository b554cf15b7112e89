// bmx::Model: load + plan once, then run the ops over a pre-planned arena.
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
#include "runtime/ops.h"

namespace bmx {

using rt::Graph;
using rt::OpNode;
using rt::OpType;
using rt::ValueInfo;

namespace rt {
const char* profile_kind_name(int k) {
  static const char* names[kNumKinds] = {"packing", "binary_conv", "float_conv", "bn_threshold",
                                         "pool", "concat", "other"};
  return (k >= 0 && k < kNumKinds) ? names[k] : "?";
}
}  // namespace rt

namespace {

constexpr std::int64_t kMaxBatch = 1 << 20;

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

int profile_kind(const OpNode& op) {
  switch (op.type) {
    case OpType::Conv2D: return rt::kFloatConv;
    case OpType::BinaryConv2D: return rt::kBinaryConv;
    case OpType::Sign: return rt::kPacking;
    case OpType::Affine: return rt::kBnThreshold;
    case OpType::Pool2D: return rt::kPool;
    case OpType::Concat: return rt::kConcat;
    default: return rt::kOther;
  }
}

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
      const ValueInfo& x = g.values[op.in[0]];
      const ValueInfo& y = g.values[op.out];
      std::size_t b = 0;
      if (op.type == OpType::Conv2D) b = rt::conv2d_work_floats(op, x, y, batch, nthreads) * sizeof(float);
      else if (op.type == OpType::BinaryConv2D) b = rt::bconv_work_bytes(op, x, y, batch);
      else if (op.type == OpType::Dense && x.rank == 4 && x.h * x.w > 1)
        b = static_cast<std::size_t>(batch) * x.c * x.h * x.w * sizeof(float);
      need = std::max(need, b);
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
  unsigned char* base(Context& c, int v) const {
    const rt::Placement& p = plan.place[v];
    return c.arena.data() + plan.storage_offset[p.storage] * static_cast<std::size_t>(c.batch);
  }
  float* fptr(Context& c, int v) const {
    return reinterpret_cast<float*>(base(c, v)) + plan.place[v].chan_offset;
  }
  word_t* wptr(Context& c, int v) const { return reinterpret_cast<word_t*>(base(c, v)); }
  std::int64_t ps(int v) const { return plan.place[v].pixel_stride; }

  void run_op(Context& c, const OpNode& op, bool timed) {
    const int n = c.batch;
    ThreadPool* pool = c.pool.get();
    const ValueInfo& x = g.values[op.in[0]];
    const ValueInfo& y = g.values[op.out];
    const std::int64_t pixels = static_cast<std::int64_t>(n) * y.h * y.w;
    switch (op.type) {
      case OpType::Conv2D:
        rt::conv2d_float(op, x, y, n, fptr(c, op.in[0]), ps(op.in[0]), fptr(c, op.out), ps(op.out),
                         reinterpret_cast<float*>(c.work.data()), c.threads, pool);
        return;
      case OpType::BinaryConv2D: {
        const bool res = op.fused_residual >= 0;
        const double epi = rt::binary_conv2d(op, x, y, n, wptr(c, op.in[0]), fptr(c, op.out), ps(op.out),
                                             c.work.data(), pool, timed, res ? fptr(c, op.fused_residual) : nullptr,
                                             res ? ps(op.fused_residual) : 0);
        if (timed) {
          // Report the scale/shift epilogue as BN/threshold work, not binary conv.
          c.kind_seconds[rt::kBnThreshold] += epi;
          c.kind_seconds[rt::kBinaryConv] -= epi;
        }
        return;
      }
      case OpType::Sign:
        rt::sign_pack(fptr(c, op.in[0]), pixels, x.c, ps(op.in[0]), op.scale.empty() ? nullptr : op.scale.data(),
                      op.shift.empty() ? nullptr : op.shift.data(), wptr(c, op.out), pool);
        return;
      case OpType::Affine:
        rt::affine(fptr(c, op.in[0]), ps(op.in[0]), fptr(c, op.out), ps(op.out), pixels, x.c, op.scale.data(),
                   op.shift.data(), op.relu, pool);
        return;
      case OpType::Relu:
        rt::affine(fptr(c, op.in[0]), ps(op.in[0]), fptr(c, op.out), ps(op.out), pixels, x.c, nullptr, nullptr,
                   true, pool);
        return;
      case OpType::Pool2D:
        rt::pool2d(op, x, y, n, fptr(c, op.in[0]), ps(op.in[0]), fptr(c, op.out), ps(op.out), pool);
        return;
      case OpType::Concat: {
        std::int64_t off = 0;
        float* out = fptr(c, op.out);
        for (int v : op.in) {
          const float* src = fptr(c, v);
          // Inputs placed in their slice by the planner are already there.
          if (src != out + off || ps(v) != ps(op.out)) {
            rt::copy_channels(src, ps(v), out + off, ps(op.out), pixels, g.values[v].c, pool);
          }
          off += g.values[v].c;
        }
        return;
      }
      case OpType::Add:
        if (op.fused_away) return;  // done in the preceding binary conv's epilogue
        rt::add(fptr(c, op.in[0]), ps(op.in[0]), fptr(c, op.in[1]), ps(op.in[1]), fptr(c, op.out), ps(op.out),
                pixels, y.c, pool);
        return;
      case OpType::AddToLastChannels:
        rt::add_to_last_channels(fptr(c, op.in[0]), ps(op.in[0]), x.c, fptr(c, op.in[1]), ps(op.in[1]),
                                 g.values[op.in[1]].c, fptr(c, op.out), ps(op.out), pixels, pool);
        return;
      case OpType::ChannelShuffle:
        rt::channel_shuffle(fptr(c, op.in[0]), ps(op.in[0]), fptr(c, op.out), ps(op.out), pixels, x.c, op.groups,
                            pool);
        return;
      case OpType::Dense: {
        const float* in = fptr(c, op.in[0]);
        const std::int64_t f = x.c * x.h * x.w;
        std::int64_t ld = ps(op.in[0]) * x.h * x.w;  // row of one sample
        if (x.h * x.w > 1 && ps(op.in[0]) != x.c) {
          float* tmp = reinterpret_cast<float*>(c.work.data());
          rt::copy_channels(in, ps(op.in[0]), tmp, x.c, static_cast<std::int64_t>(n) * x.h * x.w, x.c, pool);
          in = tmp;
          ld = f;
        }
        rt::dense(in, ld, n, f, op.w.data(), op.b.data(), op.out_c, fptr(c, op.out), pool);
        return;
      }
      case OpType::Flatten: {
        // NCHW flatten order from NHWC storage.
        const float* in = fptr(c, op.in[0]);
        float* out = fptr(c, op.out);
        const std::int64_t hw = x.h * x.w, s = ps(op.in[0]), f = x.c * hw;
        for (std::int64_t b = 0; b < n; ++b)
          for (std::int64_t ch = 0; ch < x.c; ++ch)
            for (std::int64_t p = 0; p < hw; ++p) out[b * f + ch * hw + p] = in[(b * hw + p) * s + ch];
        return;
      }
    }
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
    for (std::size_t k = 0; k < g.ops.size(); ++k) {
      const OpNode& op = g.ops[k];
      const auto t0 = prof ? clock::now() : clock::time_point{};
      try {
        run_op(*ctx, op, prof);
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
  if (n > (std::streamoff{1} << 31)) throw Error("model file '" + path + "' is too large");
  f.seekg(0, std::ios::beg);
  std::vector<unsigned char> buf(static_cast<std::size_t>(n));
  if (n > 0 && !f.read(reinterpret_cast<char*>(buf.data()), n)) {
    throw Error("cannot read model file '" + path + "'");
  }
  return buf;
}

std::unique_ptr<Model::Impl> make_impl(const void* data, std::size_t size, int num_threads) {
  if (num_threads < 1) throw Error("num_threads must be >= 1, got " + std::to_string(num_threads));
  if (num_threads > 1024) throw Error("num_threads " + std::to_string(num_threads) + " is too large");
  auto impl = std::make_unique<Model::Impl>();
  impl->g = rt::load_graph(data, size, /*prepare=*/true);
  impl->plan = rt::make_plan(impl->g);
  for (OpNode& op : impl->g.ops)
    if (op.type == OpType::BinaryConv2D) rt::prepare_binary_conv(op, impl->g.values[op.in[0]]);
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
  if (n > 1024) throw Error("num_threads " + std::to_string(n) + " is too large");
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
      << std::right << " " << op.name << " -> [" << y.c << "," << y.h << "," << y.w << "]" << (y.bits ? " bits" : "")
      << "\n";
  }
  return s.str();
}

void validate_model(const void* data, std::size_t size) {
  (void)rt::load_graph(data, size, /*prepare=*/false);
}

}  // namespace bmx
