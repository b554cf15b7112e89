// Python bindings of the bit-packing and binary GEMM/conv kernels (bmx.engine documents
// them). Every argument is validated here: wrong dtypes, shapes or word counts raise
// ValueError (std::invalid_argument) before any pointer is touched. Heavy work runs with
// the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "core/bconv2d/bconv2d.h"
#include "core/bgemm/bgemm.h"
#include "core/bitpack/bitpack.h"
#include "core/bitpack/reference.h"
#include "core/common/scratch.h"
#include "core/common/threadpool.h"
#include "core/kbgemm/kbgemm.h"
#include "core/signpack/signpack.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace bmx::python {

namespace {

using U64Array = py::array_t<word_t, py::array::c_style>;

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument(msg); }

// Kernel outputs are 64-byte aligned (numpy's own allocations are 16-byte aligned). The
// threaded kernels split C at whole 16-row panels or 16-pixel/16-column tiles of int32,
// 64 bytes apart, so with an aligned base two cores never write the same cache line: a line
// shared at the split cost a 7x7 layer's 2-thread call 0.05-0.1 us of ~4 us (the store that
// waits for the line holds up the stores behind it).
template <typename T>
py::array_t<T> aligned_array(const std::vector<py::ssize_t>& shape) {
  std::size_t count = 1;
  for (py::ssize_t d : shape) count *= static_cast<std::size_t>(d);
  const std::size_t bytes = (std::max<std::size_t>(count, 1) * sizeof(T) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (p == nullptr) throw std::bad_alloc();
  py::capsule owner(p, [](void* q) { std::free(q); });
  return py::array_t<T>(shape, static_cast<T*>(p), owner);
}

// One pool per thread count, created on first use and kept (thread start-up would cost
// more than a small layer). A pool serves one call at a time: the lock serialises
// concurrent Python threads that ask for the same count.
struct PoolSlot {
  std::mutex mu;
  std::unique_ptr<ThreadPool> pool;
};
PoolSlot& pool_slot(int threads) {
  static std::mutex map_mu;
  static std::map<int, std::unique_ptr<PoolSlot>> slots;
  std::lock_guard<std::mutex> lk(map_mu);
  auto& s = slots[threads];
  if (!s) {
    s = std::make_unique<PoolSlot>();
    if (threads > 1) s->pool = std::make_unique<ThreadPool>(threads);
  }
  return *s;
}

int check_threads(int num_threads) {
  if (num_threads < 1 || num_threads > 256) fail("num_threads must be in [1, 256], got " + std::to_string(num_threads));
  return num_threads;
}

const BgemmKernel& lookup_kernel(const std::string& name) {
  return bgemm_kernel(name);  // std::invalid_argument (ValueError) names the known kernels
}

bool is_dtype(const py::array& a, const py::dtype& d) { return a.dtype().is(d); }

std::string dtype_name(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

U64Array as_words(const py::array& a, const char* what) {
  if (!is_dtype(a, py::dtype::of<word_t>()))
    fail(std::string(what) + " must be a uint64 array of packed bits (see pack_bits), got dtype " + dtype_name(a));
  return U64Array::ensure(a);
}

// Tail bits beyond k must be zero (the convention); a row with stray bits would give a
// silently wrong result, so it is rejected.
void check_tails(const U64Array& a, std::int64_t rows, std::int64_t words, std::int64_t k, const char* what) {
  if (k % kWordBits == 0 || words == 0) return;
  const word_t bad = ~tail_mask(k);
  const word_t* p = a.data();
  for (std::int64_t r = 0; r < rows; ++r)
    if (p[r * words + words - 1] & bad)
      fail(std::string(what) + ": row " + std::to_string(r) + " has bits set beyond k = " + std::to_string(k) +
           " (tail bits must be 0)");
}

// ---- packing -------------------------------------------------------------------------

py::array_t<word_t> pack_last_axis(const py::array& x_in, int num_threads) {
  check_threads(num_threads);
  const bool f32 = is_dtype(x_in, py::dtype::of<float>());
  const bool i8 = is_dtype(x_in, py::dtype::of<std::int8_t>());
  if (!f32 && !i8) fail("pack_bits: expected a float32 or int8 array, got dtype " + dtype_name(x_in));
  if (x_in.ndim() < 1) fail("pack_bits: expected an array with at least one dimension");
  py::array x = py::array::ensure(x_in, py::array::c_style);
  const std::int64_t k = x.shape(x.ndim() - 1);
  const std::int64_t rows = k == 0 ? 0 : x.size() / k;
  const std::int64_t words = words_for_bits(k);
  std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
  shape.back() = static_cast<py::ssize_t>(words);
  py::array_t<word_t> out(shape);
  if (rows == 0 || k == 0) return out;
  word_t* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    PoolSlot& slot = pool_slot(num_threads);
    std::lock_guard<std::mutex> lk(slot.mu);
    if (f32)
      pack_rows(static_cast<const float*>(x.data()), rows, k, k, o, words, slot.pool.get());
    else
      pack_rows(static_cast<const std::int8_t*>(x.data()), rows, k, k, o, words, slot.pool.get());
  }
  return out;
}

// ---- binary GEMM ---------------------------------------------------------------------

// Validated operands of one binary_gemm call (kept alive by the arrays).
struct GemmCall {
  U64Array a, b;
  std::int64_t m = 0, n = 0, words = 0, k = 0;
  const BgemmKernel* kern = nullptr;
};

GemmCall prepare_gemm(const py::array& a_in, const py::array& b_in, std::int64_t k, const std::string& kernel) {
  GemmCall g;
  g.kern = &lookup_kernel(kernel);
  g.a = as_words(a_in, "binary_gemm: a_bits");
  g.b = as_words(b_in, "binary_gemm: b_bits");
  if (g.a.ndim() != 2 || g.b.ndim() != 2)
    fail("binary_gemm: a_bits and b_bits must be 2-D (rows, words), got " + std::to_string(g.a.ndim()) + "-D and " +
         std::to_string(g.b.ndim()) + "-D");
  if (k < 0 || k > (std::int64_t{1} << 30)) fail("binary_gemm: k must be in [0, 2**30], got " + std::to_string(k));
  g.k = k;
  g.words = words_for_bits(k);
  if (g.a.shape(1) != g.words || g.b.shape(1) != g.words)
    fail("binary_gemm: k = " + std::to_string(k) + " bits needs ceil(k/64) = " + std::to_string(g.words) +
         " words per row, got a_bits with " + std::to_string(g.a.shape(1)) + " and b_bits with " +
         std::to_string(g.b.shape(1)));
  g.m = g.a.shape(0), g.n = g.b.shape(0);
  check_tails(g.a, g.m, g.words, k, "binary_gemm: a_bits");
  check_tails(g.b, g.n, g.words, k, "binary_gemm: b_bits");
  return g;
}

// Without the GIL.
void run_gemm(const GemmCall& g, std::int32_t* c, ThreadPool* pool) {
  bgemm(g.a.data(), g.words, g.b.data(), g.words, g.m, g.n, g.words, static_cast<std::int32_t>(g.k), c, g.n, pool,
        g.kern);
}

py::array_t<std::int32_t> binary_gemm(const py::array& a_in, const py::array& b_in, std::int64_t k, int num_threads,
                                      const std::string& kernel) {
  check_threads(num_threads);
  const GemmCall g = prepare_gemm(a_in, b_in, k, kernel);
  auto c = aligned_array<std::int32_t>({static_cast<py::ssize_t>(g.m), static_cast<py::ssize_t>(g.n)});
  std::int32_t* cp = c.mutable_data();
  {
    py::gil_scoped_release nogil;
    PoolSlot& slot = pool_slot(num_threads);
    std::lock_guard<std::mutex> lk(slot.mu);
    run_gemm(g, cp, slot.pool.get());
  }
  return c;
}

// ---- k-bit bit-plane GEMM ------------------------------------------------------------

// One kbit_gemm operand: (rows, planes, words) uint64 with 1 <= planes <= 4.
U64Array as_planes(const py::array& x, const char* what) {
  U64Array a = as_words(x, what);
  if (a.ndim() != 3)
    fail(std::string(what) + " must be 3-D (rows, planes, words), got " + std::to_string(a.ndim()) + "-D");
  if (a.shape(1) < 1 || a.shape(1) > kMaxKbitPlanes)
    fail(std::string(what) + " must have 1 to " + std::to_string(kMaxKbitPlanes) + " bit planes (shape[1]), got " +
         std::to_string(a.shape(1)));
  return a;
}

// With k known, the bits of every plane past k must be 0 (they would count otherwise).
void check_plane_tails(const U64Array& a, std::int64_t k, const char* what) {
  const std::int64_t rows = a.shape(0), planes = a.shape(1), words = a.shape(2);
  if (k % kWordBits == 0 || words == 0) return;
  const word_t bad = ~tail_mask(k);
  const word_t* p = a.data();
  for (std::int64_t r = 0; r < rows * planes; ++r)
    if (p[r * words + words - 1] & bad)
      fail(std::string(what) + ": row " + std::to_string(r / planes) + ", plane " + std::to_string(r % planes) +
           " has bits set beyond k = " + std::to_string(k) + " (tail bits must be 0)");
}

// packed: B through kbgemm_pack_b and kbgemm_packed (packed in this call; a test of the
// packed path, which a model would pack once).
py::array_t<std::int32_t> kbit_gemm(const py::array& a_in, const py::array& b_in, const std::string& kernel,
                                    int num_threads, const py::object& k_obj, bool packed) {
  check_threads(num_threads);
  const KbgemmKernel& kern = kbgemm_kernel(kernel);  // ValueError names the known kernels
  if (packed && !kern.run_packed)
    fail("kbit_gemm: kernel '" + std::string(kern.name) + "' has no packed form (packed=True)");
  const U64Array a = as_planes(a_in, "kbit_gemm: a_planes");
  const U64Array b = as_planes(b_in, "kbit_gemm: b_planes");
  const std::int64_t m = a.shape(0), n = b.shape(0), words = a.shape(2);
  const int pa = static_cast<int>(a.shape(1)), pb = static_cast<int>(b.shape(1));
  if (b.shape(2) != words)
    fail("kbit_gemm: a_planes and b_planes must have the same number of words per plane, got " +
         std::to_string(words) + " and " + std::to_string(b.shape(2)));
  if (!k_obj.is_none()) {
    const std::int64_t k = k_obj.cast<std::int64_t>();
    if (k < 0 || k > (std::int64_t{1} << 40)) fail("kbit_gemm: k must be in [0, 2**40], got " + std::to_string(k));
    if (words_for_bits(k) != words)
      fail("kbit_gemm: k = " + std::to_string(k) + " elements need ceil(k/64) = " + std::to_string(words_for_bits(k)) +
           " words per plane, got " + std::to_string(words));
    check_plane_tails(a, k, "kbit_gemm: a_planes");
    check_plane_tails(b, k, "kbit_gemm: b_planes");
  }
  if (words > kbgemm_max_words(pa, pb))
    fail("kbit_gemm: " + std::to_string(words) + " words per plane can overflow int32 with " + std::to_string(pa) +
         " x " + std::to_string(pb) + " planes (at most " + std::to_string(kbgemm_max_words(pa, pb)) + ")");
  auto c = aligned_array<std::int32_t>({static_cast<py::ssize_t>(m), static_cast<py::ssize_t>(n)});
  std::int32_t* cp = c.mutable_data();
  {
    py::gil_scoped_release nogil;
    PoolSlot& slot = pool_slot(num_threads);
    std::lock_guard<std::mutex> lk(slot.mu);
    if (packed) {
      const std::vector<word_t> pbuf = kbgemm_pack_b(kern, b.data(), pb * words, n, words, pb);
      kbgemm_packed(a.data(), pa * words, pbuf.data(), m, n, words, pa, pb, cp, n, slot.pool.get(), kern);
    } else {
      kbgemm(a.data(), pa * words, b.data(), pb * words, m, n, words, pa, pb, cp, n, slot.pool.get(), &kern);
    }
  }
  return c;
}

// ---- timing in C++ (bmx-bench) -------------------------------------------------------

// Seconds per call of fn: `repeat` samples, each a loop long enough (min_seconds) to be
// above timer noise, after a warm-up of `warmup` seconds (a pool's idle workers sleep
// after ~2 ms, and a woken thread can take a while to be scheduled; back-to-back calls,
// as in a network, are what is measured). Runs without the GIL.
template <typename F>
std::vector<double> time_samples(F&& fn, double min_seconds, int repeat, double warmup) {
  using clk = std::chrono::steady_clock;
  auto secs = [](clk::duration d) { return std::chrono::duration<double>(d).count(); };
  double one = 1e-7;
  const auto end = clk::now() + std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(warmup));
  do {
    const auto t0 = clk::now();
    fn();
    one = std::max(secs(clk::now() - t0), 1e-7);
  } while (clk::now() < end);
  const auto inner = static_cast<std::int64_t>(std::max(1.0, min_seconds / one));
  std::vector<double> out;
  for (int r = 0; r < repeat; ++r) {
    const auto t0 = clk::now();
    for (std::int64_t i = 0; i < inner; ++i) fn();
    out.push_back(secs(clk::now() - t0) / static_cast<double>(inner));
  }
  return out;
}

void check_timing(double min_seconds, int repeat, double warmup) {
  if (!(min_seconds >= 0 && min_seconds <= 10)) fail("min_seconds must be in [0, 10]");
  if (repeat < 1 || repeat > 10000) fail("repeat must be in [1, 10000]");
  if (!(warmup >= 0 && warmup <= 10)) fail("warmup must be in [0, 10]");
}

// ---- the cost of a 2-thread fork-join (what a small layer pays to use a second core) --

// Spins for `us` microseconds (the stand-in for a chunk of work).
void spin_for(double us) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::nanoseconds(static_cast<std::int64_t>(us * 1e3));
  while (std::chrono::steady_clock::now() < end) {
  }
}

struct SpinArgs {
  double us = 0;
};

// Seconds per call of: the work alone on one thread; the pool running two chunks of it on
// two threads (bmx's fork-join); and a bare handshake doing the same (the caller stores a
// flag, a dedicated thread spinning on it runs its chunk and stores a flag back, the
// caller runs its own chunk and spins on that flag): the least a fork-join can cost
// here, two cache-line transfers between the cores.
py::dict time_fork_join(double work_us, double min_seconds, int repeat, double warmup) {
  check_timing(min_seconds, repeat, warmup);
  if (!(work_us >= 0 && work_us <= 1000)) fail("work_us must be in [0, 1000]");
  py::gil_scoped_release nogil;
  PoolSlot& slot = pool_slot(2);
  std::lock_guard<std::mutex> lk(slot.mu);
  const SpinArgs args{work_us};
  auto inline_s = time_samples([&] { spin_for(work_us); }, min_seconds, repeat, warmup);
  auto pool_s = time_samples(
      [&] {
        slot.pool->parallel_for_dynamic(
            2, 1, +[](const SpinArgs& a, std::int64_t, std::int64_t) { spin_for(a.us); }, args);
      },
      min_seconds, repeat, warmup);
  struct alignas(128) Flag {
    std::atomic<std::uint64_t> v{0};
  };
  Flag go, fin;
  std::atomic<bool> stop{false};
  std::thread helper([&] {
    std::uint64_t seen = 0;
    for (;;) {
      std::uint64_t g;
      while ((g = go.v.load(std::memory_order_acquire)) == seen) {
        if (stop.load(std::memory_order_relaxed)) return;
      }
      seen = g;
      spin_for(work_us);
      fin.v.store(g, std::memory_order_release);
    }
  });
  std::uint64_t n = 0;
  auto bare_s = time_samples(
      [&] {
        go.v.store(++n, std::memory_order_release);
        spin_for(work_us);
        while (fin.v.load(std::memory_order_acquire) != n) {
        }
      },
      min_seconds, repeat, warmup);
  stop.store(true);
  helper.join();
  py::gil_scoped_acquire gil;
  py::dict d;
  d["inline"] = inline_s;
  d["pool"] = pool_s;
  d["bare"] = bare_s;
  return d;
}

std::vector<double> time_binary_gemm(const py::array& a_in, const py::array& b_in, std::int64_t k, int num_threads,
                                     const std::string& kernel, double min_seconds, int repeat, double warmup) {
  check_threads(num_threads);
  check_timing(min_seconds, repeat, warmup);
  const GemmCall g = prepare_gemm(a_in, b_in, k, kernel);
  ScratchBuffer<std::int32_t> c;  // aligned like binary_gemm's output
  std::int32_t* cp = c.get(static_cast<std::size_t>(g.m * g.n));
  py::gil_scoped_release nogil;
  PoolSlot& slot = pool_slot(num_threads);
  std::lock_guard<std::mutex> lk(slot.mu);
  return time_samples([&] { run_gemm(g, cp, slot.pool.get()); }, min_seconds, repeat, warmup);
}

// ---- binary conv2d -------------------------------------------------------------------

std::pair<std::int64_t, std::int64_t> pair_arg(const py::object& o, const char* what) {
  std::int64_t h = 0, w = 0;
  if (py::isinstance<py::int_>(o)) {
    h = w = o.cast<std::int64_t>();
  } else {
    try {
      auto t = o.cast<std::vector<std::int64_t>>();
      if (t.size() != 2) fail("");
      h = t[0], w = t[1];
    } catch (const std::exception&) {
      fail(std::string("binary_conv2d: ") + what + " must be an int or a pair of ints");
    }
  }
  return {h, w};
}

// Validated operands of one binary_conv2d call. xk / wk: 0 packed uint64, 1 float32, 2 int8.
struct ConvCall {
  py::array x, w;
  int xk = 0, wk = 0;
  BConv2DShape s;
  const BgemmKernel* kern = nullptr;
  py::object filters;                // keeps a PackedFilters alive
  const word_t* packed = nullptr;    // its panel-arranged filters, if any
};

// Filters packed once (bmx.engine.pack_filters): the plain packed words and, for kernels
// that have one, the kernel's own panel arrangement, as a loaded model holds them.
struct PackedFilters {
  py::array_t<word_t> plain;  // (C_out, KH, KW, ceil(C_in / 64))
  std::int64_t in_c = 0;
  const BgemmKernel* kern = nullptr;
  ScratchBuffer<word_t> panels;
  std::int64_t panel_words = 0;
};

ConvCall prepare_conv(const py::array& x_in, const py::object& w_obj, const py::object& stride,
                      const py::object& padding, const py::object& dilation, const py::object& in_channels_arg,
                      const std::string& kernel) {
  py::array w_in;
  py::object in_channels = in_channels_arg;
  const PackedFilters* pf = nullptr;
  if (py::isinstance<PackedFilters>(w_obj)) {
    pf = &w_obj.cast<const PackedFilters&>();
    if (kernel != "auto" && kernel != pf->kern->name)
      fail("binary_conv2d: the weights were packed for kernel '" + std::string(pf->kern->name) + "', not '" + kernel +
           "' (pack them again with kernel='" + kernel + "')");
    if (!in_channels.is_none() && in_channels.cast<std::int64_t>() != pf->in_c)
      fail("binary_conv2d: in_channels disagrees with the packed weights' C_in = " + std::to_string(pf->in_c));
    w_in = pf->plain;
    in_channels = py::int_(pf->in_c);
  } else if (py::isinstance<py::array>(w_obj)) {
    w_in = w_obj.cast<py::array>();
  } else {
    fail("binary_conv2d: weights must be a numpy array or PackedFilters (see pack_filters)");
  }
  const BgemmKernel& kern = pf ? *pf->kern : lookup_kernel(kernel);
  if (x_in.ndim() != 4) fail("binary_conv2d: x must be 4-D NHWC, got " + std::to_string(x_in.ndim()) + "-D");
  if (w_in.ndim() != 4) fail("binary_conv2d: weights must be 4-D (C_out, KH, KW, C_in), got " + std::to_string(w_in.ndim()) + "-D");
  const auto u64 = py::dtype::of<word_t>();
  const auto f32 = py::dtype::of<float>();
  const auto i8 = py::dtype::of<std::int8_t>();
  auto kind = [&](const py::array& a, const char* what) {
    if (is_dtype(a, u64)) return 0;
    if (is_dtype(a, f32)) return 1;
    if (is_dtype(a, i8)) return 2;
    fail(std::string("binary_conv2d: ") + what + " must be float32, int8 or uint64 (packed), got dtype " + dtype_name(a));
  };
  const int xk = kind(x_in, "x"), wk = kind(w_in, "weights");
  std::int64_t c_in = -1;
  if (!in_channels.is_none()) c_in = in_channels.cast<std::int64_t>();
  if (xk != 0) {
    if (c_in >= 0 && c_in != x_in.shape(3)) fail("binary_conv2d: in_channels disagrees with x.shape[3]");
    c_in = x_in.shape(3);
  }
  if (wk != 0) {
    if (c_in >= 0 && c_in != w_in.shape(3))
      fail("binary_conv2d: weights have C_in = " + std::to_string(w_in.shape(3)) + " but the input has " + std::to_string(c_in));
    c_in = w_in.shape(3);
  }
  if (c_in < 1) fail("binary_conv2d: in_channels is required (>= 1) when both x and weights are packed uint64");
  const std::int64_t iw = words_for_bits(c_in);
  if (xk == 0 && x_in.shape(3) != iw)
    fail("binary_conv2d: packed x must have ceil(C_in/64) = " + std::to_string(iw) + " words per pixel, got " +
         std::to_string(x_in.shape(3)));
  if (wk == 0 && w_in.shape(3) != iw)
    fail("binary_conv2d: packed weights must have ceil(C_in/64) = " + std::to_string(iw) + " words per tap, got " +
         std::to_string(w_in.shape(3)));
  BConv2DShape s;
  s.batch = x_in.shape(0), s.in_h = x_in.shape(1), s.in_w = x_in.shape(2), s.in_c = c_in;
  s.out_c = w_in.shape(0), s.kernel_h = w_in.shape(1), s.kernel_w = w_in.shape(2);
  std::tie(s.stride_h, s.stride_w) = pair_arg(stride, "stride");
  std::tie(s.pad_h, s.pad_w) = pair_arg(padding, "padding");
  std::tie(s.dilation_h, s.dilation_w) = pair_arg(dilation, "dilation");
  {
    // Shape errors before any work (bconv2d checks again).
    if (s.batch < 1 || s.in_h < 1 || s.in_w < 1 || s.out_c < 1 || s.kernel_h < 1 || s.kernel_w < 1)
      fail("binary_conv2d: empty input or weights");
    if (s.stride_h < 1 || s.stride_w < 1 || s.dilation_h < 1 || s.dilation_w < 1 || s.pad_h < 0 || s.pad_w < 0)
      fail("binary_conv2d: stride and dilation must be >= 1 and padding >= 0");
    if (s.in_h + 2 * s.pad_h < s.dilation_h * (s.kernel_h - 1) + 1 || s.in_w + 2 * s.pad_w < s.dilation_w * (s.kernel_w - 1) + 1)
      fail("binary_conv2d: kernel (with dilation) is larger than the padded input");
  }
  py::array x = py::array::ensure(x_in, py::array::c_style);
  py::array w = py::array::ensure(w_in, py::array::c_style);
  const std::int64_t in_pixels = s.batch * s.in_h * s.in_w;
  const std::int64_t taps = s.out_c * s.kernel_h * s.kernel_w;
  if (xk == 0) check_tails(U64Array::ensure(x), in_pixels, iw, c_in, "binary_conv2d: x");
  if (wk == 0) check_tails(U64Array::ensure(w), taps, iw, c_in, "binary_conv2d: weights");
  ConvCall call;
  call.x = x, call.w = w, call.xk = xk, call.wk = wk, call.s = s, call.kern = &kern;
  if (pf) {
    call.filters = w_obj;
    call.packed = pf->panel_words ? pf->panels.data() : nullptr;
  }
  return call;
}

// Packs float/int8 weights (thread-local buffer), then the convolution; a float/int8 input
// is packed inside the convolution's parallel loop. Without the GIL.
void run_conv(const ConvCall& call, std::int32_t* op, ThreadPool* pool) {
  const BConv2DShape& s = call.s;
  const std::int64_t c_in = s.in_c, iw = s.in_words();
  const std::int64_t taps = s.out_c * s.kernel_h * s.kernel_w;
  thread_local std::vector<word_t> wbuf;
  const word_t* wp = static_cast<const word_t*>(call.w.data());
  if (call.wk != 0) {
    wbuf.resize(static_cast<std::size_t>(taps * iw));
    if (call.wk == 1)
      pack_rows(static_cast<const float*>(call.w.data()), taps, c_in, c_in, wbuf.data(), iw, pool);
    else
      pack_rows(static_cast<const std::int8_t*>(call.w.data()), taps, c_in, c_in, wbuf.data(), iw, pool);
    wp = wbuf.data();
  }
  if (call.xk == 1)
    bconv2d(static_cast<const float*>(call.x.data()), wp, s, op, pool, call.kern, call.packed);
  else if (call.xk == 2)
    bconv2d(static_cast<const std::int8_t*>(call.x.data()), wp, s, op, pool, call.kern, call.packed);
  else
    bconv2d(static_cast<const word_t*>(call.x.data()), wp, s, op, pool, call.kern, call.packed);
}

py::array_t<std::int32_t> binary_conv2d(const py::array& x_in, const py::object& w_in, const py::object& stride,
                                        const py::object& padding, const py::object& dilation,
                                        const py::object& in_channels, int num_threads, const std::string& kernel) {
  check_threads(num_threads);
  const ConvCall call = prepare_conv(x_in, w_in, stride, padding, dilation, in_channels, kernel);
  const BConv2DShape& s = call.s;
  auto out = aligned_array<std::int32_t>({static_cast<py::ssize_t>(s.batch), static_cast<py::ssize_t>(s.out_h()),
                                         static_cast<py::ssize_t>(s.out_w()), static_cast<py::ssize_t>(s.out_c)});
  std::int32_t* op = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    PoolSlot& slot = pool_slot(num_threads);
    std::lock_guard<std::mutex> lk(slot.mu);
    run_conv(call, op, slot.pool.get());
  }
  return out;
}

std::vector<double> time_binary_conv2d(const py::array& x_in, const py::object& w_in, const py::object& stride,
                                       const py::object& padding, const py::object& dilation,
                                       const py::object& in_channels, int num_threads, const std::string& kernel,
                                       double min_seconds, int repeat, double warmup) {
  check_threads(num_threads);
  check_timing(min_seconds, repeat, warmup);
  const ConvCall call = prepare_conv(x_in, w_in, stride, padding, dilation, in_channels, kernel);
  const BConv2DShape& s = call.s;
  ScratchBuffer<std::int32_t> out;  // aligned like binary_conv2d's output
  std::int32_t* op = out.get(static_cast<std::size_t>(s.batch * s.out_h() * s.out_w() * s.out_c));
  py::gil_scoped_release nogil;
  PoolSlot& slot = pool_slot(num_threads);
  std::lock_guard<std::mutex> lk(slot.mu);
  return time_samples([&] { run_conv(call, op, slot.pool.get()); }, min_seconds, repeat, warmup);
}

std::unique_ptr<PackedFilters> pack_filters(const py::array& w_in, const py::object& in_channels,
                                            const std::string& kernel) {
  auto pf = std::make_unique<PackedFilters>();
  pf->kern = &lookup_kernel(kernel);
  if (w_in.ndim() != 4)
    fail("pack_filters: weights must be 4-D (C_out, KH, KW, C_in), got " + std::to_string(w_in.ndim()) + "-D");
  const bool packed = is_dtype(w_in, py::dtype::of<word_t>());
  const bool f32 = is_dtype(w_in, py::dtype::of<float>()), i8 = is_dtype(w_in, py::dtype::of<std::int8_t>());
  if (!packed && !f32 && !i8)
    fail("pack_filters: weights must be float32, int8 or uint64 (packed), got dtype " + dtype_name(w_in));
  std::int64_t c_in = in_channels.is_none() ? -1 : in_channels.cast<std::int64_t>();
  if (!packed) {
    if (c_in >= 0 && c_in != w_in.shape(3)) fail("pack_filters: in_channels disagrees with weights.shape[3]");
    c_in = w_in.shape(3);
  }
  if (c_in < 1) fail("pack_filters: in_channels (>= 1) is required for packed uint64 weights");
  BConv2DShape s;
  s.in_c = c_in, s.out_c = w_in.shape(0), s.kernel_h = w_in.shape(1), s.kernel_w = w_in.shape(2);
  if (s.out_c < 1 || s.kernel_h < 1 || s.kernel_w < 1) fail("pack_filters: empty weights");
  const std::int64_t iw = s.in_words(), taps = s.out_c * s.kernel_h * s.kernel_w;
  if (packed && w_in.shape(3) != iw)
    fail("pack_filters: packed weights must have ceil(C_in/64) = " + std::to_string(iw) + " words per tap, got " +
         std::to_string(w_in.shape(3)));
  pf->in_c = c_in;
  pf->plain = py::array_t<word_t>({static_cast<py::ssize_t>(s.out_c), static_cast<py::ssize_t>(s.kernel_h),
                                   static_cast<py::ssize_t>(s.kernel_w), static_cast<py::ssize_t>(iw)});
  word_t* dst = pf->plain.mutable_data();
  if (packed) {
    const U64Array w = U64Array::ensure(w_in);
    check_tails(w, taps, iw, c_in, "pack_filters: weights");
    std::copy(w.data(), w.data() + taps * iw, dst);
  } else {
    py::array w = py::array::ensure(w_in, py::array::c_style);
    if (f32)
      pack_rows(static_cast<const float*>(w.data()), taps, c_in, c_in, dst, iw, nullptr);
    else
      pack_rows(static_cast<const std::int8_t*>(w.data()), taps, c_in, c_in, dst, iw, nullptr);
  }
  pf->panel_words = bconv2d_packed_filter_words(s, *pf->kern);
  if (pf->panel_words)
    bconv2d_pack_filter(dst, s, *pf->kern, pf->panels.get(static_cast<std::size_t>(pf->panel_words)));
  return pf;
}

py::array_t<word_t> pack_rows_f32(py::array_t<float, py::array::c_style | py::array::forcecast> x) {
  if (x.ndim() != 2) fail("pack_rows_reference: expected a 2-D float32 array");
  const auto rows = x.shape(0), k = x.shape(1);
  py::array_t<word_t> out({rows, static_cast<py::ssize_t>(words_for_bits(k))});
  ref::pack_rows(x.data(), rows, k, out.mutable_data());
  return out;
}

// One sign-pack kernel by name on (pixels, c) float32 rows: bit c of row p = (scale[c] *
// x[p, c] + shift[c] < 0). Tests run every kernel this CPU has against numpy.
py::array_t<word_t> sign_pack_named(py::array_t<float, py::array::c_style> x, py::array_t<float, py::array::c_style> scale,
                                    py::array_t<float, py::array::c_style> shift, const std::string& kernel) {
  if (x.ndim() != 2) fail("sign_pack: expected a 2-D float32 array (pixels, channels)");
  const std::int64_t pixels = x.shape(0), c = x.shape(1);
  if (scale.ndim() != 1 || scale.shape(0) != c || shift.ndim() != 1 || shift.shape(0) != c)
    fail("sign_pack: scale and shift must be 1-D float32 arrays of length " + std::to_string(c));
  const SignPackKernel* k = kernel == "auto" ? &sign_pack_best_kernel() : nullptr;
  std::string known;
  for (const auto& cand : sign_pack_kernels()) {
    known += std::string(known.empty() ? "" : ", ") + cand.name;
    if (kernel == cand.name) k = &cand;
  }
  if (!k) fail("sign_pack: unknown kernel '" + kernel + "' (known: auto, " + known + ")");
  if (!k->available()) fail(std::string("sign_pack: kernel ") + k->name + " does not run on this CPU");
  py::array_t<word_t> out({static_cast<py::ssize_t>(pixels), static_cast<py::ssize_t>(words_for_bits(c))});
  {
    py::gil_scoped_release nogil;
    k->run(x.data(), pixels, c, c, scale.data(), shift.data(), out.mutable_data());
  }
  return out;
}

// One k-bit level-pack kernel by name on (pixels, c) float32 rows: the levels
// round(clip(scale * x + shift, 0, 1) * (2^planes - 1)) as (pixels, planes, words) planes.
py::array_t<word_t> level_pack_named(py::array_t<float, py::array::c_style> x, py::array_t<float, py::array::c_style> scale,
                                     py::array_t<float, py::array::c_style> shift, int planes, const std::string& kernel) {
  if (x.ndim() != 2) fail("level_pack: expected a 2-D float32 array (pixels, channels)");
  const std::int64_t pixels = x.shape(0), c = x.shape(1);
  if (scale.ndim() != 1 || scale.shape(0) != c || shift.ndim() != 1 || shift.shape(0) != c)
    fail("level_pack: scale and shift must be 1-D float32 arrays of length " + std::to_string(c));
  if (planes < 1 || planes > kMaxKbitPlanes) fail("level_pack: planes must be in [1, 4]");
  const LevelPackKernel* k = nullptr;
  std::string known;
  for (const auto& cand : level_pack_kernels()) {
    known += std::string(known.empty() ? "" : ", ") + cand.name;
    if (kernel == cand.name || (kernel == "auto" && cand.available())) k = &cand;  // auto: the last available
  }
  if (!k) fail("level_pack: unknown kernel '" + kernel + "' (known: auto, " + known + ")");
  if (!k->available()) fail(std::string("level_pack: kernel ") + k->name + " does not run on this CPU");
  py::array_t<word_t> out({static_cast<py::ssize_t>(pixels), static_cast<py::ssize_t>(planes),
                           static_cast<py::ssize_t>(words_for_bits(c))});
  {
    py::gil_scoped_release nogil;
    k->run(x.data(), pixels, c, c, scale.data(), shift.data(), planes, out.mutable_data());
  }
  return out;
}

}  // namespace

void bind_kernels(py::module_& m) {
  m.def("pack_rows_reference", &pack_rows_f32, py::arg("x"),
        "Naive packing of the rows of a 2-D float32 array (reference kernel).");
  m.def("pack_last_axis", &pack_last_axis, py::arg("x"), py::arg("num_threads") = 1,
        "Pack a C-contiguous float32/int8 array along its last axis into uint64 words.");
  m.def("binary_gemm", &binary_gemm, py::arg("a_bits"), py::arg("b_bits"), py::arg("k"), py::arg("num_threads") = 1,
        py::arg("kernel") = "auto", "C[m, n] = k - 2 * popcount(a_bits[m] ^ b_bits[n]) as int32.");
  m.def("binary_conv2d", &binary_conv2d, py::arg("x"), py::arg("weights"), py::arg("stride") = 1,
        py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("in_channels") = py::none(),
        py::arg("num_threads") = 1, py::arg("kernel") = "auto",
        "Binary 2-D convolution of NHWC input with -1 padding; int32 NHWC +-1 dot products.");
  py::class_<PackedFilters>(m, "PackedFilters",
                            "Binary conv filters packed once for a kernel (see bmx.engine.pack_filters).")
      .def_property_readonly("shape", [](const PackedFilters& p) {
        return py::make_tuple(p.plain.shape(0), p.plain.shape(1), p.plain.shape(2), p.in_c);
      }, "(C_out, KH, KW, C_in)")
      .def_property_readonly("in_channels", [](const PackedFilters& p) { return p.in_c; })
      .def_property_readonly("kernel", [](const PackedFilters& p) { return std::string(p.kern->name); })
      .def_property_readonly("words", [](const PackedFilters& p) { return p.plain; },
                             "The packed words, (C_out, KH, KW, ceil(C_in / 64)) uint64.")
      .def("__repr__", [](const PackedFilters& p) {
        return "PackedFilters(shape=(" + std::to_string(p.plain.shape(0)) + ", " + std::to_string(p.plain.shape(1)) +
               ", " + std::to_string(p.plain.shape(2)) + ", " + std::to_string(p.in_c) + "), kernel='" + p.kern->name +
               "')";
      });
  m.def("pack_filters", &pack_filters, py::arg("weights"), py::arg("in_channels") = py::none(),
        py::arg("kernel") = "auto", "Pack binary conv filters once (plain words and the kernel's panel layout).");
  m.def("time_fork_join", &time_fork_join, py::arg("work_us") = 2.0, py::arg("min_seconds") = 0.01,
        py::arg("repeat") = 7, py::arg("warmup") = 0.05,
        "Seconds per call: {'inline': the work on one thread, 'pool': two chunks on the 2-thread pool, "
        "'bare': two chunks with a bare flag handshake}, `repeat` samples each.");
  m.def("time_binary_gemm", &time_binary_gemm, py::arg("a_bits"), py::arg("b_bits"), py::arg("k"),
        py::arg("num_threads") = 1, py::arg("kernel") = "auto", py::arg("min_seconds") = 0.001,
        py::arg("repeat") = 7, py::arg("warmup") = 0.05,
        "Seconds per binary_gemm call, timed in C++ (no Python call overhead): a list of `repeat` samples.");
  m.def("time_binary_conv2d", &time_binary_conv2d, py::arg("x"), py::arg("weights"), py::arg("stride") = 1,
        py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("in_channels") = py::none(),
        py::arg("num_threads") = 1, py::arg("kernel") = "auto", py::arg("min_seconds") = 0.001,
        py::arg("repeat") = 7, py::arg("warmup") = 0.05,
        "Seconds per binary_conv2d call (input packing included), timed in C++: a list of `repeat` samples.");
  m.def(
      "list_kernels",
      [] {
        std::vector<std::tuple<std::string, bool>> out;
        for (const auto& k : bgemm_kernels()) out.emplace_back(k.name, k.available());
        return out;
      },
      "Every bgemm kernel compiled into this build as (name, available on this CPU).");
  m.def("kbit_gemm", &kbit_gemm, py::arg("a_planes"), py::arg("b_planes"), py::arg("kernel") = "auto",
        py::arg("num_threads") = 1, py::arg("k") = py::none(), py::arg("packed") = false,
        "C[m, n] = sum_ij 2^(i+j) popcount(a_planes[m, i] & b_planes[n, j]) as int32 (k-bit bit-plane GEMM); "
        "packed=True runs B through the kernel's packed panel form (kernels with one only).");
  m.def(
      "list_kbit_kernels",
      [] {
        std::vector<std::tuple<std::string, bool>> out;
        for (const auto& k : kbgemm_kernels()) out.emplace_back(k.name, k.available());
        return out;
      },
      "Every k-bit bit-plane GEMM kernel compiled into this build as (name, available on this CPU).");
  m.def(
      "list_sign_pack_kernels",
      [] {
        std::vector<std::tuple<std::string, bool>> out;
        for (const auto& k : sign_pack_kernels()) out.emplace_back(k.name, k.available());
        return out;
      },
      "Every fused BatchNorm + sign + packing kernel compiled into this build as (name, available).");
  m.def("sign_pack", &sign_pack_named, py::arg("x"), py::arg("scale"), py::arg("shift"), py::arg("kernel") = "auto",
        "Bits (scale * x + shift < 0) of (pixels, c) float32 rows packed into uint64 words, by one named kernel.");
  m.def(
      "list_level_pack_kernels",
      [] {
        std::vector<std::tuple<std::string, bool>> out;
        for (const auto& k : level_pack_kernels()) out.emplace_back(k.name, k.available());
        return out;
      },
      "Every k-bit level packing kernel compiled into this build as (name, available).");
  m.def("level_pack", &level_pack_named, py::arg("x"), py::arg("scale"), py::arg("shift"), py::arg("planes"),
        py::arg("kernel") = "auto", "k-bit levels of (pixels, c) float32 rows as bit planes, by one named kernel.");
  m.def(
      "auto_kernel", [] { return std::string(bgemm_kernel("auto").name); },
      "Name of the kernel that kernel='auto' dispatches to on this CPU.");
}

}  // namespace bmx::python
