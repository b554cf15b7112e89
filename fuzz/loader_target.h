// The body of the model-loader fuzz target, shared by the libFuzzer harness
// (fuzz/fuzz_loader.cc) and the regression tests (tests/cpp/test_loader_regressions.cc),
// so that every input the fuzzer ever flagged is replayed through exactly the same code.
//
// Properties checked on every input (a violation aborts, which libFuzzer reports as a
// crash):
//  * loading from bytes either succeeds or throws bmx::Error; any other exception, a
//    crash or a sanitizer report is a bug;
//  * validate_model() (checks only) and Model::from_bytes() (checks + weight repacking +
//    planning) agree on whether the file is valid;
//  * a model that loads runs predict() on zero images (batch 1 or 2) without error, unless
//    its cost (MACs, arena) is above a bound that keeps one execution in milliseconds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "bmx/engine.h"
#include "runtime/graph.h"

namespace bmx::fuzz {

// Work bounds for the predict() step (the loader itself is always run).
constexpr double kMaxMacs = 1 << 24;                 // float MAC equivalents
constexpr std::size_t kMaxArenaBytes = 64u << 20;    // activations at batch 1

[[noreturn]] inline void violated(const char* what, const std::string& detail) {
  std::fprintf(stderr, "bmx fuzz: property violated: %s: %s\n", what, detail.c_str());
  std::fflush(stderr);
  std::abort();
}

// Rough cost of one predict() at batch 1: float MACs, binary MACs / 32 (a k-bit conv does
// a binary conv's work per pair of activation and weight planes), data movement (the
// element count of inputs and output: the linear ops, e.g. MeanAbsChannels, Mul, Quantize).
inline double predict_cost(const rt::Graph& g) {
  double macs = 0;
  for (const rt::OpNode& op : g.ops) {
    const rt::ValueInfo& x = g.values[op.in[0]];
    const rt::ValueInfo& y = g.values[op.out];
    const double out = static_cast<double>(y.c) * y.h * y.w;
    switch (op.type) {
      case rt::OpType::Conv2D:
        macs += out * (x.c / op.groups) * op.kh * op.kw;
        break;
      case rt::OpType::BinaryConv2D:
        macs += out * (x.c / op.groups) * op.kh * op.kw / 32.0 + out * op.kh * op.kw;
        break;
      case rt::OpType::KbitConv2D:
        macs += out * x.c * op.kh * op.kw * x.planes * op.w_planes / 32.0 + out * op.kh * op.kw;
        break;
      case rt::OpType::Pool2D:
        macs += out * op.kh * op.kw;
        break;
      case rt::OpType::Dense:
        macs += out * x.c * x.h * x.w;
        break;
      case rt::OpType::BinaryDense:
        macs += out * x.c * x.h * x.w / 32.0 + out;
        break;
      default:
        for (int v : op.in) macs += static_cast<double>(g.values[v].c) * g.values[v].h * g.values[v].w;
        macs += out;
    }
  }
  return macs;
}

enum Outcome { kRejected = 0, kLoaded = 1, kRan = 2 };

// Rejected (bmx::Error), loaded (predict skipped: above the cost bound) or loaded and ran.
inline Outcome run_one(const std::uint8_t* data, std::size_t size) {
  std::string validate_error;
  try {
    validate_model(data, size);
  } catch (const Error& e) {
    validate_error = e.what();
    if (validate_error.empty()) violated("empty error message", "validate_model");
  }
  std::unique_ptr<Model> m;
  try {
    m = std::make_unique<Model>(Model::from_bytes(data, size, /*num_threads=*/1));
  } catch (const Error& e) {
    if (validate_error.empty()) violated("validate_model accepted a file Model::from_bytes() rejects", e.what());
    if (std::string(e.what()).empty()) violated("empty error message", "Model::from_bytes()");
    return kRejected;
  }
  if (!validate_error.empty()) violated("Model::from_bytes() accepted a file validate_model rejects", validate_error);

  // The public view must agree with itself.
  const auto in = m->input_shape();
  if (in.size() != 4 || in[0] != 1 || m->input_size() != in[1] * in[2] * in[3] || m->input_size() < 1 ||
      m->output_size() < 1) {
    violated("inconsistent shapes", m->summary());
  }
  (void)m->summary();

  const rt::Graph g = rt::load_graph(data, size, /*prepare=*/false);
  const rt::Plan plan = rt::make_plan(g);
  if (predict_cost(g) > kMaxMacs || plan.arena_bytes > kMaxArenaBytes) return kLoaded;

  // Batch 1 or 2 (picked by the input, so runs are reproducible): the plan is made at batch
  // 1 and scaled, and batch 2 checks every per-sample stride.
  const int batch = 1 + static_cast<int>((size / 4) % 2);
  if (batch == 2 && (predict_cost(g) * 2 > kMaxMacs || plan.arena_bytes * 2 > kMaxArenaBytes)) return kLoaded;
  std::vector<float> x(static_cast<std::size_t>(m->input_size()) * batch, 0.0f);
  std::vector<float> y(static_cast<std::size_t>(m->output_size()) * batch, 0.0f);
  try {
    m->predict(x.data(), batch, y.data());
  } catch (const Error& e) {
    violated("predict() on a zero image of a valid model failed", e.what());
  }
  return kRan;
}

}  // namespace bmx::fuzz
