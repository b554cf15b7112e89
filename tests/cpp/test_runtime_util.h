// Test helper for the runtime: builds small models with the FlatBuffers C++ builder and
// evaluates them with a naive NCHW reference written independently of src/runtime
// (double accumulation, binary convs as +-1 float convs with -1 padding).
//
// Random parameters are dyadic rationals (k / 8) so that float sums are exact in both
// engines: sign decisions downstream then agree bit for bit.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bmx/convention.h"
#include "bmx/engine.h"
#include "bmx_model_generated.h"

namespace bmx::testing {

struct TVal {
  std::vector<int> shape;  // [1, C, H, W] or [1, C]
  bool bits = false;
  int planes = 0;          // > 0: a Levels value of that many planes
  int c() const { return shape[1]; }
  int h() const { return shape.size() == 4 ? shape[2] : 1; }
  int w() const { return shape.size() == 4 ? shape[3] : 1; }
};

struct TOp {
  fb::OpOptions type = fb::OpOptions::NONE;
  std::string name;
  std::vector<int> in, out;
  int out_c = 0, in_c = 0, groups = 1, w_planes = 1;
  std::vector<int> kernel, stride, pad, dilation;
  bool relu = false;
  std::vector<std::uint8_t> weight, bias;   // float32 bytes / packed bits bytes
  std::vector<float> scale, shift;
  bool pool_max = true, count_include_pad = true, global = false, ceil_mode = false;
};

inline std::vector<std::uint8_t> to_bytes(const std::vector<float>& v) {
  std::vector<std::uint8_t> b(v.size() * 4);
  if (!v.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}
inline std::vector<float> from_bytes(const std::vector<std::uint8_t>& b) {
  std::vector<float> v(b.size() / 4);
  if (!v.empty()) std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

class Net {
 public:
  explicit Net(unsigned seed = 1) : rng_(seed) {}
  std::vector<TVal> vals;
  std::vector<TOp> ops;
  int input_v = -1, output_v = -1;
  std::uint32_t version = kFormatVersion;
  int num_classes = 0;

  float dyadic(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_) / 8.0f; }
  std::vector<float> random_input(int batch) {
    const TVal& v = vals[input_v];
    std::vector<float> x(static_cast<std::size_t>(batch) * v.c() * v.h() * v.w());
    for (auto& f : x) f = dyadic(-16, 16);
    return x;
  }

  int add_value(std::vector<int> shape, bool bits = false) {
    vals.push_back({std::move(shape), bits});
    return static_cast<int>(vals.size()) - 1;
  }
  int input(int c, int h, int w) { return input_v = add_value({1, c, h, w}); }

  static int out_dim(int in, int k, int s, int p, int d) { return (in + 2 * p - d * (k - 1) - 1) / s + 1; }

  int conv(int x, int out_c, int k, int s = 1, int p = 0, int d = 1, int groups = 1, bool relu = false,
           bool bias = true) {
    const TVal xv = vals[x];
    TOp op;
    op.type = fb::OpOptions::Conv2D;
    op.name = "conv" + std::to_string(ops.size());
    op.in = {x};
    op.out_c = out_c; op.groups = groups; op.relu = relu;
    op.kernel = {k, k}; op.stride = {s, s}; op.pad = {p, p}; op.dilation = {d, d};
    std::vector<float> w(static_cast<std::size_t>(out_c) * (xv.c() / groups) * k * k);
    for (auto& f : w) f = dyadic(-4, 4);
    op.weight = to_bytes(w);
    if (bias) {
      std::vector<float> b(out_c);
      for (auto& f : b) f = dyadic(-8, 8);
      op.bias = to_bytes(b);
    }
    op.out = {add_value({1, out_c, out_dim(xv.h(), k, s, p, d), out_dim(xv.w(), k, s, p, d)})};
    ops.push_back(op);
    return op.out[0];
  }
  int sign(int x, bool bn) {
    const TVal xv = vals[x];
    TOp op;
    op.type = fb::OpOptions::Sign;
    op.name = "sign" + std::to_string(ops.size());
    op.in = {x};
    if (bn) {
      for (int c = 0; c < xv.c(); ++c) {
        float s = dyadic(1, 12) * (std::uniform_int_distribution<int>(0, 3)(rng_) ? 1.0f : -1.0f);
        op.scale.push_back(s);
        op.shift.push_back(dyadic(-8, 8));
      }
    }
    op.out = {add_value(xv.shape, true)};
    ops.push_back(op);
    return op.out[0];
  }
  // identity: scale 1 shift 0 (the output is the match count itself).
  int bconv(int x, int out_c, int k, int s = 1, int p = 0, int d = 1, int groups = 1, bool identity = false,
            bool relu = false) {
    const TVal xv = vals[x];
    TOp op;
    op.type = fb::OpOptions::BinaryConv2D;
    op.name = "bconv" + std::to_string(ops.size());
    op.in = {x};
    op.out_c = out_c; op.in_c = xv.c(); op.groups = groups; op.relu = relu;
    op.kernel = {k, k}; op.stride = {s, s}; op.pad = {p, p}; op.dilation = {d, d};
    const int cg = xv.c() / groups;
    const std::int64_t wg = words_for_bits(cg);
    std::vector<word_t> bits(static_cast<std::size_t>(out_c) * k * k * wg, 0);
    for (int o = 0; o < out_c; ++o)
      for (int t = 0; t < k * k; ++t)
        for (int c = 0; c < cg; ++c)
          if (std::uniform_int_distribution<int>(0, 1)(rng_))
            bits[(o * k * k + t) * wg + c / 64] |= word_t{1} << (c % 64);
    op.weight.resize(bits.size() * 8);
    std::memcpy(op.weight.data(), bits.data(), op.weight.size());
    for (int o = 0; o < out_c; ++o) {
      op.scale.push_back(identity ? 1.0f : dyadic(-8, 8));
      op.shift.push_back(identity ? 0.0f : dyadic(-16, 16));
    }
    op.out = {add_value({1, out_c, out_dim(xv.h(), k, s, p, d), out_dim(xv.w(), k, s, p, d)})};
    ops.push_back(op);
    return op.out[0];
  }
  int affine(int x, bool relu) {
    TOp op;
    op.type = fb::OpOptions::Affine;
    op.name = "affine" + std::to_string(ops.size());
    op.in = {x};
    op.relu = relu;
    for (int c = 0; c < vals[x].c(); ++c) {
      op.scale.push_back(dyadic(-8, 8));
      op.shift.push_back(dyadic(-8, 8));
    }
    op.out = {add_value(vals[x].shape)};
    ops.push_back(op);
    return op.out[0];
  }
  int simple(fb::OpOptions t, std::vector<int> in, std::vector<int> shape) {
    TOp op;
    op.type = t;
    op.name = std::string(fb::EnumNameOpOptions(t)) + std::to_string(ops.size());
    op.in = std::move(in);
    op.out = {add_value(std::move(shape))};
    ops.push_back(op);
    return op.out[0];
  }
  int relu(int x) { return simple(fb::OpOptions::Relu, {x}, vals[x].shape); }
  int add(int a, int b) { return simple(fb::OpOptions::Add, {a, b}, vals[a].shape); }
  int add_last(int a, int b) { return simple(fb::OpOptions::AddToLastChannels, {a, b}, vals[a].shape); }
  int concat(std::vector<int> in) {
    int c = 0;
    for (int v : in) c += vals[v].c();
    const TVal a = vals[in[0]];
    return simple(fb::OpOptions::Concat, in, {1, c, a.h(), a.w()});
  }
  int shuffle(int x, int g) {
    int v = simple(fb::OpOptions::ChannelShuffle, {x}, vals[x].shape);
    ops.back().groups = g;
    return v;
  }
  int flatten(int x) {
    const TVal xv = vals[x];
    return simple(fb::OpOptions::Flatten, {x}, {1, xv.c() * xv.h() * xv.w()});
  }
  static int pool_dim(int in, int k, int s, int p, bool ceil) {
    return (ceil ? (in + 2 * p - k + s - 1) / s : (in + 2 * p - k) / s) + 1;
  }
  int pool(int x, bool max, int k, int s, int p, bool cip = true, bool ceil = false) {
    const TVal xv = vals[x];
    int v = simple(fb::OpOptions::Pool2D, {x},
                   {1, xv.c(), pool_dim(xv.h(), k, s, p, ceil), pool_dim(xv.w(), k, s, p, ceil)});
    TOp& op = ops.back();
    op.pool_max = max; op.kernel = {k, k}; op.stride = {s, s}; op.pad = {p, p}; op.count_include_pad = cip;
    op.ceil_mode = ceil;
    return v;
  }
  int global_pool(int x, bool max) {
    int v = simple(fb::OpOptions::Pool2D, {x}, {1, vals[x].c(), 1, 1});
    ops.back().pool_max = max;
    ops.back().global = true;
    return v;
  }
  int dense(int x, int units, bool bias = true) {
    const TVal xv = vals[x];
    const int f = xv.c() * xv.h() * xv.w();
    int v = simple(fb::OpOptions::Dense, {x}, {1, units});
    TOp& op = ops.back();
    op.out_c = units;
    std::vector<float> w(static_cast<std::size_t>(units) * f), b(units);
    for (auto& q : w) q = dyadic(-4, 4);
    for (auto& q : b) q = dyadic(-4, 4);
    op.weight = to_bytes(w);
    if (bias) op.bias = to_bytes(b);
    return v;
  }

  // Binary dense layer on a Bits value x ([1, C] or [1, C, H, W]): random packed weights
  // [units, H, W, words(C)], dyadic scale/shift (or identity: the match count itself).
  int bdense(int x, int units, bool identity = false, bool relu = false) {
    const TVal xv = vals[x];
    int v = simple(fb::OpOptions::BinaryDense, {x}, {1, units});
    TOp& op = ops.back();
    op.out_c = units;
    op.relu = relu;
    const std::int64_t wc = words_for_bits(xv.c());
    std::vector<word_t> bits(static_cast<std::size_t>(units) * xv.h() * xv.w() * wc, 0);
    for (int u = 0; u < units; ++u)
      for (int p = 0; p < xv.h() * xv.w(); ++p)
        for (int c = 0; c < xv.c(); ++c)
          if (std::uniform_int_distribution<int>(0, 1)(rng_))
            bits[(static_cast<std::size_t>(u) * xv.h() * xv.w() + p) * wc + c / 64] |= word_t{1} << (c % 64);
    op.weight.resize(bits.size() * 8);
    std::memcpy(op.weight.data(), bits.data(), op.weight.size());
    for (int u = 0; u < units; ++u) {
      op.scale.push_back(identity ? 1.0f : dyadic(-8, 8));
      op.shift.push_back(identity ? 0.0f : dyadic(-16, 16));
    }
    return v;
  }

  // k-bit activation quantizer: Float -> Levels of `planes` planes, with an optional
  // folded BatchNorm (dyadic scale/shift of either sign).
  int quantize(int x, int planes, bool bn) {
    int v = simple(fb::OpOptions::Quantize, {x}, vals[x].shape);
    vals[v].planes = planes;
    TOp& op = ops.back();
    for (int c = 0; bn && c < vals[x].c(); ++c) {
      op.scale.push_back(dyadic(1, 4) * (std::uniform_int_distribution<int>(0, 3)(rng_) ? 1.0f : -1.0f) / 4);
      op.shift.push_back(dyadic(-4, 8) / 4);
    }
    return v;
  }
  // k-bit convolution: random weight levels of w_planes planes [C_out, p, KH, KW, words(C)],
  // dyadic scale/shift.
  int kconv(int x, int out_c, int k, int s, int p, int d, int w_planes, bool relu = false) {
    const TVal xv = vals[x];
    int v = simple(fb::OpOptions::KbitConv2D, {x},
                   {1, out_c, out_dim(xv.h(), k, s, p, d), out_dim(xv.w(), k, s, p, d)});
    TOp& op = ops.back();
    op.out_c = out_c; op.in_c = xv.c(); op.relu = relu; op.w_planes = w_planes;
    op.kernel = {k, k}; op.stride = {s, s}; op.pad = {p, p}; op.dilation = {d, d};
    const std::int64_t wc = words_for_bits(xv.c());
    std::vector<word_t> bits(static_cast<std::size_t>(out_c) * w_planes * k * k * wc, 0);
    for (int o = 0; o < out_c; ++o)
      for (int q = 0; q < w_planes; ++q)
        for (int t = 0; t < k * k; ++t)
          for (int c = 0; c < xv.c(); ++c)
            if (std::uniform_int_distribution<int>(0, 1)(rng_))
              bits[((static_cast<std::size_t>(o) * w_planes + q) * k * k + t) * wc + c / 64] |= word_t{1} << (c % 64);
    op.weight.resize(bits.size() * 8);
    std::memcpy(op.weight.data(), bits.data(), op.weight.size());
    for (int o = 0; o < out_c; ++o) {
      op.scale.push_back(dyadic(-8, 8) / 8);
      op.shift.push_back(dyadic(-16, 16));
    }
    return v;
  }

  int mean_abs(int x) { return simple(fb::OpOptions::MeanAbsChannels, {x}, {1, 1, vals[x].h(), vals[x].w()}); }
  int mul(int a, int b) { return simple(fb::OpOptions::Mul, {a, b}, vals[a].shape); }

  std::vector<std::uint8_t> build(int out) {
    output_v = out;
    flatbuffers::FlatBufferBuilder fbb;
    std::vector<flatbuffers::Offset<fb::Value>> fv;
    for (std::size_t i = 0; i < vals.size(); ++i) {
      const fb::ValueKind kind =
          vals[i].planes ? fb::ValueKind::Levels : vals[i].bits ? fb::ValueKind::Bits : fb::ValueKind::Float;
      fv.push_back(fb::CreateValueDirect(fbb, ("v" + std::to_string(i)).c_str(), &vals[i].shape, kind,
                                         vals[i].planes));
    }
    std::vector<flatbuffers::Offset<fb::Op>> fo;
    for (const TOp& op : ops) {
      flatbuffers::Offset<void> opt;
      const auto act = op.relu ? fb::Activation::Relu : fb::Activation::None;
      auto vec_or_null = [](const std::vector<int>& v) { return v.empty() ? nullptr : &v; };
      switch (op.type) {
        case fb::OpOptions::Conv2D:
          opt = fb::CreateConv2DDirect(fbb, op.out_c, vec_or_null(op.kernel), vec_or_null(op.stride),
                                       vec_or_null(op.pad), vec_or_null(op.dilation), op.groups, &op.weight,
                                       op.bias.empty() ? nullptr : &op.bias, act).Union();
          break;
        case fb::OpOptions::BinaryConv2D:
          opt = fb::CreateBinaryConv2DDirect(fbb, op.out_c, op.in_c, vec_or_null(op.kernel), vec_or_null(op.stride),
                                             vec_or_null(op.pad), vec_or_null(op.dilation), op.groups, &op.weight,
                                             &op.scale, &op.shift, act).Union();
          break;
        case fb::OpOptions::Sign:
          opt = fb::CreateSignDirect(fbb, op.scale.empty() ? nullptr : &op.scale,
                                     op.shift.empty() ? nullptr : &op.shift).Union();
          break;
        case fb::OpOptions::Affine:
          opt = fb::CreateAffineDirect(fbb, &op.scale, &op.shift, act).Union();
          break;
        case fb::OpOptions::Relu: opt = fb::CreateRelu(fbb).Union(); break;
        case fb::OpOptions::Pool2D:
          opt = fb::CreatePool2DDirect(fbb, op.pool_max ? fb::PoolType::Max : fb::PoolType::Avg,
                                       vec_or_null(op.kernel), vec_or_null(op.stride), vec_or_null(op.pad),
                                       op.count_include_pad, op.global, op.ceil_mode).Union();
          break;
        case fb::OpOptions::Concat: opt = fb::CreateConcat(fbb).Union(); break;
        case fb::OpOptions::Add: opt = fb::CreateAdd(fbb).Union(); break;
        case fb::OpOptions::AddToLastChannels: opt = fb::CreateAddToLastChannels(fbb).Union(); break;
        case fb::OpOptions::ChannelShuffle: opt = fb::CreateChannelShuffle(fbb, op.groups).Union(); break;
        case fb::OpOptions::Dense:
          opt = fb::CreateDenseDirect(fbb, op.out_c, &op.weight, op.bias.empty() ? nullptr : &op.bias).Union();
          break;
        case fb::OpOptions::Flatten: opt = fb::CreateFlatten(fbb).Union(); break;
        case fb::OpOptions::BinaryDense:
          opt = fb::CreateBinaryDenseDirect(fbb, op.out_c, &op.weight, &op.scale, &op.shift, act).Union();
          break;
        case fb::OpOptions::MeanAbsChannels: opt = fb::CreateMeanAbsChannels(fbb).Union(); break;
        case fb::OpOptions::Mul: opt = fb::CreateMul(fbb).Union(); break;
        case fb::OpOptions::Quantize:
          opt = fb::CreateQuantizeDirect(fbb, op.scale.empty() ? nullptr : &op.scale,
                                         op.shift.empty() ? nullptr : &op.shift).Union();
          break;
        case fb::OpOptions::KbitConv2D:
          opt = fb::CreateKbitConv2DDirect(fbb, op.out_c, op.in_c, vec_or_null(op.kernel), vec_or_null(op.stride),
                                           vec_or_null(op.pad), vec_or_null(op.dilation), op.w_planes, &op.weight,
                                           &op.scale, &op.shift, act).Union();
          break;
        default: break;
      }
      fo.push_back(fb::CreateOpDirect(fbb, op.name.c_str(), op.type, opt, &op.in, &op.out));
    }
    std::vector<int> ins = {input_v}, outs = {out};
    const int nc = num_classes ? num_classes : vals[out].c();
    auto m = fb::CreateModelDirect(fbb, version, "bmx tests", &fv, &ins, &outs, &fo, nc);
    fb::FinishModelBuffer(fbb, m);
    return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
  }

  // ---- naive NCHW reference (per sample, double) ----
  using T = std::vector<double>;  // one sample, NCHW

  std::vector<float> reference(const std::vector<float>& x, int batch) const {
    const TVal& iv = vals[input_v];
    const std::size_t in_n = static_cast<std::size_t>(iv.c()) * iv.h() * iv.w();
    const TVal& ov = vals[output_v];
    const std::size_t out_n = static_cast<std::size_t>(ov.c()) * ov.h() * ov.w();
    std::vector<float> out(batch * out_n);
    for (int b = 0; b < batch; ++b) {
      std::vector<T> v(vals.size());
      v[input_v].assign(x.begin() + b * in_n, x.begin() + (b + 1) * in_n);
      for (const TOp& op : ops) v[op.out[0]] = run(op, v);
      for (std::size_t i = 0; i < out_n; ++i) out[b * out_n + i] = static_cast<float>(v[output_v][i]);
    }
    return out;
  }

 private:
  std::mt19937 rng_;

  static double act(double y, bool relu) { return relu ? std::max(y, 0.0) : y; }

  T run(const TOp& op, const std::vector<T>& v) const {
    const TVal& xv = vals[op.in[0]];
    const TVal& yv = vals[op.out[0]];
    const T& x = v[op.in[0]];
    const int C = xv.c(), H = xv.h(), W = xv.w();
    const int OC = yv.c(), OH = yv.h(), OW = yv.w();
    T y(static_cast<std::size_t>(OC) * OH * OW, 0.0);
    switch (op.type) {
      case fb::OpOptions::Conv2D:
      case fb::OpOptions::BinaryConv2D: {
        const bool bin = op.type == fb::OpOptions::BinaryConv2D;
        const int g = op.groups, cg = C / g, og = OC / g, kh = op.kernel[0], kw = op.kernel[1];
        const std::vector<float> wf = bin ? std::vector<float>() : from_bytes(op.weight);
        const std::vector<float> bf = from_bytes(op.bias);
        const std::int64_t wg = words_for_bits(cg);
        auto weight = [&](int o, int c, int i, int j) -> double {
          if (!bin) return wf[((static_cast<std::size_t>(o) * cg + c) * kh + i) * kw + j];
          const std::size_t word = (static_cast<std::size_t>(o) * kh * kw + i * kw + j) * wg + c / 64;
          word_t wv;
          std::memcpy(&wv, op.weight.data() + 8 * word, 8);
          return ((wv >> (c % 64)) & 1) ? -1.0 : 1.0;
        };
        for (int o = 0; o < OC; ++o) {
          const int gi = o / og;
          for (int oy = 0; oy < OH; ++oy)
            for (int ox = 0; ox < OW; ++ox) {
              double s = 0;
              for (int c = 0; c < cg; ++c)
                for (int i = 0; i < kh; ++i)
                  for (int j = 0; j < kw; ++j) {
                    const int iy = oy * op.stride[0] - op.pad[0] + i * op.dilation[0];
                    const int ix = ox * op.stride[1] - op.pad[1] + j * op.dilation[1];
                    double xin;
                    if (iy < 0 || iy >= H || ix < 0 || ix >= W) xin = bin ? -1.0 : 0.0;
                    else xin = x[(static_cast<std::size_t>(gi * cg + c) * H + iy) * W + ix];
                    s += xin * weight(o, c, i, j);
                  }
              double r;
              if (bin) {
                const double K = static_cast<double>(cg) * kh * kw;
                const float match = static_cast<float>((s + K) / 2);
                r = static_cast<double>(op.scale[o] * match + op.shift[o]);
              } else {
                r = s + (bf.empty() ? 0.0 : bf[o]);
              }
              y[(static_cast<std::size_t>(o) * OH + oy) * OW + ox] = act(r, op.relu);
            }
        }
        return y;
      }
      case fb::OpOptions::Sign:
        for (int c = 0; c < C; ++c)
          for (int p = 0; p < H * W; ++p) {
            const float xf = static_cast<float>(x[c * H * W + p]);
            const float z = op.scale.empty() ? xf : op.scale[c] * xf + op.shift[c];
            y[c * H * W + p] = z < 0.0f ? -1.0 : 1.0;
          }
        return y;
      case fb::OpOptions::Affine:
        for (int c = 0; c < C; ++c)
          for (int p = 0; p < H * W; ++p)
            y[c * H * W + p] = act(op.scale[c] * x[c * H * W + p] + op.shift[c], op.relu);
        return y;
      case fb::OpOptions::Relu:
        for (std::size_t i = 0; i < y.size(); ++i) y[i] = std::max(x[i], 0.0);
        return y;
      case fb::OpOptions::Pool2D:
        for (int c = 0; c < C; ++c)
          for (int oy = 0; oy < OH; ++oy)
            for (int ox = 0; ox < OW; ++ox) {
              const int kh = op.global ? H : op.kernel[0], kw = op.global ? W : op.kernel[1];
              const int sh = op.global ? 1 : op.stride[0], sw = op.global ? 1 : op.stride[1];
              const int ph = op.global ? 0 : op.pad[0], pw = op.global ? 0 : op.pad[1];
              double m = -INFINITY, s = 0;
              int cnt = 0, area = 0;
              for (int i = 0; i < kh; ++i)
                for (int j = 0; j < kw; ++j) {
                  const int iy = oy * sh - ph + i, ix = ox * sw - pw + j;
                  if (iy < H + ph && ix < W + pw) ++area;  // window clipped at the padded border
                  if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                  const double q = x[(c * H + iy) * W + ix];
                  m = std::max(m, q);
                  s += q;
                  ++cnt;
                }
              const int div = (op.global || op.count_include_pad) ? area : cnt;
              y[(c * OH + oy) * OW + ox] = op.pool_max ? m : s / div;
            }
        return y;
      case fb::OpOptions::Concat: {
        std::size_t off = 0;
        for (int i : op.in) {
          std::copy(v[i].begin(), v[i].end(), y.begin() + off);
          off += v[i].size();
        }
        return y;
      }
      case fb::OpOptions::Add:
        for (std::size_t i = 0; i < y.size(); ++i) y[i] = x[i] + v[op.in[1]][i];
        return y;
      case fb::OpOptions::AddToLastChannels: {
        y = x;
        const T& b = v[op.in[1]];
        const std::size_t off = y.size() - b.size();
        for (std::size_t i = 0; i < b.size(); ++i) y[off + i] += b[i];
        return y;
      }
      case fb::OpOptions::ChannelShuffle: {
        const int g = op.groups, per = C / g;
        for (int gi = 0; gi < g; ++gi)
          for (int i = 0; i < per; ++i)
            for (int p = 0; p < H * W; ++p) y[(i * g + gi) * H * W + p] = x[(gi * per + i) * H * W + p];
        return y;
      }
      case fb::OpOptions::Dense: {
        const std::vector<float> w = from_bytes(op.weight), b = from_bytes(op.bias);
        const std::size_t f = x.size();
        for (int u = 0; u < OC; ++u) {
          double s = b.empty() ? 0.0 : b[u];
          for (std::size_t i = 0; i < f; ++i) s += w[u * f + i] * x[i];
          y[u] = s;
        }
        return y;
      }
      case fb::OpOptions::BinaryDense: {
        // +-1 inputs in NCHW order against the weight bit of (unit, pixel, channel)
        const std::int64_t wc = words_for_bits(C);
        for (int u = 0; u < OC; ++u) {
          double s = 0;
          for (int c = 0; c < C; ++c)
            for (int p = 0; p < H * W; ++p) {
              word_t wv;
              std::memcpy(&wv, op.weight.data() + 8 * ((static_cast<std::size_t>(u) * H * W + p) * wc + c / 64), 8);
              s += x[static_cast<std::size_t>(c) * H * W + p] * (((wv >> (c % 64)) & 1) ? -1.0 : 1.0);
            }
          const float match = static_cast<float>((s + static_cast<double>(C) * H * W) / 2);
          y[u] = act(static_cast<double>(op.scale[u] * match + op.shift[u]), op.relu);
        }
        return y;
      }
      case fb::OpOptions::MeanAbsChannels:
        for (int p = 0; p < H * W; ++p) {
          double s = 0;
          for (int c = 0; c < C; ++c) s += std::fabs(x[static_cast<std::size_t>(c) * H * W + p]);
          y[p] = s / C;
        }
        return y;
      case fb::OpOptions::Mul: {
        const T& b = v[op.in[1]];
        const bool bcast = vals[op.in[1]].c() == 1;
        for (std::size_t i = 0; i < y.size(); ++i) y[i] = x[i] * b[bcast ? i % (H * W) : i];
        return y;
      }
      case fb::OpOptions::Quantize: {
        // round(clip(scale * x + shift, 0, 1) * n) in float32, halves up; the value L / n
        const double n = (1 << yv.planes) - 1;
        for (int c = 0; c < C; ++c)
          for (int p = 0; p < H * W; ++p) {
            const float xf = static_cast<float>(x[c * H * W + p]);
            const float z = op.scale.empty() ? xf : op.scale[c] * xf + op.shift[c];
            const float cl = std::min(std::max(z, 0.0f), 1.0f);
            y[c * H * W + p] = std::floor(static_cast<double>(cl * static_cast<float>(n)) + 0.5) / n;
          }
        return y;
      }
      case fb::OpOptions::KbitConv2D: {
        // the activation values (+-1 or L / n) padded with -1, times the weight values
        const int kh = op.kernel[0], kw = op.kernel[1], P = op.w_planes;
        const std::int64_t wc = words_for_bits(C);
        auto weight = [&](int o, int c, int i, int j) -> double {
          int level = 0;
          for (int q = 0; q < P; ++q) {
            word_t wv;
            std::memcpy(&wv, op.weight.data() + 8 * ((((static_cast<std::size_t>(o) * P + q) * kh + i) * kw + j) * wc + c / 64), 8);
            level |= static_cast<int>((wv >> (c % 64)) & 1) << q;
          }
          return P == 1 ? 1.0 - 2.0 * level : 2.0 * level / ((1 << P) - 1) - 1.0;
        };
        for (int o = 0; o < OC; ++o)
          for (int oy = 0; oy < OH; ++oy)
            for (int ox = 0; ox < OW; ++ox) {
              double s = 0;
              for (int c = 0; c < C; ++c)
                for (int i = 0; i < kh; ++i)
                  for (int j = 0; j < kw; ++j) {
                    const int iy = oy * op.stride[0] - op.pad[0] + i * op.dilation[0];
                    const int ix = ox * op.stride[1] - op.pad[1] + j * op.dilation[1];
                    const bool pad = iy < 0 || iy >= H || ix < 0 || ix >= W;
                    s += (pad ? -1.0 : x[(static_cast<std::size_t>(c) * H + iy) * W + ix]) * weight(o, c, i, j);
                  }
              y[(static_cast<std::size_t>(o) * OH + oy) * OW + ox] = act(op.scale[o] * s + op.shift[o], op.relu);
            }
        return y;
      }
      case fb::OpOptions::Flatten:
        return x;
      default:
        return y;
    }
  }
};

inline double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float f : v) m = std::max(m, static_cast<double>(std::fabs(f)));
  return m;
}

}  // namespace bmx::testing
