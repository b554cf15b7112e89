// The bounds a model file and a predict() call must respect, defined once: the loader
// (loader.cc, check.h, ops/*.cc) and the engine (engine.cc) enforce them, and bmx._engine
// exports them to Python as LIMITS (src/python/bind_runtime.cc) with FORMAT_VERSION, so
// that the converter can check a graph against the same numbers before writing a file.
// They keep every size computation far from overflow and reject absurd files.
#pragma once

#include <cstdint>

#include "bmx/engine.h"  // bmx::kFormatVersion, the model format version this reader reads

namespace bmx::rt {

constexpr std::int64_t kMaxDim = std::int64_t{1} << 20;         // any single dimension / parameter
constexpr std::int64_t kMaxElems = std::int64_t{1} << 28;       // elements of one value at batch 1
constexpr std::int64_t kMaxTotalBytes = std::int64_t{1} << 31;  // all values together at batch 1
constexpr std::int64_t kMaxWindow = std::int64_t{1} << 12;      // kernel, stride, pad, dilation
constexpr std::int64_t kMaxOps = std::int64_t{1} << 14;         // ops (the planner is quadratic in them)
constexpr std::int64_t kMaxValues = kMaxOps;                    // values, likewise
constexpr std::int64_t kMaxOpInputs = 4096;                     // inputs of one op (Concat)
constexpr std::int64_t kMaxReduction = std::int64_t{1} << 30;   // a conv's C_in / groups * KH * KW
constexpr int kMaxTableDepth = 64;                              // FlatBuffers nesting depth
constexpr std::int64_t kMaxFileBytes = std::int64_t{1} << 31;   // a model file read from a path
constexpr std::int64_t kMaxBatch = std::int64_t{1} << 20;       // images of one predict() call
constexpr int kMaxThreads = 1024;                               // num_threads of a Model

}  // namespace bmx::rt
