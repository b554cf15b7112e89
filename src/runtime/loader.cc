// Model loader: treats the file as hostile. FlatBuffers verification first (offsets,
// sizes, nesting), then semantic checks: version, value indices, topological order,
// bounded sizes (limits.h) with overflow-checked arithmetic; then each op's own checks
// (arity, kinds, every shape recomputed from the op parameters and compared with the
// recorded one, weight sizes exactly as the shapes demand), which live with the op in
// ops/<op>.cc and are reached through the registry (op_list.h). Every failure is a
// bmx::Error naming the op.
#include <cstring>

#include "bmx_model_generated.h"
#include "runtime/check.h"
#include "runtime/graph.h"
#include "core/kbgemm/kbgemm.h"  // kMaxKbitPlanes
#include "runtime/limits.h"
#include "runtime/registry.h"

namespace bmx::rt {

namespace {

// The verifier (built with FLATBUFFERS_TRACK_VERIFIER_BUFFER_SIZE) reports the furthest
// byte any verified object reaches, rounded up to 4. Past it a builder leaves at most the
// alignment padding of the first object it wrote (zeros, less than the largest alignment
// the converter asks for: 16 for weight vectors); anything else was appended to the file.
constexpr std::size_t kMaxTailPadding = 16;

void check_no_trailing_data(const std::uint8_t* buf, std::size_t size, std::size_t used) {
  if (used == 0 || used > size) fail("corrupted model file (FlatBuffers verification failed)");
  const std::size_t extra = size - used;
  bool zeros = true;
  for (std::size_t i = used; i < size; ++i) zeros &= buf[i] == 0;
  if (extra >= kMaxTailPadding || !zeros) {
    fail("model file has " + std::to_string(extra) + " bytes of trailing data after the model (" +
         std::to_string(used) + " bytes)");
  }
}

// Kind and planes of a value: Float and Bits have no planes field (0); Levels (format 3)
// has 1 to kMaxKbitPlanes planes.
void read_kind(const fb::Value* fv, std::uint32_t version, const std::string& where, ValueInfo& v) {
  const fb::ValueKind kind = fv->kind();
  if (kind != fb::ValueKind::Float && kind != fb::ValueKind::Bits && kind != fb::ValueKind::Levels) {
    fail(where + ": unknown kind");
  }
  v.bits = kind != fb::ValueKind::Float;
  v.levels = kind == fb::ValueKind::Levels;
  if (v.levels && version < 3) fail(where + ": Levels values need model format version 3");
  const std::int32_t planes = fv->planes();
  if (v.levels ? (planes < 1 || planes > kMaxKbitPlanes) : planes != 0) {
    fail(where + ": planes " + std::to_string(planes) +
         (v.levels ? " out of range [1, " + std::to_string(kMaxKbitPlanes) + "]" : " set on a non-Levels value"));
  }
  v.planes = v.levels ? planes : 1;
}

}  // namespace

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
  flatbuffers::Verifier verifier(buf, size, /*max_depth=*/kMaxTableDepth, /*max_tables=*/4 * kMaxOps);
  if (!fb::VerifyModelBuffer(verifier)) fail("corrupted model file (FlatBuffers verification failed)");
  const fb::Model* m = fb::GetModel(buf);

  Graph g;
  g.version = m->version();
  if (g.version < kMinFormatVersion || g.version > kFormatVersion) {
    fail("unsupported model format version " + std::to_string(g.version) + " (this bmx reads versions " +
         std::to_string(kMinFormatVersion) + " to " + std::to_string(kFormatVersion) + ")");
  }
  check_no_trailing_data(buf, size, verifier.GetComputedSize());
  if (m->producer()) g.producer = m->producer()->str();

  // Values: rank 2 or 4 at batch 1, positive bounded dims.
  const auto* values = m->values();
  if (!values || values->size() == 0) fail("model has no values");
  if (values->size() > kMaxValues) fail("too many values");
  std::int64_t total = 0;
  g.values.resize(values->size());
  for (flatbuffers::uoffset_t i = 0; i < values->size(); ++i) {
    const fb::Value* fv = values->Get(i);
    ValueInfo& v = g.values[i];
    v.name = fv->name() ? fv->name()->str() : "value" + std::to_string(i);
    const std::string where = "value " + std::to_string(i) + " '" + v.name + "'";
    read_kind(fv, g.version, where, v);
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
    if (v.bits && v.rank != 4 && g.version < 2) fail(where + ": Bits values must be 4-D in format version 1");
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
    const OpInfo* info = op_info_for(fop->options_type());
    if (!info) {
      fail(where + ": unknown or missing op type " + std::to_string(static_cast<int>(fop->options_type())) +
           " (file written by a newer bmx?)");
    }
    op.type = info->type;
    if (!fop->options()) fail(where + ": missing options");
    if (!fop->outputs() || fop->outputs()->size() != 1) fail(op.describe() + ": must have exactly one output");
    if (!fop->inputs()) fail(op.describe() + ": missing inputs");
    if (fop->inputs()->size() > kMaxOpInputs) fail(op.describe() + ": too many inputs");
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
    info->impl->load(fop, op, g, prepare);  // the op's checks (and preparation): ops/<op>.cc
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
