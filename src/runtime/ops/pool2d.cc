// Pool2D: max or average pooling (window, stride, padding, ceil_mode, count_include_pad)
// or global pooling of a Float value.
#include <algorithm>
#include <limits>

#include "core/common/cpu.h"
#include "runtime/check.h"
#include "runtime/ops/op_util.h"
#include "runtime/registry.h"

namespace bmx::rt {

namespace {

BMX_SIMD_CLONES void global_pool(const float* base, std::int64_t in_ps, std::int64_t hw, std::int64_t c, bool max,
                                 float* o) {
  const float inv = 1.0f / static_cast<float>(hw);
  if (max) {
    for (std::int64_t ch = 0; ch < c; ++ch) o[ch] = base[ch];
    for (std::int64_t p = 1; p < hw; ++p)
      for (std::int64_t ch = 0; ch < c; ++ch) o[ch] = std::max(o[ch], base[p * in_ps + ch]);
  } else {
    for (std::int64_t ch = 0; ch < c; ++ch) o[ch] = 0.0f;
    for (std::int64_t p = 0; p < hw; ++p)
      for (std::int64_t ch = 0; ch < c; ++ch) o[ch] += base[p * in_ps + ch];
    for (std::int64_t ch = 0; ch < c; ++ch) o[ch] *= inv;
  }
}

BMX_SIMD_CLONES void pool_rows(const OpNode& op, const ValueInfo& x, const ValueInfo& y, const float* in,
                               std::int64_t in_ps, float* out, std::int64_t out_ps, std::int64_t r0, std::int64_t r1) {
  const std::int64_t c = x.c;
  for (std::int64_t r = r0; r < r1; ++r) {
    const std::int64_t n = r / y.h, oy = r % y.h;
    const std::int64_t y0 = oy * op.sh - op.ph;
    const std::int64_t ya = std::max<std::int64_t>(y0, 0), yb = std::min(y0 + op.kh, x.h);
    for (std::int64_t ox = 0; ox < y.w; ++ox) {
      const std::int64_t x0 = ox * op.sw - op.pw;
      const std::int64_t xa = std::max<std::int64_t>(x0, 0), xb = std::min(x0 + op.kw, x.w);
      float* o = out + ((n * y.h + oy) * y.w + ox) * out_ps;
      if (op.pool_max) {
        for (std::int64_t ch = 0; ch < c; ++ch) o[ch] = -std::numeric_limits<float>::infinity();
        for (std::int64_t iy = ya; iy < yb; ++iy)
          for (std::int64_t ix = xa; ix < xb; ++ix) {
            const float* s = in + ((n * x.h + iy) * x.w + ix) * in_ps;
            for (std::int64_t ch = 0; ch < c; ++ch) o[ch] = std::max(o[ch], s[ch]);
          }
      } else {
        for (std::int64_t ch = 0; ch < c; ++ch) o[ch] = 0.0f;
        for (std::int64_t iy = ya; iy < yb; ++iy)
          for (std::int64_t ix = xa; ix < xb; ++ix) {
            const float* s = in + ((n * x.h + iy) * x.w + ix) * in_ps;
            for (std::int64_t ch = 0; ch < c; ++ch) o[ch] += s[ch];
          }
        // count_include_pad: the window clipped at the padded border (all of it unless
        // ceil_mode made a partial last window); else the real elements.
        const std::int64_t count =
            op.count_include_pad ? (std::min(y0 + op.kh, x.h + op.ph) - y0) * (std::min(x0 + op.kw, x.w + op.pw) - x0)
                                 : (yb - ya) * (xb - xa);
        const float inv = 1.0f / static_cast<float>(count);
        for (std::int64_t ch = 0; ch < c; ++ch) o[ch] *= inv;
      }
    }
  }
}

void pool2d(const OpNode& op, const ValueInfo& x, const ValueInfo& y, int batch, const float* in,
            std::int64_t in_ps, float* out, std::int64_t out_ps, ThreadPool* pool) {
  if (op.global) {
    const std::int64_t hw = x.h * x.w;
    pfor(pool, batch, 1, [&](std::int64_t n0, std::int64_t n1) {
      for (std::int64_t n = n0; n < n1; ++n) global_pool(in + n * hw * in_ps, in_ps, hw, x.c, op.pool_max, out + n * out_ps);
    });
    return;
  }
  pfor(pool, static_cast<std::int64_t>(batch) * y.h, 1, [&](std::int64_t r0, std::int64_t r1) {
    pool_rows(op, x, y, in, in_ps, out, out_ps, r0, r1);
  });
}

void load(const fb::Op* fop, OpNode& op, const Graph& g, bool prepare) {
  OpChecker ck(g, op);
  (void)prepare;
  const fb::Pool2D* p = fop->options_as_Pool2D();
  ck.arity(1);
  const ValueInfo& x = ck.input(0, false);
  if (p->type() != fb::PoolType::Max && p->type() != fb::PoolType::Avg) ck.fail("unknown pool type");
  op.pool_max = p->type() == fb::PoolType::Max;
  op.global = p->global();
  op.count_include_pad = p->count_include_pad();
  if (op.global) {
    op.kh = x.h; op.kw = x.w; op.sh = op.sw = 1; op.ph = op.pw = 0;
    ck.output(4, x.c, 1, 1, false);
    return;
  }
  ck.pair(p->kernel(), "kernel", 1, kMaxWindow, -1, op.kh, op.kw);
  ck.pair(p->stride(), "stride", 1, kMaxWindow, -1, op.sh, op.sw);
  ck.pair(p->pad(), "pad", 0, kMaxWindow, 0, op.ph, op.pw);
  // pad < kernel keeps at least one real element in every window.
  if (op.ph >= op.kh || op.pw >= op.kw) ck.fail("pad must be smaller than the kernel");
  if (x.h + 2 * op.ph < op.kh || x.w + 2 * op.pw < op.kw) ck.fail("kernel larger than the padded input");
  op.ceil_mode = p->ceil_mode();
  const std::int64_t sh = x.h + 2 * op.ph - op.kh, sw = x.w + 2 * op.pw - op.kw;
  const std::int64_t oh = (op.ceil_mode ? (sh + op.sh - 1) / op.sh : sh / op.sh) + 1;
  const std::int64_t ow = (op.ceil_mode ? (sw + op.sw - 1) / op.sw : sw / op.sw) + 1;
  // ceil_mode may add a partial last window; it must still hold real elements.
  if ((oh - 1) * op.sh - op.ph >= x.h || (ow - 1) * op.sw - op.pw >= x.w) {
    ck.fail("ceil_mode yields a window without real elements");
  }
  ck.output(4, x.c, oh, ow, false);
}

void run(const RunContext& c, const OpNode& op) {
  pool2d(op, c.value(op.in[0]), c.value(op.out), c.batch, c.fptr(op.in[0]), c.ps(op.in[0]), c.fptr(op.out),
         c.ps(op.out), c.pool);
}

}  // namespace

const OpImpl kPool2DOp = {&load, nullptr, &run};

}  // namespace bmx::rt
