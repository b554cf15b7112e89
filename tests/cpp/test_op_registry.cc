// The runtime's op registry (src/runtime/op_list.h) against the schema's generated code:
// every OpOptions member of src/schema/bmx_model.fbs has exactly one registered op of the
// same name, with a load and a run function, and an unknown type is a clear error. The
// loader limits (runtime/limits.h) are checked at their boundaries: the largest value
// passes, one more is rejected with a message naming the bound.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "bmx/engine.h"
#include "bmx_model_generated.h"
#include "runtime/limits.h"
#include "runtime/registry.h"
#include "test_runtime_util.h"

namespace bmx::testing {
namespace {

std::string load_error(const std::vector<std::uint8_t>& b) {
  try {
    validate_model(b.data(), b.size());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(OpRegistry, EverySchemaOpIsRegisteredOnce) {
  std::set<int> seen;
  for (fb::OpOptions t : fb::EnumValuesOpOptions()) {
    if (t == fb::OpOptions::NONE) {
      EXPECT_EQ(rt::op_info_for(t), nullptr);
      continue;
    }
    const rt::OpInfo* info = rt::op_info_for(t);
    ASSERT_NE(info, nullptr) << fb::EnumNameOpOptions(t) << " has no registry row (src/runtime/op_list.h)";
    EXPECT_STREQ(info->name, fb::EnumNameOpOptions(t));
    EXPECT_EQ(info->options, t);
    EXPECT_STREQ(rt::op_type_name(info->type), fb::EnumNameOpOptions(t));
    EXPECT_EQ(&rt::op_info(info->type), info);
    ASSERT_NE(info->impl, nullptr);
    EXPECT_NE(info->impl->load, nullptr) << info->name;
    EXPECT_NE(info->impl->run, nullptr) << info->name;
    EXPECT_TRUE(seen.insert(static_cast<int>(info->type)).second) << info->name << " registered twice";
  }
  // And no row without a schema member.
  EXPECT_EQ(static_cast<int>(seen.size()), rt::kNumOpTypes);
  EXPECT_STREQ(rt::op_type_name(static_cast<rt::OpType>(rt::kNumOpTypes)), "?");
}

TEST(OpRegistry, UnknownOpTypeIsAClearError) {
  Net n(1);
  const int x = n.input(2, 3, 3);
  const int y = n.relu(x);
  n.ops[0].type = static_cast<fb::OpOptions>(200);  // a union member of a newer format
  const std::string err = load_error(n.build(y));
  EXPECT_NE(err.find("unknown or missing op type 200"), std::string::npos) << err;
}

TEST(LoaderLimits, WindowBoundary) {
  for (std::int64_t stride : {rt::kMaxWindow, rt::kMaxWindow + 1}) {
    Net n(1);
    const int x = n.input(1, 2, 2);
    const int y = n.pool(x, true, 1, static_cast<int>(stride), 0);
    const std::string err = load_error(n.build(y));
    if (stride <= rt::kMaxWindow) {
      EXPECT_EQ(err, "") << "stride " << stride;
    } else {
      EXPECT_NE(err.find("out of range [1, " + std::to_string(rt::kMaxWindow) + "]"), std::string::npos) << err;
    }
  }
}

TEST(LoaderLimits, DimensionBoundary) {
  for (std::int64_t c : {rt::kMaxDim, rt::kMaxDim + 1}) {
    Net n(1);
    const int x = n.input(static_cast<int>(c), 1, 1);
    const int y = n.global_pool(x, true);
    const std::string err = load_error(n.build(y));
    if (c <= rt::kMaxDim) {
      EXPECT_EQ(err, "");
    } else {
      EXPECT_NE(err.find("out of range [1, " + std::to_string(rt::kMaxDim) + "]"), std::string::npos) << err;
    }
  }
}

TEST(LoaderLimits, OpInputsBoundary) {
  for (std::int64_t k : {rt::kMaxOpInputs, rt::kMaxOpInputs + 1}) {
    Net n(1);
    const int x = n.input(1, 1, 1);
    const int y = n.concat(std::vector<int>(static_cast<std::size_t>(k), x));
    const std::string err = load_error(n.build(y));
    if (k <= rt::kMaxOpInputs) {
      EXPECT_EQ(err, "");
    } else {
      EXPECT_NE(err.find("too many inputs"), std::string::npos) << err;
    }
  }
}

TEST(LoaderLimits, BatchAndThreadsBoundary) {
  Net n(1);
  const int x = n.input(1, 2, 2);
  const auto b = n.build(n.relu(x));
  Model m = Model::from_bytes(b.data(), b.size());
  m.set_num_threads(rt::kMaxThreads);
  EXPECT_EQ(m.num_threads(), rt::kMaxThreads);
  EXPECT_THROW(m.set_num_threads(rt::kMaxThreads + 1), Error);
  // Rejected before any buffer is touched.
  float in = 0.0f, out = 0.0f;
  try {
    m.predict(&in, static_cast<int>(rt::kMaxBatch + 1), &out);
    ADD_FAILURE() << "batch above kMaxBatch accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("too large"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace bmx::testing
