// The loader's checking helpers, shared by loader.cc and the ops' load functions
// (ops/<op>.cc): every failure throws bmx::Error; OpChecker prefixes the op
// ("op 12 'name' (BinaryConv2D): ..."). Sizes are bounded by limits.h.
#pragma once

#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>

#include "bmx_model_generated.h"
#include "runtime/graph.h"
#include "runtime/limits.h"

namespace bmx::rt {

static_assert(FLATBUFFERS_LITTLEENDIAN, "bmx model files are little-endian; big-endian hosts unsupported");

[[noreturn]] inline void fail(const std::string& msg) { throw Error(msg); }

inline std::string shape_str(const ValueInfo& v) {
  std::ostringstream s;
  if (v.rank == 4) s << "[1, " << v.c << ", " << v.h << ", " << v.w << "]";
  else s << "[1, " << v.c << "]";
  if (v.levels) s << " Levels(" << v.planes << ")";
  else s << (v.bits ? " Bits" : " Float");
  return s.str();
}

class OpChecker {
 public:
  OpChecker(const Graph& g, const OpNode& op) : g_(g), op_(op) {}
  [[noreturn]] void fail(const std::string& msg) const { throw Error(op_.describe() + ": " + msg); }

  // a * b, rejected when it overflows or exceeds 64 x kMaxElems.
  std::int64_t mul(std::int64_t a, std::int64_t b, const char* what) const {
    std::int64_t r;
    if (__builtin_mul_overflow(a, b, &r) || r > kMaxElems * 64) fail(std::string(what) + ": size overflow");
    return r;
  }
  // Ops added in a later format version are refused in files that declare an older one.
  void since(std::uint32_t version) const {
    if (g_.version < version) {
      fail("needs model format version " + std::to_string(version) + ", the file says " + std::to_string(g_.version));
    }
  }
  void arity(std::size_t n_in) const {
    if (op_.in.size() != n_in) {
      fail("expected " + std::to_string(n_in) + " input(s), got " + std::to_string(op_.in.size()));
    }
  }
  // Input i, which must be Bits or Float and (rank != 0) of that rank.
  const ValueInfo& input(std::size_t i, bool bits, int rank = 4) const {
    const ValueInfo& v = g_.values[op_.in[i]];
    if (v.bits != bits || v.levels) {
      fail("input " + std::to_string(i) + " '" + v.name + "' must be " + (bits ? "Bits" : "Float") +
           ", is " + shape_str(v));
    }
    return ranked(i, v, rank);
  }
  // Input i, which must be Bits or Levels (packed) and of that rank.
  const ValueInfo& input_packed(std::size_t i, int rank = 4) const {
    const ValueInfo& v = g_.values[op_.in[i]];
    if (!v.bits) fail("input " + std::to_string(i) + " '" + v.name + "' must be Bits or Levels, is " + shape_str(v));
    return ranked(i, v, rank);
  }
  const ValueInfo& ranked(std::size_t i, const ValueInfo& v, int rank) const {
    if (rank && v.rank != rank) {
      fail("input " + std::to_string(i) + " '" + v.name + "' must be " + std::to_string(rank) +
           "-D, is " + shape_str(v));
    }
    return v;
  }
  // The recorded output shape must equal the computed one; levels > 0: a Levels value of
  // that many planes.
  void output(int rank, std::int64_t c, std::int64_t h, std::int64_t w, bool bits, int levels = 0) const {
    const ValueInfo& v = g_.values[op_.out];
    ValueInfo e;
    e.rank = rank; e.c = c; e.h = h; e.w = w; e.bits = bits || levels > 0; e.levels = levels > 0;
    e.planes = levels > 0 ? levels : 1;
    if (v.rank != rank || v.c != c || v.h != h || v.w != w || v.bits != e.bits || v.levels != e.levels ||
        v.planes != e.planes) {
      fail("output '" + v.name + "' is recorded as " + shape_str(v) + " but the op computes " +
           shape_str(e));
    }
  }
  // A [kh, kw]-style pair; `def` when the vector is absent or empty (def < 0: required).
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

inline void copy_floats(const flatbuffers::Vector<float>* v, AlignedBuffer<float>& out) {
  out.resize(v->size());
  if (v->size()) std::memcpy(out.data(), v->data(), v->size() * 4);
}
// Finiteness of float32 data by its exponent bits (branch-free, vectorisable: the loader
// is meant to be cheap enough to fuzz a million times).
inline bool all_finite_raw(const std::uint8_t* p, std::size_t n) {
  std::uint32_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t u;
    std::memcpy(&u, p + 4 * i, 4);
    bad |= static_cast<std::uint32_t>((u & 0x7f800000u) == 0x7f800000u);
  }
  return bad == 0;
}
inline bool all_finite_bytes(const flatbuffers::Vector<std::uint8_t>* v) {
  return !v || all_finite_raw(v->data(), v->size() / 4);
}
inline bool all_finite(const flatbuffers::Vector<float>* v) {
  return !v || all_finite_raw(reinterpret_cast<const std::uint8_t*>(v->data()), v->size());
}

// Per-channel scale and shift of c floats each, finite; `optional`: both may be absent.
inline void check_scale_shift(const OpChecker& ck, const flatbuffers::Vector<float>* scale,
                              const flatbuffers::Vector<float>* shift, std::int64_t c, bool optional) {
  const bool has_scale = scale && scale->size(), has_shift = shift && shift->size();
  if (optional && !has_scale && !has_shift) return;
  ck.floats(scale, c, "scale", false);
  ck.floats(shift, c, "shift", false);
  if (!all_finite(scale) || !all_finite(shift)) ck.fail("scale or shift is not finite");
}

// check_scale_shift on a table's scale and shift, copied into op when preparing (and
// present).
template <typename Table>
void read_scale_shift(const OpChecker& ck, const Table* p, OpNode& op, std::int64_t c, bool optional, bool prepare) {
  check_scale_shift(ck, p->scale(), p->shift(), c, optional);
  if (prepare && p->scale() && p->scale()->size()) {
    copy_floats(p->scale(), op.scale);
    copy_floats(p->shift(), op.shift);
  }
}

// The activation field of a table: None or Relu.
template <typename Table>
bool read_relu(const OpChecker& ck, const Table* p) {
  if (p->activation() != fb::Activation::None && p->activation() != fb::Activation::Relu) ck.fail("unknown activation");
  return p->activation() == fb::Activation::Relu;
}

}  // namespace bmx::rt
