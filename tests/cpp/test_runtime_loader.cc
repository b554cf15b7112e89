// The loader against hostile files: structural corruption (FlatBuffers verification)
// and semantic corruption (shapes, sizes, indices, kinds, order) must raise bmx::Error,
// never crash. Byte flips that still verify must load or fail cleanly and run safely.
#include <gtest/gtest.h>

#include <functional>

#include "bmx/engine.h"
#include "test_runtime_util.h"

namespace bmx::testing {
namespace {

Net small_net(unsigned seed = 1) {
  Net n(seed);
  int x = n.input(4, 6, 6);
  x = n.conv(x, 8, 3, 1, 1, 1, 1, true);
  int s = n.sign(x, true);
  int y = n.bconv(s, 8, 3, 1, 1);
  x = n.concat({x, y});
  x = n.global_pool(x, false);
  n.dense(x, 5);
  return n;
}

std::vector<std::uint8_t> small_bytes() {
  Net n = small_net();
  return n.build(static_cast<int>(n.vals.size()) - 1);
}

std::string load_error(const std::vector<std::uint8_t>& b) {
  try {
    Model m = Model::from_bytes(b.data(), b.size());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(RuntimeLoader, ValidModelLoads) {
  const auto b = small_bytes();
  EXPECT_EQ(load_error(b), "");
  EXPECT_NO_THROW(validate_model(b.data(), b.size()));
  Model m = Model::from_bytes(b.data(), b.size());
  EXPECT_EQ(m.num_classes(), 5);
  EXPECT_EQ(m.output_shape(), (std::vector<std::int64_t>{1, 5}));
}

TEST(RuntimeLoader, EmptyTinyAndGarbage) {
  EXPECT_THROW(Model::from_bytes(nullptr, 0), Error);
  std::vector<std::uint8_t> tiny = {1, 2, 3};
  EXPECT_THROW(Model::from_bytes(tiny.data(), tiny.size()), Error);
  std::vector<std::uint8_t> zeros(4096, 0);
  EXPECT_THROW(Model::from_bytes(zeros.data(), zeros.size()), Error);
  std::string text = "this is not a model file at all, just some text";
  EXPECT_THROW(Model::from_bytes(text.data(), text.size()), Error);
  EXPECT_THROW(validate_model(text.data(), text.size()), Error);
}

TEST(RuntimeLoader, EveryTruncationFails) {
  const auto b = small_bytes();
  for (std::size_t len = 0; len < b.size(); ++len) {
    std::vector<std::uint8_t> t(b.begin(), b.begin() + len);
    EXPECT_THROW(validate_model(t.data(), t.size()), Error) << "length " << len;
  }
}

TEST(RuntimeLoader, ByteFlipsNeverCrash) {
  const auto b = small_bytes();
  Net n = small_net();
  const auto in = n.random_input(1);
  int loaded = 0, rejected = 0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    for (std::uint8_t mask : {0x01, 0x80, 0xff}) {
      auto c = b;
      c[i] ^= mask;
      try {
        Model m = Model::from_bytes(c.data(), c.size());
        ++loaded;
        std::vector<float> out(m.output_size());
        try {
          m.predict(in.data(), 1, out.data());
        } catch (const Error&) {
        }
      } catch (const Error&) {
        ++rejected;
      }
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_GT(loaded, 0);  // flips inside weights keep the file valid
}

TEST(RuntimeLoader, Unaligned) {
  const auto b = small_bytes();
  std::vector<std::uint8_t> shifted(b.size() + 1);
  std::memcpy(shifted.data() + 1, b.data(), b.size());
  EXPECT_NO_THROW(Model::from_bytes(shifted.data() + 1, b.size()));
}

// Each mutation of the builder state must be rejected with a message containing `needle`.
struct Mutation {
  const char* what;
  std::function<void(Net&)> apply;
  const char* needle;
};

TEST(RuntimeLoader, SemanticCorruptionsAreRejected) {
  // ops: 0 conv(v0->v1), 1 sign(v1->v2), 2 bconv(v2->v3), 3 concat(v1,v3->v4), 4 gpool(v4->v5), 5 dense(v5->v6)
  const std::vector<Mutation> muts = {
      {"version", [](Net& n) { n.version = kFormatVersion + 1; }, "reads versions 1 to"},
      {"version0", [](Net& n) { n.version = 0; }, "version 0"},
      {"recorded shape", [](Net& n) { n.vals[1].shape[2] = 5; }, "computes"},
      {"zero dim", [](Net& n) { n.vals[0].shape[3] = 0; }, "out of range"},
      {"negative dim", [](Net& n) { n.vals[5].shape[1] = -3; }, "out of range"},
      {"absurd dim", [](Net& n) { n.vals[0].shape[1] = 1 << 30; }, "out of range"},
      {"too many elements", [](Net& n) { n.vals[0].shape = {1, 1 << 20, 1 << 20, 1 << 20}; }, "too many elements"},
      {"batch 2", [](Net& n) { n.vals[3].shape[0] = 2; }, "batch 1"},
      {"rank 3", [](Net& n) { n.vals[3].shape = {1, 8, 6}; }, "shape must be"},
      {"weight size", [](Net& n) { n.ops[0].weight.pop_back(); }, "weight has"},
      {"bias size", [](Net& n) { n.ops[0].bias.resize(12); }, "bias has"},
      {"bits size", [](Net& n) { n.ops[2].weight.resize(8); }, "weight_bits has"},
      {"scale size", [](Net& n) { n.ops[2].scale.pop_back(); }, "scale has"},
      {"sign scale size", [](Net& n) { n.ops[1].shift.pop_back(); }, "shift has"},
      {"tail bits", [](Net& n) { n.ops[2].weight[7] = 0x80; }, "tail bits"},
      {"nan weight", [](Net& n) { float f = NAN; std::memcpy(n.ops[0].weight.data(), &f, 4); }, "not finite"},
      {"inf scale", [](Net& n) { n.ops[1].scale[0] = INFINITY; }, "not finite"},
      {"index range", [](Net& n) { n.ops[3].in[1] = 99; }, "out of range"},
      {"negative index", [](Net& n) { n.ops[3].in[0] = -1; }, "out of range"},
      {"forward ref", [](Net& n) { n.ops[1].in[0] = 4; }, "topological"},
      {"self loop", [](Net& n) { n.ops[0].in[0] = 1; }, "topological"},
      {"two producers", [](Net& n) { n.ops[3].out[0] = 3; }, "already defined"},
      {"redefine input", [](Net& n) { n.ops[0].out[0] = 0; }, "already defined"},
      {"two outputs", [](Net& n) { n.ops[0].out.push_back(2); }, "exactly one output"},
      {"bits into conv", [](Net& n) { n.ops[0].in[0] = 2; n.ops[1].in[0] = 0; }, "topological"},
      {"float into bconv", [](Net& n) { n.ops[2].in[0] = 1; }, "must be Bits"},
      {"bits into concat", [](Net& n) { n.ops[3].in[0] = 2; }, "must be Float"},
      {"in_channels", [](Net& n) { n.ops[2].in_c = 9; }, "in_channels"},
      {"groups", [](Net& n) { n.ops[0].groups = 3; }, "groups"},
      {"groups zero", [](Net& n) { n.ops[2].groups = 0; }, "groups"},
      {"kernel rank", [](Net& n) { n.ops[0].kernel = {3}; }, "kernel must have 2"},
      {"kernel missing", [](Net& n) { n.ops[0].kernel.clear(); }, "kernel is missing"},
      {"stride zero", [](Net& n) { n.ops[2].stride = {0, 1}; }, "stride"},
      {"huge pad", [](Net& n) { n.ops[0].pad = {1 << 20, 1}; }, "pad"},
      {"kernel too big", [](Net& n) { n.ops[0].kernel = {9, 9}; n.ops[0].pad = {0, 0}; }, "larger than"},
      {"arity", [](Net& n) { n.ops[0].in.push_back(0); }, "expected 1 input"},
      {"dense units", [](Net& n) { n.ops[5].out_c = 6; }, "weight has"},
      {"num_classes", [](Net& n) { n.num_classes = 7; }, "num_classes"},
      {"output undefined", [](Net& n) { n.ops.pop_back(); }, "never computed"},
      {"no ops", [](Net& n) { n.ops.clear(); }, "no ops"},
      {"input is bits", [](Net& n) { n.vals[0].bits = true; }, "input must be"},
      {"output bits", [](Net& n) { n.ops.resize(2); n.vals.resize(3); }, "must be Float"},
  };
  for (const auto& mu : muts) {
    Net n = small_net();
    mu.apply(n);
    int out = mu.what == std::string("output bits") ? 2 : 6;
    const auto b = n.build(out);
    const std::string err = load_error(b);
    EXPECT_NE(err, "") << mu.what << ": accepted";
    EXPECT_NE(err.find(mu.needle), std::string::npos) << mu.what << ": message '" << err << "' lacks '" << mu.needle << "'";
  }
}

TEST(RuntimeLoader, ErrorNamesTheOp) {
  Net n = small_net();
  n.ops[2].weight.resize(8);
  const std::string err = load_error(n.build(6));
  EXPECT_NE(err.find("op 2 'bconv2' (BinaryConv2D)"), std::string::npos) << err;
}

TEST(RuntimeLoader, PoolPadMustBeSmallerThanKernel) {
  Net n(1);
  int x = n.input(2, 5, 5);
  int y = n.pool(x, true, 2, 1, 2);
  EXPECT_NE(load_error(n.build(y)).find("pad must be smaller"), std::string::npos);
}

TEST(RuntimeLoader, CeilModeWindowWithoutRealElements) {
  Net n(1);
  int x = n.input(2, 9, 8);
  int y = n.pool(x, true, 3, 3, 1, true, /*ceil=*/true);  // last column window is all padding
  EXPECT_NE(load_error(n.build(y)).find("without real elements"), std::string::npos);
}

}  // namespace
}  // namespace bmx::testing
