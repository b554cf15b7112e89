// What each op of the runtime provides, and the registry generated from op_list.h.
//
// An op lives in one file, src/runtime/ops/<op>.cc, which defines
//   const OpImpl k<Name>Op = {&load, &work_bytes_or_nullptr, &run};
// load: the loader's semantic checks of the op (arity, value kinds, parameters in range,
//       the recorded output shape against the computed one, weight sizes, finite
//       numbers; check.h has the helpers; every failure throws bmx::Error naming the op)
//       and, with prepare, the op's weights copied and re-arranged into the OpNode for
//       its kernels. Without prepare (validate_model, fuzzing) only the checks run.
// work_bytes: scratch the op needs for `batch` images (nullptr: none).
// run: one execution over the planned arena (RunContext), calling a core kernel.
#pragma once

#include <cstddef>
#include <cstdint>

#include "bmx_model_generated.h"
#include "runtime/graph.h"

namespace bmx {
class ThreadPool;
}

namespace bmx::rt {

// Where one predict() pass runs: the planned arena of a batch, scratch, threads and the
// profile counters. Values are addressed through the plan (views included).
struct RunContext {
  const Graph* g = nullptr;
  const Plan* plan = nullptr;
  int batch = 0;
  int threads = 1;
  ThreadPool* pool = nullptr;
  unsigned char* arena = nullptr;
  unsigned char* work = nullptr;  // at least the largest work_bytes of the graph's ops
  bool timed = false;             // profiling: ops may move time between kinds below
  double* kind_seconds = nullptr; // [kNumKinds]

  const ValueInfo& value(int v) const { return g->values[v]; }
  unsigned char* base(int v) const {
    const Placement& p = plan->place[v];
    return arena + plan->storage_offset[p.storage] * static_cast<std::size_t>(batch);
  }
  float* fptr(int v) const { return reinterpret_cast<float*>(base(v)) + plan->place[v].chan_offset; }
  word_t* wptr(int v) const { return reinterpret_cast<word_t*>(base(v)); }
  std::int64_t ps(int v) const { return plan->place[v].pixel_stride; }  // floats or words per pixel
};

struct OpImpl {
  void (*load)(const fb::Op* fop, OpNode& op, const Graph& g, bool prepare);
  std::size_t (*work_bytes)(const OpNode& op, const Graph& g, int batch, int threads);
  void (*run)(const RunContext& c, const OpNode& op);
};

// One per row of op_list.h, defined in its ops/<op>.cc.
#define BMX_OP_DECLARE_IMPL(Name, kind, in_place) extern const OpImpl k##Name##Op;
BMX_OP_LIST(BMX_OP_DECLARE_IMPL)
#undef BMX_OP_DECLARE_IMPL

// A row of op_list.h with its implementation.
struct OpInfo {
  OpType type;
  const char* name;
  fb::OpOptions options;  // the schema's union member of the op
  ProfileKind profile;
  bool in_place;          // element-wise: the output may overwrite input 0 (planner.cc)
  const OpImpl* impl;
};
const OpInfo& op_info(OpType t);
// The op of a file's OpOptions type, or nullptr (NONE, or written by a newer bmx).
const OpInfo* op_info_for(fb::OpOptions t);

}  // namespace bmx::rt
