// The runtime's op registry: one row per op, and every per-op table of the runtime is
// generated from it (the OpType enum in graph.h; the names, the file's OpOptions ->
// OpType mapping, the profile kinds, the planner's in-place flags and the load/run
// dispatch in registry.cc). Adding an op (docs/architecture.md, "How to add an op"):
// a table in src/schema/bmx_model.fbs named like the row and added to its OpOptions
// union, the file src/runtime/ops/<op>.cc defining `const OpImpl k<Name>Op` (checks,
// preparation and run; registry.h), and one row here.
//
//   BMX_OP(Name, ProfileKind, InPlace)
//     Name        the OpType enumerator, the schema's OpOptions member and table (fb::Name),
//                 the op's name in messages and profiles, and k<Name>Op in ops/<op>.cc
//     ProfileKind the engine.h profile category it counts under (graph.h ProfileKind)
//     InPlace     an element-wise op whose output may overwrite its first input (planner.cc)
//
// The order is the OpType order; it is not part of the file format (files name ops by
// their OpOptions type), so rows may be added anywhere.
#pragma once

#define BMX_OP_LIST(BMX_OP)                      \
  BMX_OP(Conv2D, kFloatConv, false)              \
  BMX_OP(BinaryConv2D, kBinaryConv, false)       \
  BMX_OP(Sign, kPacking, false)                  \
  BMX_OP(Affine, kBnThreshold, true)             \
  BMX_OP(Relu, kOther, true)                     \
  BMX_OP(Pool2D, kPool, false)                   \
  BMX_OP(Concat, kConcat, false)                 \
  BMX_OP(Add, kOther, true)                      \
  BMX_OP(AddToLastChannels, kOther, true)        \
  BMX_OP(ChannelShuffle, kOther, false)          \
  BMX_OP(Dense, kOther, false)                   \
  BMX_OP(Flatten, kOther, false)                 \
  BMX_OP(BinaryDense, kBinaryConv, false)        \
  BMX_OP(MeanAbsChannels, kOther, false)         \
  BMX_OP(Mul, kOther, true)                      \
  BMX_OP(Quantize, kPacking, false)              \
  BMX_OP(KbitConv2D, kBinaryConv, false)
