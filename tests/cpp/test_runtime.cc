// Runtime ops against the naive NCHW reference of test_runtime_util.h.
#include <gtest/gtest.h>

#include <thread>

#include "bmx/engine.h"
#include "test_runtime_util.h"

namespace bmx::testing {
namespace {

std::vector<float> run_engine(const std::vector<std::uint8_t>& bytes, const std::vector<float>& x, int batch,
                              int threads = 1) {
  Model m = Model::from_bytes(bytes.data(), bytes.size(), threads);
  return m.predict(x, batch);
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rel, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const double tol = rel * std::max(1.0, max_abs(want));
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!(std::fabs(got[i] - want[i]) <= tol)) {
      if (!bad) first = i;
      ++bad;
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " mismatches, first at " << first << ": got " << got[first]
                     << " want " << want[first];
}

struct BConvCase { int c, hw, oc, k, s, p, d, g, batch; };

TEST(RuntimeBinaryConv, ExactMatchCountsAgainstFloatConvOnPlusMinusOne) {
  // Exact integers: sign -> binary conv with scale 1, shift 0 outputs the match count.
  const BConvCase cases[] = {
      {3, 7, 5, 3, 1, 1, 1, 1, 1},   {64, 6, 8, 3, 1, 1, 1, 1, 2},  {65, 5, 7, 3, 2, 1, 1, 1, 1},
      {63, 9, 4, 3, 1, 2, 2, 1, 1},  {130, 4, 3, 1, 1, 0, 1, 1, 3}, {128, 8, 16, 3, 2, 1, 1, 1, 1},
      {129, 5, 6, 3, 1, 1, 1, 3, 1}, {96, 6, 8, 3, 1, 1, 1, 2, 2},  {1, 4, 2, 2, 2, 0, 1, 1, 1},
      {70, 3, 64, 3, 1, 1, 1, 1, 1}, {8, 10, 3, 5, 1, 2, 1, 1, 1},  {256, 7, 65, 3, 1, 1, 1, 1, 1},
  };
  unsigned seed = 11;
  for (const auto& t : cases) {
    for (int threads : {1, 2}) {
      Net n(seed++);
      int x = n.input(t.c, t.hw, t.hw);
      int s = n.sign(x, false);
      int y = n.bconv(s, t.oc, t.k, t.s, t.p, t.d, t.g, /*identity=*/true);
      const auto bytes = n.build(y);
      const auto in = n.random_input(t.batch);
      const auto got = run_engine(bytes, in, t.batch, threads);
      const auto want = n.reference(in, t.batch);
      ASSERT_EQ(got.size(), want.size());
      for (std::size_t i = 0; i < got.size(); ++i) {
        ASSERT_EQ(got[i], want[i]) << "seed " << seed - 1 << " c=" << t.c << " hw=" << t.hw << " oc=" << t.oc
                                   << " k=" << t.k << " s=" << t.s << " p=" << t.p << " d=" << t.d << " g=" << t.g
                                   << " threads=" << threads << " at " << i;
        ASSERT_EQ(got[i], std::floor(got[i]));
      }
    }
  }
}

TEST(RuntimeBinaryConv, FusedBnSignAndScaleShiftRelu) {
  for (unsigned seed : {3u, 4u, 5u}) {
    Net n(seed);
    int x = n.input(67, 6, 6);
    int s = n.sign(x, /*bn=*/true);
    int y = n.bconv(s, 33, 3, 1, 1, 1, 1, false, /*relu=*/true);
    const auto bytes = n.build(y);
    const auto in = n.random_input(2);
    expect_close(run_engine(bytes, in, 2), n.reference(in, 2), 0, "seed " + std::to_string(seed));
  }
}

TEST(RuntimeBinaryDense, ExactMatchCountsOnFourAndTwoDimensionalBits) {
  // Exact integers: sign -> binary dense with scale 1, shift 0 outputs the match count over
  // the NCHW-flattened input; 2-D Bits (sign of a flattened value) across word boundaries.
  struct Case { int c, h, w, units, batch; bool flat; };
  const Case cases[] = {{70, 2, 3, 7, 2, false}, {1, 1, 1, 3, 3, true},  {64, 1, 1, 65, 1, true},
                        {5, 13, 1, 9, 2, true},  {129, 1, 1, 4, 3, true}, {3, 5, 4, 16, 5, false}};
  unsigned seed = 41;
  for (const auto& t : cases) {
    for (int threads : {1, 2}) {
      Net n(seed++);
      int x = n.input(t.c, t.h, t.w);
      int s = n.sign(t.flat ? n.flatten(x) : x, false);
      int y = n.bdense(s, t.units, /*identity=*/true);
      const auto bytes = n.build(y);
      const auto in = n.random_input(t.batch);
      const auto got = run_engine(bytes, in, t.batch, threads);
      const auto want = n.reference(in, t.batch);
      ASSERT_EQ(got.size(), want.size());
      for (std::size_t i = 0; i < got.size(); ++i) {
        ASSERT_EQ(got[i], want[i]) << "seed " << seed - 1 << " c=" << t.c << " h=" << t.h << " w=" << t.w
                                   << " units=" << t.units << " threads=" << threads << " at " << i;
      }
    }
  }
}

TEST(RuntimeBinaryDense, FullyBinaryClassifierWithScaleShiftRelu) {
  // conv stem -> BN-sign -> binary dense (scale/shift, ReLU) -> flatten-free 2-D sign with BN
  // -> binary dense: the fully binary classifier a user may build.
  for (unsigned seed : {6u, 7u}) {
    Net n(seed);
    int x = n.input(3, 6, 6);
    int c = n.conv(x, 66, 3, 1, 1);
    int h = n.bdense(n.sign(c, /*bn=*/true), 70, false, /*relu=*/true);
    int y = n.bdense(n.sign(h, /*bn=*/true), 10);
    const auto bytes = n.build(y);
    for (int batch : {1, 3}) {
      const auto in = n.random_input(batch);
      expect_close(run_engine(bytes, in, batch, 2), n.reference(in, batch), 0, "seed " + std::to_string(seed));
    }
  }
}

TEST(RuntimeBinaryDense, NeedsFormatVersionTwo) {
  Net n(5);
  n.version = 1;
  int x = n.input(4, 2, 2);
  const auto bytes = n.build(n.bdense(n.sign(x, false), 3));
  try {
    Model::from_bytes(bytes.data(), bytes.size());
    FAIL() << "a version-1 file with BinaryDense loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("(BinaryDense): needs model format version 2"), std::string::npos) << e.what();
  }
}

TEST(RuntimeXnor, InputScaleTimesBinaryConv) {
  // XNOR-Net's decomposition: sign -> binary conv (scale/shift: dot * alpha) times the
  // per-position input scale avg_pool(mean_c |x|); Mul in place on the conv output, and
  // Mul of two full-shape values. Float sums in another order than the double reference:
  // a few ulps of the largest output (1e-5 is far above them, far below any fault).
  for (unsigned seed : {8u, 9u}) {
    Net n(seed);
    int x = n.input(67, 7, 7);
    int y = n.bconv(n.sign(x, false), 9, 3, 2, 1);
    int k = n.pool(n.mean_abs(x), false, 3, 2, 1);
    int z = n.mul(y, k);
    int out = n.mul(z, n.relu(z));
    const auto bytes = n.build(out);
    for (int batch : {1, 2}) {
      for (int threads : {1, 2}) {
        const auto in = n.random_input(batch);
        expect_close(run_engine(bytes, in, batch, threads), n.reference(in, batch), 1e-5,
                     "xnor seed " + std::to_string(seed));
      }
    }
  }
}

TEST(RuntimeXnor, NewOpsNeedFormatVersionTwoAndShapes) {
  Net n(5);
  n.version = 1;
  int x = n.input(4, 2, 2);
  const auto bytes = n.build(n.mean_abs(x));
  EXPECT_THROW(Model::from_bytes(bytes.data(), bytes.size()), Error);
  Net m(5);
  int a = m.input(4, 3, 3);
  int b = m.conv(a, 2, 1);  // 2 channels: neither a's 4 nor 1
  const auto bad = m.build(m.mul(a, b));
  try {
    Model::from_bytes(bad.data(), bad.size());
    FAIL() << "Mul of [4,3,3] by [2,3,3] loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the first's shape or one channel"), std::string::npos) << e.what();
  }
}

struct KConvCase { int c, hw, oc, k, s, p, d, pa, pw; };

TEST(RuntimeKbitConv, LevelsAndBitsInputsAgainstReference) {
  // Quantize (pa planes; pa = 0: a Sign, +-1 input) -> KbitConv2D (pw weight planes) at
  // awkward channel counts, strides, dilations and paddings (the padded-tap correction);
  // the double reference sums the same values in another order: float32 rounding of the
  // folded factors, a few ulps of the largest output (1e-5 is far above, far below one
  // flipped level).
  const KConvCase cases[] = {
      {1, 5, 3, 3, 1, 1, 1, 2, 2},    {63, 6, 5, 3, 2, 1, 1, 2, 1},  {64, 4, 7, 1, 1, 0, 1, 4, 3},
      {65, 7, 4, 3, 1, 2, 2, 3, 4},   {129, 5, 9, 5, 2, 2, 1, 1, 2}, {0 + 3, 9, 2, 3, 1, 1, 1, 0, 2},
      {127, 4, 6, 3, 1, 1, 1, 0, 4},  {128, 3, 65, 3, 1, 1, 1, 2, 2}};
  unsigned seed = 20;
  for (const KConvCase& t : cases) {
    Net n(++seed);
    int x = n.input(t.c, t.hw, t.hw);
    int q = t.pa ? n.quantize(x, t.pa, /*bn=*/true) : n.sign(x, /*bn=*/true);
    int y = n.kconv(q, t.oc, t.k, t.s, t.p, t.d, t.pw, /*relu=*/t.c % 2 == 1);
    const auto bytes = n.build(y);
    for (int threads : {1, 2}) {
      const auto in = n.random_input(3);
      expect_close(run_engine(bytes, in, 3, threads), n.reference(in, 3), 1e-5,
                   "kconv c=" + std::to_string(t.c) + " pa=" + std::to_string(t.pa) + " pw=" + std::to_string(t.pw));
    }
  }
}

TEST(RuntimeKbitConv, NeedsFormatVersionThreeAndValidPlanes) {
  for (int bad : {0, 1, 2}) {
    Net n(7);
    int x = n.input(4, 3, 3);
    int q = n.quantize(x, 2, false);
    int y = n.kconv(q, 2, 3, 1, 1, 1, 2);
    if (bad == 0) n.version = 2;
    if (bad == 1) n.ops.back().w_planes = 5;
    if (bad == 2) n.vals[q].planes = 5;
    const auto bytes = n.build(y);
    const char* want[] = {"format version 3", "weight_planes 5 out of range", "planes 5 out of range"};
    try {
      Model::from_bytes(bytes.data(), bytes.size());
      FAIL() << "loaded: " << want[bad];
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want[bad]), std::string::npos) << e.what();
    }
  }
}

struct ConvCase { int c, hw, oc, k, s, p, d, g; bool relu, bias; };

TEST(RuntimeFloatConv, AgainstNaiveLoops) {
  const ConvCase cases[] = {
      {3, 16, 8, 7, 2, 3, 1, 1, true, true}, {32, 9, 32, 3, 2, 1, 1, 4, true, true},
      {32, 9, 64, 3, 1, 1, 1, 8, false, true}, {16, 7, 12, 1, 1, 0, 1, 1, false, false},
      {16, 7, 12, 1, 1, 0, 1, 4, false, true}, {5, 11, 6, 3, 1, 2, 2, 1, true, false},
      {6, 8, 9, 1, 2, 0, 1, 3, false, true},   {4, 5, 3, 2, 1, 0, 1, 1, false, true},
      // grouped with small groups: the direct path (MeliusNet's grouped stem)
      {32, 10, 64, 3, 1, 1, 1, 8, true, true}, {32, 9, 32, 3, 2, 1, 1, 4, false, false},
      {12, 7, 12, 3, 1, 2, 2, 12, true, true}, {64, 6, 128, 3, 1, 1, 1, 2, false, true},
  };
  unsigned seed = 100;
  for (const auto& t : cases) {
    for (int batch : {1, 3}) {
      for (int threads : {1, 2}) {
        Net n(seed++);
        int x = n.input(t.c, t.hw, t.hw);
        int y = n.conv(x, t.oc, t.k, t.s, t.p, t.d, t.g, t.relu, t.bias);
        const auto bytes = n.build(y);
        const auto in = n.random_input(batch);
        // Dyadic inputs and weights: exact in float, so the results must be equal.
        expect_close(run_engine(bytes, in, batch, threads), n.reference(in, batch), 0,
                     "conv case seed " + std::to_string(seed - 1));
      }
    }
  }
}

TEST(RuntimePool, MaxAvgGlobal) {
  unsigned seed = 200;
  for (bool max : {true, false}) {
    for (bool cip : {true, false}) {
      for (auto kp : {std::array<int, 4>{3, 2, 1, 0}, {2, 2, 0, 0}, {3, 1, 1, 0}, {3, 3, 2, 0}, {2, 2, 0, 1},
                      {3, 2, 0, 1}, {3, 2, 1, 1}, {3, 3, 1, 1}}) {
        Net n(seed++);
        int x = n.input(5, 9, 10);
        int y = n.pool(x, max, kp[0], kp[1], kp[2], cip, kp[3] == 1);
        const auto bytes = n.build(y);
        const auto in = n.random_input(2);
        expect_close(run_engine(bytes, in, 2, 2), n.reference(in, 2), 1e-6, "pool");
      }
    }
    Net n(seed++);
    int x = n.input(70, 5, 6);
    int y = n.flatten(n.global_pool(x, max));
    const auto bytes = n.build(y);
    const auto in = n.random_input(3);
    expect_close(run_engine(bytes, in, 3), n.reference(in, 3), 1e-6, "global pool");
  }
}

// A small network with every op: dense shortcuts (concat in place), MeliusNet's
// improvement (AddToLastChannels in place), ResNet's add, shuffle, grouped convs.
std::vector<std::uint8_t> build_mixed(Net& n, bool flatten_4d) {
  int x = n.input(3, 12, 12);
  x = n.conv(x, 16, 3, 1, 1, 1, 1, /*relu=*/true);
  for (int i = 0; i < 3; ++i) {  // dense block
    int s = n.sign(x, true);
    int y = n.bconv(s, 8, 3, 1, 1);
    x = n.concat({x, y});
    if (i == 1) {  // improvement block
      int s2 = n.sign(x, true);
      int z = n.bconv(s2, 8, 3, 1, 1);
      x = n.add_last(x, z);
    }
  }
  x = n.pool(x, true, 2, 2, 0);            // 40 x 6 x 6
  x = n.relu(x);
  x = n.shuffle(x, 4);
  x = n.conv(x, 24, 1, 1, 0, 1, 4);        // grouped transition
  int s = n.sign(x, true);
  int y = n.bconv(s, 24, 3, 2, 1, 1, 1);   // 24 x 3 x 3 strided
  int sc = n.conv(n.pool(x, false, 2, 2, 0), 24, 1);  // downsampling shortcut
  x = n.add(y, sc);
  x = n.affine(x, true);
  int head;
  if (flatten_4d) {
    head = n.dense(n.flatten(x), 10);
  } else {
    head = n.dense(n.global_pool(x, false), 10);
  }
  return n.build(head);
}

TEST(RuntimeGraph, MixedNetworkAgainstReference) {
  for (bool flat : {false, true}) {
    for (unsigned seed : {1u, 2u, 3u}) {
      Net n(seed);
      const auto bytes = build_mixed(n, flat);
      Model m = Model::from_bytes(bytes.data(), bytes.size());
      EXPECT_EQ(m.num_classes(), 10);
      EXPECT_EQ(m.input_shape(), (std::vector<std::int64_t>{1, 3, 12, 12}));
      for (int batch : {1, 4, 2}) {
        for (int threads : {1, 2, 3}) {
          m.set_num_threads(threads);
          const auto in = n.random_input(batch);
          expect_close(m.predict(in, batch), n.reference(in, batch), 1e-5,
                       "mixed seed " + std::to_string(seed) + " batch " + std::to_string(batch));
        }
      }
    }
  }
}

TEST(RuntimeGraph, DenseAndFlattenOnConcatViews) {
  // Dense/Flatten read a 4-D value that lives inside a concat output (pixel stride larger
  // than its channels) and must use NCHW flatten order.
  for (bool via_flatten : {false, true}) {
    Net n(31);
    int x = n.input(3, 5, 4);
    int a = n.conv(x, 6, 3, 1, 1);
    int b = n.conv(x, 5, 1);
    int c = n.concat({a, b});
    int d = via_flatten ? n.dense(n.flatten(a), 7) : n.dense(a, 7);
    int e = n.dense(n.global_pool(c, true), 7);
    int out = n.add(d, e);
    const auto bytes = n.build(out);
    for (int batch : {1, 3}) {
      const auto in = n.random_input(batch);
      expect_close(run_engine(bytes, in, batch, 2), n.reference(in, batch), 1e-5, "dense on view");
    }
  }
}

TEST(RuntimeGraph, FourDimensionalOutputIsNchw) {
  Net n(32);
  int x = n.input(4, 6, 5);
  int y = n.conv(x, 3, 3, 1, 1, 1, 1, true);
  int z = n.concat({y, n.pool(x, true, 3, 1, 1)});
  const auto bytes = n.build(z);
  Model m = Model::from_bytes(bytes.data(), bytes.size());
  EXPECT_EQ(m.output_shape(), (std::vector<std::int64_t>{1, 7, 6, 5}));
  const auto in = n.random_input(2);
  expect_close(m.predict(in, 2), n.reference(in, 2), 0, "4-D output");
}

TEST(RuntimeGraph, ConcurrentPredictMatchesSerial) {
  Net n(7);
  const auto bytes = build_mixed(n, false);
  Model m = Model::from_bytes(bytes.data(), bytes.size(), 2);
  std::vector<std::vector<float>> inputs, expected;
  for (int i = 0; i < 8; ++i) {
    inputs.push_back(n.random_input(1 + i % 3));
    expected.push_back(m.predict(inputs.back(), 1 + i % 3));
  }
  std::vector<std::thread> ts;
  std::vector<int> ok(8, 0);
  for (int t = 0; t < 8; ++t) {
    ts.emplace_back([&, t] {
      bool good = true;
      for (int r = 0; r < 20; ++r) {
        const int i = (t + r) % 8;
        good = good && m.predict(inputs[i], 1 + i % 3) == expected[i];
      }
      ok[t] = good;
    });
  }
  for (auto& th : ts) th.join();
  for (int t = 0; t < 8; ++t) EXPECT_TRUE(ok[t]) << "thread " << t;
}

TEST(RuntimeGraph, ProfileCountsEveryKind) {
  Net n(9);
  const auto bytes = build_mixed(n, false);
  Model m = Model::from_bytes(bytes.data(), bytes.size());
  m.set_profiling(true);
  const auto in = n.random_input(1);
  m.predict(in, 1);
  m.predict(in, 1);
  double total = 0;
  std::int64_t calls = 0;
  for (const auto& e : m.profile()) {
    EXPECT_GE(e.seconds, 0.0) << e.kind;
    total += e.seconds;
    calls += e.calls;
  }
  EXPECT_GT(total, 0.0);
  EXPECT_EQ(calls, 2 * m.num_ops());
  EXPECT_EQ(m.profile_ops().size(), static_cast<std::size_t>(m.num_ops()));
  m.reset_profile();
  for (const auto& e : m.profile()) EXPECT_EQ(e.calls, 0);
}

TEST(RuntimeGraph, BadPredictArguments) {
  Net n(1);
  const auto bytes = build_mixed(n, false);
  Model m = Model::from_bytes(bytes.data(), bytes.size());
  auto in = n.random_input(1);
  EXPECT_THROW(m.predict(in, 2), InputError);
  EXPECT_THROW(m.predict(in, 0), InputError);
  EXPECT_THROW(m.predict(in.data(), -1, in.data()), InputError);
  in[17] = std::nanf("");
  EXPECT_THROW(m.predict(in, 1), InputError);
  in[17] = INFINITY;
  EXPECT_THROW(m.predict(in, 1), InputError);
  EXPECT_THROW(m.set_num_threads(0), Error);
  EXPECT_THROW(Model("/nonexistent/model.bmx"), Error);
}

}  // namespace
}  // namespace bmx::testing
