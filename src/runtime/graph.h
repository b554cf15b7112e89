// The runtime's own graph: what the loader (loader.cc) builds from a verified model file
// (each op's fields are filled by its load function in ops/<op>.cc, see registry.h).
// After loading nothing refers to the file buffer. Shapes are logical at batch 1; inside
// the engine Float values are stored NHWC (4-D) or [N, F] (2-D) and Bits values as
// [N, H, W, words_for_bits(C)] packed words.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "bmx/convention.h"
#include "bmx/engine.h"
#include "runtime/op_list.h"

namespace bmx::rt {

// Heap buffer aligned to 64 bytes (cache line / AVX-512), zero-initialised.
template <typename T>
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t n) { resize(n); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; o.n_ = 0; }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    if (this != &o) { std::free(p_); p_ = o.p_; n_ = o.n_; o.p_ = nullptr; o.n_ = 0; }
    return *this;
  }
  ~AlignedBuffer() { std::free(p_); }
  // Discards the contents; the new buffer is zero-filled unless `zero` is false (the
  // activation arena: every value is written before it is read, and large arenas should
  // not be touched page by page up front).
  void resize(std::size_t n, bool zero = true) {
    std::free(p_);
    p_ = nullptr;
    n_ = 0;
    if (n == 0) return;
    std::size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
    p_ = static_cast<T*>(std::aligned_alloc(64, bytes));
    if (!p_) throw std::bad_alloc();
    if (zero) std::memset(static_cast<void*>(p_), 0, bytes);
    n_ = n;
  }
  T* data() { return p_; }
  const T* data() const { return p_; }
  std::size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  T& operator[](std::size_t i) { return p_[i]; }
  const T& operator[](std::size_t i) const { return p_[i]; }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

// One enumerator per row of op_list.h, in its order.
enum class OpType {
#define BMX_OP_ENUM(Name, kind, in_place) Name,
  BMX_OP_LIST(BMX_OP_ENUM)
#undef BMX_OP_ENUM
};
constexpr int kNumOpTypes = 0
#define BMX_OP_COUNT(Name, kind, in_place) +1
    BMX_OP_LIST(BMX_OP_COUNT)
#undef BMX_OP_COUNT
    ;
const char* op_type_name(OpType t);  // the row's Name; "?" for a value outside the list

// Profile categories (engine.h ProfileEntry::kind), in report order.
enum ProfileKind { kPacking, kBinaryConv, kFloatConv, kBnThreshold, kPool, kConcat, kOther, kNumKinds };
const char* profile_kind_name(int k);

struct ValueInfo {
  std::string name;
  int rank = 4;              // 4: [1, C, H, W]; 2: [1, C] (h = w = 1)
  std::int64_t c = 0, h = 1, w = 1;
  bool bits = false;         // packed: Bits (+-1) or Levels
  bool levels = false;       // Levels: k-bit unsigned levels as `planes` bit planes
  int planes = 1;            // bit planes per pixel (1 for Bits)
  std::int64_t pixels() const { return h * w; }
  // Storage per pixel: floats (Float) or words (Bits, Levels: the planes one after another).
  std::int64_t pixel_elems() const { return bits ? planes * words_for_bits(c) : c; }
  // Elements per sample in storage: floats (Float) or words (Bits, Levels).
  std::int64_t elems() const { return h * w * pixel_elems(); }
};

struct OpNode {
  OpType type{};
  std::string name;          // as in the file, for messages and profiles
  int index = 0;             // position in the file's op list
  std::vector<int> in;
  int out = -1;
  // convolution / pooling geometry
  std::int64_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
  std::int64_t groups = 1, out_c = 0;
  // Conv2D: groups as executed. Small groups (MeliusNet's grouped stem) are expanded at
  // load into one dense block-diagonal GEMM (exec_groups = 1): a few times more MACs but
  // at BLAS speed instead of tiny per-group GEMMs.
  std::int64_t exec_groups = 1;
  bool relu = false;
  bool pool_max = true, global = false, count_include_pad = true, ceil_mode = false;
  std::int64_t k_bits = 0;   // BinaryConv2D, KbitConv2D: C_in/groups * KH * KW
  // KbitConv2D: weight bit planes; the integer numerator of a window's dot product is
  // p_mul * P + sa_mul * SA + kterms[c] (+ padded-tap rows of kterms), ops/kbit_conv2d.cc
  int w_planes = 1;
  double p_mul = 0, sa_mul = 0;
  AlignedBuffer<double> kterms;
  // Weights, repacked for the kernels at load:
  //  Conv2D: w = [exec_groups][KH][KW][C_in/eg][C_out/eg] (GEMM B operand per group;
  //          zeros outside the diagonal blocks when expanded), b = [C_out]
  //  BinaryConv2D: wbits = [C_out][KH][KW][words(C_in/g)], scale/shift = [C_out]
  //  KbitConv2D: wbits = [C_out][planes][KH][KW][words(C_in)], scale/shift = [C_out] of the
  //          integer numerator (ops/kbit_conv2d.cc)
  //  Sign/Affine/Quantize: scale/shift = [C] (Sign, Quantize: empty means none)
  //  Dense: w = [units][F] with F in the engine's storage order (NHWC for a 4-D input)
  AlignedBuffer<float> w, b, scale, shift;
  AlignedBuffer<word_t> wbits;
  // BinaryConv2D with groups == 1: wbits re-arranged at load for the auto bgemm kernel
  // (its panel layout), so no thread re-arranges filters per call; empty if the kernel
  // has no packed form.
  AlignedBuffer<word_t> wpanels;
  // Fusion decided at load (fuse_residual_adds): a BinaryConv2D adds value fused_residual
  // in its epilogue, and the in-place Add that followed it (fused_away) does nothing.
  int fused_residual = -1;
  bool fused_away = false;
  std::string describe() const;  // "op 12 'name' (BinaryConv2D)"
};

struct Graph {
  std::uint32_t version = 0;
  std::string producer;
  std::vector<ValueInfo> values;
  std::vector<OpNode> ops;
  int input = -1, output = -1;
  int num_classes = 0;
  std::vector<float> mean, std;
};

// Parse, verify and validate a model. With prepare = false only the checks run (no
// weight copies): validate_model() and fuzzing use that.
Graph load_graph(const void* data, std::size_t size, bool prepare);

// ---- execution plan (planner.cc) ----
// Where a value lives: storage `root`, channel offset within a pixel of that storage, and
// the pixel stride (the root's channel count). Views arise from concatenation done in
// place and from in-place element-wise ops.
struct Placement {
  int storage = -1;
  std::int64_t chan_offset = 0;   // floats (Float) within a pixel
  std::int64_t pixel_stride = 0;  // floats or words per pixel
};

struct Plan {
  std::vector<Placement> place;           // per value
  std::vector<std::size_t> storage_offset; // bytes at batch 1 (64-aligned); scales with batch
  std::vector<std::size_t> storage_bytes;  // bytes at batch 1
  std::size_t arena_bytes = 0;             // at batch 1
};
Plan make_plan(const Graph& g);
// BinaryConv2D (groups 1) -> in-place Add(conv, r) as the conv's only reader: the Add is
// folded into the conv's epilogue (out = conv + r, same rounding order); only where the
// plan already puts the Add's output in the conv's own buffer, so no placement changes.
void fuse_residual_adds(Graph& g, const Plan& p);

}  // namespace bmx::rt
