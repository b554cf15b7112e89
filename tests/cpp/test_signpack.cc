// Fused BatchNorm + sign + bit-packing (core/signpack): every kernel of sign_pack_kernels()
// this CPU runs, and the threaded dispatcher, against the naive reference, bit for bit, at
// awkward channel counts (1, 63, 64, 65, 127, 128, 129 and odd ones), odd pixel counts and
// pixel strides, with special values (NaN, +-0, +-Inf, denormals) and values exactly at a
// channel's threshold. Fixed seeds, printed on failure.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/common/threadpool.h"
#include "core/signpack/reference.h"
#include "core/signpack/signpack.h"

namespace {

using bmx::word_t;

const std::int64_t kChannels[] = {1, 3, 17, 63, 64, 65, 127, 128, 129, 191, 333};

std::vector<float> random_values(std::size_t n, std::mt19937& g) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 23);
  const float specials[] = {0.0f, -0.0f, std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::denorm_min(), -std::numeric_limits<float>::denorm_min(),
                            -0.5f};
  std::vector<float> v(n);
  for (auto& x : v) {
    const int k = pick(g);
    x = k < 8 ? specials[k] : d(g);
  }
  return v;
}

struct Data {
  std::int64_t pixels, c, in_ps;
  std::vector<float> x, scale, shift;
};

// Pixels at a stride of c + pad floats; some inputs exactly at -shift / scale, where only
// a separately rounded product and sum give the reference's bit.
Data make_data(std::int64_t pixels, std::int64_t c, std::int64_t pad, unsigned seed) {
  std::mt19937 g(seed);
  Data d{pixels, c, c + pad, {}, {}, {}};
  d.x = random_values(static_cast<std::size_t>(pixels * d.in_ps), g);
  d.scale = random_values(static_cast<std::size_t>(c), g);
  d.shift = random_values(static_cast<std::size_t>(c), g);
  for (std::int64_t p = 0; p < pixels; p += 2)
    for (std::int64_t ch = p % 3; ch < c; ch += 3)
      if (std::isfinite(d.scale[ch]) && d.scale[ch] != 0.0f && std::isfinite(d.shift[ch]))
        d.x[static_cast<std::size_t>(p * d.in_ps + ch)] = -d.shift[ch] / d.scale[ch];
  return d;
}

TEST(SignPack, EveryKernelMatchesReference) {
  int checked = 0;
  for (const auto& k : bmx::sign_pack_kernels()) {
    if (!k.available()) continue;
    for (std::int64_t c : kChannels) {
      for (std::int64_t pixels : {1, 7, 37}) {
        const unsigned seed = static_cast<unsigned>(7000 + c * 64 + pixels);
        const Data d = make_data(pixels, c, /*pad=*/c % 5, seed);
        const std::int64_t words = bmx::words_for_bits(c);
        std::vector<word_t> want(static_cast<std::size_t>(pixels * words)), got(want.size(), 0x5a5a5a5aULL);
        bmx::ref::sign_pack(d.x.data(), pixels, c, d.in_ps, d.scale.data(), d.shift.data(), want.data());
        k.run(d.x.data(), pixels, c, d.in_ps, d.scale.data(), d.shift.data(), got.data());
        ASSERT_EQ(got, want) << k.name << " C=" << c << " pixels=" << pixels << " seed=" << seed;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 0);
}

TEST(SignPack, PortableKernelPlainSignMatchesReference) {
  // The portable kernel also takes scale == nullptr (plain x < 0).
  const auto& portable = bmx::sign_pack_kernels().front();
  ASSERT_STREQ(portable.name, "sign_pack__scalar");
  for (std::int64_t c : kChannels) {
    const unsigned seed = static_cast<unsigned>(8000 + c);
    const Data d = make_data(5, c, 1, seed);
    const std::int64_t words = bmx::words_for_bits(c);
    std::vector<word_t> want(static_cast<std::size_t>(5 * words)), got(want.size(), ~word_t{0});
    bmx::ref::sign_pack(d.x.data(), 5, c, d.in_ps, nullptr, nullptr, want.data());
    portable.run(d.x.data(), 5, c, d.in_ps, nullptr, nullptr, got.data());
    ASSERT_EQ(got, want) << "C=" << c << " seed=" << seed;
  }
}

TEST(SignPack, DispatcherWithAndWithoutScaleAndThreads) {
  // 300 pixels: enough for the dispatcher to split them over the pool.
  for (std::int64_t c : {1, 64, 65, 129}) {
    for (int with_scale : {0, 1}) {
      const unsigned seed = static_cast<unsigned>(9000 + 2 * c + with_scale);
      const Data d = make_data(300, c, 3, seed);
      const float* sc = with_scale ? d.scale.data() : nullptr;
      const float* sh = with_scale ? d.shift.data() : nullptr;
      const std::int64_t words = bmx::words_for_bits(c);
      std::vector<word_t> want(static_cast<std::size_t>(300 * words));
      bmx::ref::sign_pack(d.x.data(), 300, c, d.in_ps, sc, sh, want.data());
      for (int threads : {1, 2, 3}) {
        bmx::ThreadPool pool(threads);
        std::vector<word_t> got(want.size(), 0x77ULL);
        bmx::sign_pack(d.x.data(), 300, c, d.in_ps, sc, sh, got.data(), threads > 1 ? &pool : nullptr);
        ASSERT_EQ(got, want) << "C=" << c << " scale=" << with_scale << " threads=" << threads << " seed=" << seed;
      }
    }
  }
}

// Inputs around the k-bit levels: mostly in [-0.5, 1.5], some exactly at (or one ulp
// around) a rounding tie k / (2n) of every plane count, plus the special values.
Data make_level_data(std::int64_t pixels, std::int64_t c, std::int64_t pad, unsigned seed) {
  Data d = make_data(pixels, c, pad, seed);
  std::mt19937 g(seed + 1);
  std::uniform_real_distribution<float> u(-0.5f, 1.5f);
  std::uniform_int_distribution<int> pick(0, 9), planes(1, 4), tie(0, 30);
  for (auto& x : d.x) {
    const int k = pick(g);
    if (k < 5) {
      x = u(g);
    } else if (k < 8) {
      const int n = (1 << planes(g)) - 1, t = tie(g) % (2 * n + 1);
      x = static_cast<float>(t) / static_cast<float>(2 * n);
      if (k == 6) x = std::nextafter(x, 2.0f);
      if (k == 7) x = std::nextafter(x, -1.0f);
    }
  }
  for (auto& s : d.scale) s = pick(g) < 8 ? std::uniform_real_distribution<float>(0.25f, 2.0f)(g) : s;
  for (auto& s : d.shift) s = pick(g) < 8 ? u(g) - 0.5f : s;
  return d;
}

TEST(LevelPack, EveryKernelMatchesReference) {
  int checked = 0;
  for (const auto& k : bmx::level_pack_kernels()) {
    if (!k.available()) continue;
    for (int planes = 1; planes <= 4; ++planes)
      for (std::int64_t c : kChannels)
        for (int with_scale : {0, 1}) {
          const unsigned seed = static_cast<unsigned>(11000 + c * 16 + planes * 2 + with_scale);
          const std::int64_t pixels = 1 + c % 7;
          const Data d = make_level_data(pixels, c, /*pad=*/c % 3, seed);
          const float* sc = with_scale ? d.scale.data() : nullptr;
          const float* sh = with_scale ? d.shift.data() : nullptr;
          const std::size_t n = static_cast<std::size_t>(pixels * planes * bmx::words_for_bits(c));
          std::vector<word_t> want(n), got(n, 0x5a5aULL);
          bmx::ref::level_pack(d.x.data(), pixels, c, d.in_ps, sc, sh, planes, want.data());
          k.run(d.x.data(), pixels, c, d.in_ps, sc, sh, planes, got.data());
          ASSERT_EQ(got, want) << k.name << " C=" << c << " planes=" << planes << " seed=" << seed;
          ++checked;
        }
  }
  EXPECT_GT(checked, 0);
}

TEST(LevelPack, DispatcherWithThreads) {
  for (std::int64_t c : {1, 65, 129}) {
    const unsigned seed = static_cast<unsigned>(12000 + c);
    const Data d = make_level_data(300, c, 2, seed);
    const std::size_t n = static_cast<std::size_t>(300 * 3 * bmx::words_for_bits(c));
    std::vector<word_t> want(n);
    bmx::ref::level_pack(d.x.data(), 300, c, d.in_ps, d.scale.data(), d.shift.data(), 3, want.data());
    for (int threads : {1, 2}) {
      bmx::ThreadPool pool(threads);
      std::vector<word_t> got(n, 0x77ULL);
      bmx::level_pack(d.x.data(), 300, c, d.in_ps, d.scale.data(), d.shift.data(), 3, got.data(),
                      threads > 1 ? &pool : nullptr);
      ASSERT_EQ(got, want) << "C=" << c << " threads=" << threads << " seed=" << seed;
    }
  }
}

TEST(LevelPack, ReferenceRoundsHalvesUpAndClips) {
  // Independent of any kernel, 2 planes (n = 3): -1 -> 0, 1/6 -> round(0.5) = 1,
  // 0.5 -> round(1.5) = 2, 0.8 -> round(2.4) = 2, 7 -> 3, NaN -> 0; plane 0 holds bit 0.
  const float x[] = {-1.0f, 1.0f / 6.0f, 0.5f, 0.8f, 7.0f, std::numeric_limits<float>::quiet_NaN()};
  word_t out[2] = {};
  bmx::ref::level_pack(x, 1, 6, 6, nullptr, nullptr, 2, out);
  // levels 0 1 2 2 3 0: bit 0 at channels 1, 4; bit 1 at channels 2, 3, 4
  EXPECT_EQ(out[0], word_t{0b010010});
  EXPECT_EQ(out[1], word_t{0b011100});
}

TEST(SignPack, ReferenceFollowsTheConvention) {
  // Independent of any kernel: channel 0 is negative after the affine map, channel 1 sits
  // exactly at its threshold (0 -> bit 0), channel 2 is NaN (bit 0), channel 3 negative
  // through a negative scale; bits past C stay 0.
  const float x[4] = {1.0f, 2.0f, std::numeric_limits<float>::quiet_NaN(), 3.0f};
  const float scale[4] = {1.0f, 0.5f, 1.0f, -1.0f};
  const float shift[4] = {-2.0f, -1.0f, 0.0f, 0.5f};
  word_t w = ~word_t{0};
  bmx::ref::sign_pack(x, 1, 4, 4, scale, shift, &w);
  EXPECT_EQ(w, word_t{0b1001});
  bmx::ref::sign_pack(shift, 1, 4, 4, nullptr, nullptr, &w);
  EXPECT_EQ(w, word_t{0b0011});
}

}  // namespace
