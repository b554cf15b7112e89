// Model loader: treats the file as hostile. FlatBuffers verification first (offsets,
// sizes, nesting), then semantic checks: version, value indices, arity, kinds, every
// shape recomputed from the op parameters and compared with the recorded one, weight
// sizes exactly as the shapes demand, topological order, bounded sizes with
// overflow-checked arithmetic. Every failure is a bmx::Error naming the op.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>

#include "bmx_model_generated.h"
#include "runtime/graph.h"

namespace bmx::rt {

namespace {

// Bounds that keep every size computation far from overflow and reject absurd files.
constexpr std::int64_t kMaxDim = 1 << 20;          // any single dimension / parameter
constexpr std::int64_t kMaxElems = 1ll << 28;      // elements of one value at batch 1
constexpr std::int64_t kMaxTotalBytes = 1ll << 31; // all values together at batch 1
constexpr std::int64_t kMaxWindow = 1 << 12;       // kernel, stride, pad, dilation
constexpr std::int64_t kMaxOps = 1 << 14;          // ops, and values (the planner is quadratic in them)

[[noreturn]] void fail(const std::string& msg) { throw Error(msg); }

std::int64_t mul(std::int64_t a, std::int64_t b, const std::string& what) {
  std::int64_t r;
  if (__builtin_mul_overflow(a, b, &r) || r > kMaxElems * 64) fail(what + ": size overflow");
  return r;
}

std::string shape_str(const ValueInfo& v) {
  std::ostringstream s;
  if (v.rank == 4) s << "[1, " << v.c << ", " << v.h << ", " << v.w << "]";
  else s << "[1, " << v.c << "]";
  s << (v.bits ? " Bits" : " Float");
  return s.str();
}

class OpChecker {
 public:
  OpChecker(const Graph& g, const OpNode& op) : g_(g), op_(op) {}
  [[noreturn]] void fail(const std::string& msg) const { throw Error(op_.describe() + ": " + msg); }

  void arity(std::size_t n_in) const {
    if (op_.in.size() != n_in) {
      fail("expected " + std::to_string(n_in) + " input(s), got " + std::to_string(op_.in.size()));
    }
  }
  const ValueInfo& input(std::size_t i, bool bits, int rank = 4) const {
    const ValueInfo& v = g_.values[op_.in[i]];
    if (v.bits != bits) {
      fail("input " + std::to_string(i) + " '" + v.name + "' must be " + (bits ? "Bits" : "Float") +
           ", is " + shape_str(v));
    }
    if (rank && v.rank != rank) {
      fail("input " + std::to_string(i) + " '" + v.name + "' must be " + std::to_string(rank) +
           "-D, is " + shape_str(v));
    }
    return v;
  }
  // The recorded output shape must equal the computed one.
  void output(int rank, std::int64_t c, std::int64_t h, std::int64_t w, bool bits) const {
    const ValueInfo& v = g_.values[op_.out];
    ValueInfo e;
    e.rank = rank; e.c = c; e.h = h; e.w = w; e.bits = bits;
    if (v.rank != rank || v.c != c || v.h != h || v.w != w || v.bits != bits) {
      fail("output '" + v.name + "' is recorded as " + shape_str(v) + " but the op computes " +
           shape_str(e));
    }
  }
  // A [kh, kw]-style pair; `def` when the vector is absent or empty.
  template <typename V>
  void pair(const V* vec, const char* what, std::int64_t lo, std::int64_t hi, std::int64_t def,
            std::int64_t& a, std::int64_t& b) const {
    if (!vec || vec->size() == 0) {
      if (def < 0) fail(std::string(what) + " is missing");
      a = b = def;
      return;
    }
    if (vec->size() != 2) fail(std::string(what) + " must have 2 entries, has " + std::to_string(vec->size()));
    a = vec->Get(0);
    b = vec->Get(1);
    if (a < lo || a > hi || b < lo || b > hi) {
      fail(std::string(what) + " (" + std::to_string(a) + ", " + std::to_string(b) + ") out of range [" +
           std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
  }
  template <typename V>
  void bytes(const V* vec, std::int64_t expect, const char* what, bool optional) const {
    std::int64_t got = vec ? static_cast<std::int64_t>(vec->size()) : 0;
    if (optional && got == 0) return;
    if (got != expect) {
      fail(std::string(what) + " has " + std::to_string(got) + " bytes, expected " + std::to_string(expect));
    }
  }
  void floats(const flatbuffers::Vector<float>* vec, std::int64_t expect, const char* what,
              bool optional) const {
    std::int64_t got = vec ? static_cast<std::int64_t>(vec->size()) : 0;
    if (optional && got == 0) return;
    if (got != expect) {
      fail(std::string(what) + " has " + std::to_string(got) + " floats, expected " + std::to_string(expect));
    }
  }

 private:
  const Graph& g_;
  const OpNode& op_;
};

void copy_floats(const flatbuffers::Vector<float>* v, AlignedBuffer<float>& out) {
  out.resize(v->size());
  if (v->size()) std::memcpy(out.data(), v->data(), v->size() * 4);
}
// Finiteness of float32 data by its exponent bits (branch-free, vectorisable: the loader
// is meant to be cheap enough to fuzz a million times).
bool all_finite_raw(const std::uint8_t* p, std::size_t n) {
  std::uint32_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t u;
    std::memcpy(&u, p + 4 * i, 4);
    bad |= static_cast<std::uint32_t>((u & 0x7f800000u) == 0x7f800000u);
  }
  return bad == 0;
}
bool all_finite_bytes(const flatbuffers::Vector<std::uint8_t>* v) {
  return !v || all_finite_raw(v->data(), v->size() / 4);
}
bool all_finite(const flatbuffers::Vector<float>* v) {
  return !v || all_finite_raw(reinterpret_cast<const std::uint8_t*>(v->data()), v->size());
}

static_assert(FLATBUFFERS_LITTLEENDIAN, "bmx model files are little-endian; big-endian hosts unsupported");

// Window, groups and output channels shared by Conv2D and BinaryConv2D tables.
template <typename ConvTable>
void read_conv_geometry(OpChecker& ck, const ConvTable* p, OpNode& op) {
  ck.pair(p->kernel(), "kernel", 1, kMaxWindow, -1, op.kh, op.kw);
  ck.pair(p->stride(), "stride", 1, kMaxWindow, 1, op.sh, op.sw);
  ck.pair(p->pad(), "pad", 0, kMaxWindow, 0, op.ph, op.pw);
  ck.pair(p->dilation(), "dilation", 1, kMaxWindow, 1, op.dh, op.dw);
  op.groups = p->groups();
  op.out_c = p->out_channels();
}

// Channel/group/activation checks and the output shape, shared by both conv tables.
template <typename ConvTable>
void check_conv_output(OpChecker& ck, const ConvTable* p, OpNode& op, const ValueInfo& x) {
  if (op.out_c < 1 || op.out_c > kMaxDim) ck.fail("out_channels " + std::to_string(op.out_c) + " out of range");
  if (op.groups < 1 || x.c % op.groups || op.out_c % op.groups) {
    ck.fail("groups " + std::to_string(op.groups) + " must divide in_channels " + std::to_string(x.c) +
            " and out_channels " + std::to_string(op.out_c));
  }
  if (p->activation() != fb::Activation::None && p->activation() != fb::Activation::Relu) ck.fail("unknown activation");
  op.relu = p->activation() == fb::Activation::Relu;
  const std::int64_t eh = op.dh * (op.kh - 1) + 1, ew = op.dw * (op.kw - 1) + 1;
  if (x.h + 2 * op.ph < eh || x.w + 2 * op.pw < ew) ck.fail("kernel larger than the padded input");
  const std::int64_t oh = (x.h + 2 * op.ph - eh) / op.sh + 1, ow = (x.w + 2 * op.pw - ew) / op.sw + 1;
  ck.output(4, op.out_c, oh, ow, false);
}

void check_conv(const fb::Op* fop, OpNode& op, Graph& g, bool prepare) {
  OpChecker ck(g, op);
  const fb::Conv2D* p = fop->options_as_Conv2D();
  ck.arity(1);
  const ValueInfo& x = ck.input(0, false);
  read_conv_geometry(ck, p, op);
  check_conv_output(ck, p, op, x);
  const std::int64_t cg = x.c / op.groups, og = op.out_c / op.groups;
  const std::int64_t nw = mul(mul(mul(op.out_c, cg, "weight"), op.kh, "weight"), op.kw, "weight");
  if (mul(cg, op.kh * op.kw, "K") > (1 << 30)) ck.fail("reduction size too large");
  ck.bytes(p->weight(), nw * 4, "weight", false);
  ck.bytes(p->bias(), op.out_c * 4, "bias", true);
  if (!all_finite_bytes(p->weight()) || !all_finite_bytes(p->bias())) ck.fail("weight or bias is not finite");
  if (!prepare) return;
  // [C_out, C_in/g, KH, KW] -> [g][KH][KW][C_in/g][C_out/g]: the GEMM B operand of each group
  // for NHWC im2col rows ordered (kh, kw, c).
  const bool pointwise = op.kh == 1 && op.kw == 1 && op.sh == 1 && op.sw == 1 && op.ph == 0 && op.pw == 0;
  const bool expand = op.groups > 1 && op.groups <= 8 && !pointwise && (og < 32 || cg < 16);
  op.exec_groups = expand ? 1 : op.groups;
  const std::int64_t ecg = x.c / op.exec_groups, eog = op.out_c / op.exec_groups;
  op.w.resize(nw * (op.groups / op.exec_groups));  // zero-filled
  const std::uint8_t* src = p->weight()->data();
  for (std::int64_t o = 0; o < op.out_c; ++o) {
    const std::int64_t eg = o / eog, oo = o % eog;
    const std::int64_t c_base = expand ? (o / og) * cg : 0;  // the input block of o's group
    for (std::int64_t c = 0; c < cg; ++c)
      for (std::int64_t i = 0; i < op.kh; ++i)
        for (std::int64_t j = 0; j < op.kw; ++j) {
          float f;
          std::memcpy(&f, src + 4 * (((o * cg + c) * op.kh + i) * op.kw + j), 4);
          op.w[(((eg * op.kh + i) * op.kw + j) * ecg + c_base + c) * eog + oo] = f;
        }
  }
  op.b.resize(op.out_c);  // zero when absent
  if (p->bias() && p->bias()->size()) std::memcpy(op.b.data(), p->bias()->data(), op.out_c * 4);
}

void check_bconv(const fb::Op* fop, OpNode& op, Graph& g, bool prepare) {
  OpChecker ck(g, op);
  const fb::BinaryConv2D* p = fop->options_as_BinaryConv2D();
  ck.arity(1);
  const ValueInfo& x = ck.input(0, true);
  read_conv_geometry(ck, p, op);
  if (p->in_channels() != x.c) {
    ck.fail("in_channels " + std::to_string(p->in_channels()) + " differs from the input's " + std::to_string(x.c));
  }
  check_conv_output(ck, p, op, x);
  const std::int64_t cg = x.c / op.groups, wg = words_for_bits(cg);
  op.k_bits = mul(cg, op.kh * op.kw, "K");
  if (op.k_bits > (1 << 30)) ck.fail("reduction size too large");
  const std::int64_t nwords = mul(mul(op.out_c, op.kh * op.kw, "weight_bits"), wg, "weight_bits");
  ck.bytes(p->weight_bits(), nwords * 8, "weight_bits", false);
  ck.floats(p->scale(), op.out_c, "scale", false);
  ck.floats(p->shift(), op.out_c, "shift", false);
  if (!all_finite(p->scale()) || !all_finite(p->shift())) ck.fail("scale or shift is not finite");
  // Tail bits past C_in/g must be 0 (bmx/convention.h), or they would count in popcount.
  const word_t mask = tail_mask(cg);
  const std::uint8_t* wb = p->weight_bits()->data();
  for (std::int64_t r = 0; r < nwords / wg; ++r) {
    word_t last;
    std::memcpy(&last, wb + 8 * (r * wg + wg - 1), 8);
    if (last & ~mask) {
      ck.fail("weight_bits row " + std::to_string(r) + " has bits set past in_channels/groups = " +
              std::to_string(cg) + " (tail bits must be 0)");
    }
  }
  if (!prepare) return;
  op.wbits.resize(nwords);
  std::memcpy(op.wbits.data(), wb, nwords * 8);
  copy_floats(p->scale(), op.scale);
  copy_floats(p->shift(), op.shift);
}

void check_scale_shift(const OpChecker& ck, const flatbuffers::Vector<float>* scale,
                       const flatbuffers::Vector<float>* shift, std::int64_t c, bool optional) {
  const bool has_scale = scale && scale->size(), has_shift = shift && shift->size();
  if (optional && !has_scale && !has_shift) return;
  ck.floats(scale, c, "scale", false);
  ck.floats(shift, c, "shift", false);
  if (!all_finite(scale) || !all_finite(shift)) ck.fail("scale or shift is not finite");
}

void check_op(const fb::Op* fop, OpNode& op, Graph& g, bool prepare) {
  OpChecker ck(g, op);
  switch (op.type) {
    case OpType::Conv2D: return check_conv(fop, op, g, prepare);
    case OpType::BinaryConv2D: return check_bconv(fop, op, g, prepare);
    case OpType::Sign: {
      const fb::Sign* p = fop->options_as_Sign();
      ck.arity(1);
      const ValueInfo& x = ck.input(0, false);
      check_scale_shift(ck, p->scale(), p->shift(), x.c, true);
      ck.output(4, x.c, x.h, x.w, true);
      if (prepare && p->scale() && p->scale()->size()) {
        copy_floats(p->scale(), op.scale);
        copy_floats(p->shift(), op.shift);
      }
      return;
    }
    case OpType::Affine: {
      const fb::Affine* p = fop->options_as_Affine();
      ck.arity(1);
      const ValueInfo& x = ck.input(0, false, 0);
      check_scale_shift(ck, p->scale(), p->shift(), x.c, false);
      if (p->activation() != fb::Activation::None && p->activation() != fb::Activation::Relu) ck.fail("unknown activation");
      op.relu = p->activation() == fb::Activation::Relu;
      ck.output(x.rank, x.c, x.h, x.w, false);
      if (prepare) {
        copy_floats(p->scale(), op.scale);
        copy_floats(p->shift(), op.shift);
      }
      return;
    }
    case OpType::Relu: {
      ck.arity(1);
      const ValueInfo& x = ck.input(0, false, 0);
      ck.output(x.rank, x.c, x.h, x.w, false);
      return;
    }
    case OpType::Pool2D: {
      const fb::Pool2D* p = fop->options_as_Pool2D();
      ck.arity(1);
      const ValueInfo& x = ck.input(0, false);
      if (p->type() != fb::PoolType::Max && p->type() != fb::PoolType::Avg) ck.fail("unknown pool type");
      op.pool_max = p->type() == fb::PoolType::Max;
      op.global = p->global();
      op.count_include_pad = p->count_include_pad();
      if (op.global) {
        op.kh = x.h; op.kw = x.w; op.sh = op.sw = 1; op.ph = op.pw = 0;
        ck.output(4, x.c, 1, 1, false);
        return;
      }
      ck.pair(p->kernel(), "kernel", 1, kMaxWindow, -1, op.kh, op.kw);
      ck.pair(p->stride(), "stride", 1, kMaxWindow, -1, op.sh, op.sw);
      ck.pair(p->pad(), "pad", 0, kMaxWindow, 0, op.ph, op.pw);
      // pad < kernel keeps at least one real element in every window.
      if (op.ph >= op.kh || op.pw >= op.kw) ck.fail("pad must be smaller than the kernel");
      if (x.h + 2 * op.ph < op.kh || x.w + 2 * op.pw < op.kw) ck.fail("kernel larger than the padded input");
      op.ceil_mode = p->ceil_mode();
      const std::int64_t sh = x.h + 2 * op.ph - op.kh, sw = x.w + 2 * op.pw - op.kw;
      const std::int64_t oh = (op.ceil_mode ? (sh + op.sh - 1) / op.sh : sh / op.sh) + 1;
      const std::int64_t ow = (op.ceil_mode ? (sw + op.sw - 1) / op.sw : sw / op.sw) + 1;
      // ceil_mode may add a partial last window; it must still hold real elements.
      if ((oh - 1) * op.sh - op.ph >= x.h || (ow - 1) * op.sw - op.pw >= x.w) {
        ck.fail("ceil_mode yields a window without real elements");
      }
      ck.output(4, x.c, oh, ow, false);
      return;
    }
    case OpType::Concat: {
      if (op.in.empty()) ck.fail("expected at least 1 input");
      const ValueInfo& a = ck.input(0, false);
      std::int64_t c = 0;
      for (std::size_t i = 0; i < op.in.size(); ++i) {
        const ValueInfo& v = ck.input(i, false);
        if (v.h != a.h || v.w != a.w) ck.fail("input " + std::to_string(i) + " has a different spatial size");
        c += v.c;
      }
      if (c > kMaxDim) ck.fail("too many channels");
      ck.output(4, c, a.h, a.w, false);
      return;
    }
    case OpType::Add: {
      ck.arity(2);
      const ValueInfo& a = ck.input(0, false, 0);
      const ValueInfo& b = ck.input(1, false, 0);
      if (a.rank != b.rank || a.c != b.c || a.h != b.h || a.w != b.w) ck.fail("inputs differ in shape");
      ck.output(a.rank, a.c, a.h, a.w, false);
      return;
    }
    case OpType::AddToLastChannels: {
      ck.arity(2);
      const ValueInfo& a = ck.input(0, false);
      const ValueInfo& b = ck.input(1, false);
      if (a.h != b.h || a.w != b.w) ck.fail("inputs differ in spatial size");
      if (b.c > a.c) ck.fail("input 1 has more channels than input 0");
      ck.output(4, a.c, a.h, a.w, false);
      return;
    }
    case OpType::ChannelShuffle: {
      const fb::ChannelShuffle* p = fop->options_as_ChannelShuffle();
      ck.arity(1);
      const ValueInfo& x = ck.input(0, false);
      op.groups = p->groups();
      if (op.groups < 1 || x.c % op.groups) {
        ck.fail("groups " + std::to_string(op.groups) + " must divide the channels " + std::to_string(x.c));
      }
      ck.output(4, x.c, x.h, x.w, false);
      return;
    }
    case OpType::Dense: {
      const fb::Dense* p = fop->options_as_Dense();
      ck.arity(1);
      const ValueInfo& x = ck.input(0, false, 0);
      op.out_c = p->units();
      if (op.out_c < 1 || op.out_c > kMaxDim) ck.fail("units " + std::to_string(op.out_c) + " out of range");
      const std::int64_t f = x.c * x.h * x.w;
      const std::int64_t nw = mul(op.out_c, f, "weight");
      ck.bytes(p->weight(), nw * 4, "weight", false);
      ck.bytes(p->bias(), op.out_c * 4, "bias", true);
      if (!all_finite_bytes(p->weight()) || !all_finite_bytes(p->bias())) ck.fail("weight or bias is not finite");
      ck.output(2, op.out_c, 1, 1, false);
      if (!prepare) return;
      // Columns in NCHW flatten order -> the engine's NHWC storage order.
      op.w.resize(nw);
      const std::uint8_t* src = p->weight()->data();
      const std::int64_t hw = x.h * x.w;
      for (std::int64_t u = 0; u < op.out_c; ++u)
        for (std::int64_t c = 0; c < x.c; ++c)
          for (std::int64_t q = 0; q < hw; ++q)
            std::memcpy(&op.w[u * f + q * x.c + c], src + 4 * (u * f + c * hw + q), 4);
      op.b.resize(op.out_c);
      if (p->bias() && p->bias()->size()) std::memcpy(op.b.data(), p->bias()->data(), op.out_c * 4);
      return;
    }
    case OpType::Flatten: {
      ck.arity(1);
      const ValueInfo& x = ck.input(0, false, 0);
      ck.output(2, x.c * x.h * x.w, 1, 1, false);
      return;
    }
  }
  ck.fail("unknown op type");
}

OpType op_type_of(fb::OpOptions t, const std::string& where) {
  switch (t) {
    case fb::OpOptions::Conv2D: return OpType::Conv2D;
    case fb::OpOptions::BinaryConv2D: return OpType::BinaryConv2D;
    case fb::OpOptions::Sign: return OpType::Sign;
    case fb::OpOptions::Affine: return OpType::Affine;
    case fb::OpOptions::Relu: return OpType::Relu;
    case fb::OpOptions::Pool2D: return OpType::Pool2D;
    case fb::OpOptions::Concat: return OpType::Concat;
    case fb::OpOptions::Add: return OpType::Add;
    case fb::OpOptions::AddToLastChannels: return OpType::AddToLastChannels;
    case fb::OpOptions::ChannelShuffle: return OpType::ChannelShuffle;
    case fb::OpOptions::Dense: return OpType::Dense;
    case fb::OpOptions::Flatten: return OpType::Flatten;
    default: break;
  }
  fail(where + ": unknown or missing op type " + std::to_string(static_cast<int>(t)) +
       " (file written by a newer bmx?)");
}

}  // namespace

const char* op_type_name(OpType t) {
  switch (t) {
    case OpType::Conv2D: return "Conv2D";
    case OpType::BinaryConv2D: return "BinaryConv2D";
    case OpType::Sign: return "Sign";
    case OpType::Affine: return "Affine";
    case OpType::Relu: return "Relu";
    case OpType::Pool2D: return "Pool2D";
    case OpType::Concat: return "Concat";
    case OpType::Add: return "Add";
    case OpType::AddToLastChannels: return "AddToLastChannels";
    case OpType::ChannelShuffle: return "ChannelShuffle";
    case OpType::Dense: return "Dense";
    case OpType::Flatten: return "Flatten";
  }
  return "?";
}

std::string OpNode::describe() const {
  return "op " + std::to_string(index) + " '" + name + "' (" + op_type_name(type) + ")";
}

Graph load_graph(const void* data, std::size_t size, bool prepare) {
  if (!data || size == 0) fail("empty model buffer");
  if (size < 8) fail("model buffer too small (" + std::to_string(size) + " bytes)");
  if (size >= FLATBUFFERS_MAX_BUFFER_SIZE) fail("model buffer too large");

  // The verifier checks alignment against real addresses: work on an aligned copy.
  const std::uint8_t* buf = static_cast<const std::uint8_t*>(data);
  AlignedBuffer<std::uint8_t> copy;
  if (reinterpret_cast<std::uintptr_t>(buf) % 16 != 0) {
    copy.resize(size);
    std::memcpy(copy.data(), buf, size);
    buf = copy.data();
  }
  if (!flatbuffers::BufferHasIdentifier(buf, fb::ModelIdentifier())) {
    fail("not a bmx model file (missing the 'BMX1' file identifier)");
  }
  // FlatBuffers builders pad the finished buffer to its alignment (>= 4): another size
  // means a truncated (or extended) file, even when the lost bytes were padding.
  if (size % 4 != 0) fail("truncated model file (" + std::to_string(size) + " bytes is not a multiple of 4)");
  flatbuffers::Verifier verifier(buf, size, /*max_depth=*/64, /*max_tables=*/4 * kMaxOps);
  if (!fb::VerifyModelBuffer(verifier)) fail("corrupted model file (FlatBuffers verification failed)");
  const fb::Model* m = fb::GetModel(buf);

  Graph g;
  g.version = m->version();
  if (g.version != kFormatVersion) {
    fail("unsupported model format version " + std::to_string(g.version) + " (this bmx reads version " +
         std::to_string(kFormatVersion) + ")");
  }
  if (m->producer()) g.producer = m->producer()->str();

  // Values: rank 2 or 4 at batch 1, positive bounded dims.
  const auto* values = m->values();
  if (!values || values->size() == 0) fail("model has no values");
  if (values->size() > kMaxOps) fail("too many values");
  std::int64_t total = 0;
  g.values.resize(values->size());
  for (flatbuffers::uoffset_t i = 0; i < values->size(); ++i) {
    const fb::Value* fv = values->Get(i);
    ValueInfo& v = g.values[i];
    v.name = fv->name() ? fv->name()->str() : "value" + std::to_string(i);
    const std::string where = "value " + std::to_string(i) + " '" + v.name + "'";
    if (fv->kind() != fb::ValueKind::Float && fv->kind() != fb::ValueKind::Bits) fail(where + ": unknown kind");
    v.bits = fv->kind() == fb::ValueKind::Bits;
    const auto* s = fv->shape();
    if (!s || (s->size() != 2 && s->size() != 4)) fail(where + ": shape must be [1, C] or [1, C, H, W]");
    v.rank = static_cast<int>(s->size());
    if (s->Get(0) != 1) fail(where + ": shape must start with batch 1");
    for (flatbuffers::uoffset_t d = 1; d < s->size(); ++d) {
      if (s->Get(d) < 1 || s->Get(d) > kMaxDim) {
        fail(where + ": dimension " + std::to_string(d) + " = " + std::to_string(s->Get(d)) + " out of range [1, " +
             std::to_string(kMaxDim) + "]");
      }
    }
    v.c = s->Get(1);
    if (v.rank == 4) { v.h = s->Get(2); v.w = s->Get(3); }
    if (v.bits && v.rank != 4) fail(where + ": Bits values must be 4-D");
    const std::int64_t e = v.c * v.h * v.w;  // < 2^60: each factor <= 2^20
    if (e > kMaxElems) fail(where + ": too many elements (" + std::to_string(e) + ")");
    total += e * 4;
    if (total > kMaxTotalBytes) fail("values too large in total");
  }
  const int nv = static_cast<int>(g.values.size());
  auto check_index = [&](std::int64_t idx, const std::string& where) {
    if (idx < 0 || idx >= nv) fail(where + ": value index " + std::to_string(idx) + " out of range [0, " + std::to_string(nv) + ")");
    return static_cast<int>(idx);
  };
  if (!m->inputs() || m->inputs()->size() != 1) fail("model must have exactly one input");
  if (!m->outputs() || m->outputs()->size() != 1) fail("model must have exactly one output");
  g.input = check_index(m->inputs()->Get(0), "model input");
  g.output = check_index(m->outputs()->Get(0), "model output");
  {
    const ValueInfo& in = g.values[g.input];
    if (in.rank != 4 || in.bits) fail("model input must be a 4-D Float value, is " + shape_str(in));
  }

  // Ops in topological order: each input defined earlier, each value defined once.
  const auto* ops = m->ops();
  if (!ops || ops->size() == 0) fail("model has no ops");
  if (ops->size() > kMaxOps) fail("too many ops");
  std::vector<char> defined(nv, 0);
  defined[g.input] = 1;
  g.ops.resize(ops->size());
  for (flatbuffers::uoffset_t k = 0; k < ops->size(); ++k) {
    const fb::Op* fop = ops->Get(k);
    OpNode& op = g.ops[k];
    op.index = static_cast<int>(k);
    op.name = fop->name() ? fop->name()->str() : "";
    const std::string where = "op " + std::to_string(k) + " '" + op.name + "'";
    op.type = op_type_of(fop->options_type(), where);
    if (!fop->options()) fail(where + ": missing options");
    if (!fop->outputs() || fop->outputs()->size() != 1) fail(op.describe() + ": must have exactly one output");
    if (!fop->inputs()) fail(op.describe() + ": missing inputs");
    if (fop->inputs()->size() > 4096) fail(op.describe() + ": too many inputs");
    for (int idx : *fop->inputs()) {
      const int v = check_index(idx, op.describe());
      if (!defined[v]) {
        fail(op.describe() + ": input value " + std::to_string(v) + " '" + g.values[v].name +
             "' is not computed before it (ops must be in topological order)");
      }
      op.in.push_back(v);
    }
    op.out = check_index(fop->outputs()->Get(0), op.describe());
    if (defined[op.out]) {
      fail(op.describe() + ": output value " + std::to_string(op.out) + " '" + g.values[op.out].name +
           "' is already defined (each value has exactly one producer)");
    }
    defined[op.out] = 1;
    check_op(fop, op, g, prepare);
  }
  if (!defined[g.output]) fail("model output value is never computed");
  if (g.output == g.input) fail("model output is its input");
  const ValueInfo& out = g.values[g.output];
  if (out.bits) fail("model output must be Float");
  g.num_classes = static_cast<int>(out.rank == 2 ? out.c : out.c * out.h * out.w);
  if (m->num_classes() != 0 && m->num_classes() != out.c) {
    fail("num_classes " + std::to_string(m->num_classes()) + " differs from the output's " + std::to_string(out.c) +
         " channels");
  }
  if (m->num_classes() != 0) g.num_classes = m->num_classes();
  auto read_norm = [&](const flatbuffers::Vector<float>* v, std::vector<float>& dst, const char* what) {
    if (!v || v->size() == 0) return;
    if (static_cast<std::int64_t>(v->size()) != g.values[g.input].c) {
      fail(std::string("model ") + what + " has " + std::to_string(v->size()) + " entries, the input has " +
           std::to_string(g.values[g.input].c) + " channels");
    }
    dst.assign(v->begin(), v->end());
  };
  read_norm(m->mean(), g.mean, "mean");
  read_norm(m->std(), g.std, "std");
  return g;
}

}  // namespace bmx::rt
