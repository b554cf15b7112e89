// Binary 2-D convolution: im2col over packed words (one pixel = in_words words, so a
// 3x3 patch row is 9 * in_words words), block by block into a reused thread-local
// buffer that stays in L2, then the bgemm kernels with A = patches (pixels) and
// B = filters, so C[pixel][c_out] is the NHWC output with no transpose.
// Padded positions are the packed -1 pixel: all ones, tail bits 0 (filter tails are 0).
#include "core/bconv2d/bconv2d.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/bgemm/bgemm.h"
#include "core/bitpack/bitpack.h"
#include "core/common/cpu.h"
#include "core/common/scratch.h"
#include "core/common/threadpool.h"

namespace bmx {

namespace {

void check_shape(const BConv2DShape& s) {
  auto bad = [](const std::string& m) { throw std::invalid_argument("bconv2d: " + m); };
  if (s.batch < 1 || s.in_h < 1 || s.in_w < 1 || s.in_c < 1 || s.out_c < 1) bad("sizes must be positive");
  if (s.kernel_h < 1 || s.kernel_w < 1) bad("kernel size must be positive");
  if (s.stride_h < 1 || s.stride_w < 1) bad("stride must be positive");
  if (s.dilation_h < 1 || s.dilation_w < 1) bad("dilation must be positive");
  if (s.pad_h < 0 || s.pad_w < 0) bad("padding must be non-negative");
  if (s.in_h + 2 * s.pad_h < s.dilation_h * (s.kernel_h - 1) + 1 ||
      s.in_w + 2 * s.pad_w < s.dilation_w * (s.kernel_w - 1) + 1)
    bad("kernel (with dilation) larger than the padded input: empty output");
  if (s.in_c * s.kernel_h * s.kernel_w > (std::int64_t{1} << 30)) bad("K = C_in * KH * KW too large");
}

// Patch rows of output pixels [p0, p1) (flattened n, y, x) into cols (row_words each).
void im2col(const word_t* input, const BConv2DShape& s, std::int64_t p0, std::int64_t p1, word_t* cols) {
  const std::int64_t iw = s.in_words(), oh = s.out_h(), ow = s.out_w();
  const std::int64_t row_words = s.kernel_h * s.kernel_w * iw;
  const word_t last = tail_mask(s.in_c);
  std::int64_t n = p0 / (oh * ow), y = (p0 / ow) % oh, x = p0 % ow;
  for (std::int64_t p = p0; p < p1; ++p) {
    word_t* d = cols + (p - p0) * row_words;
    const word_t* img = input + n * s.in_h * s.in_w * iw;
    const std::int64_t ix0 = x * s.stride_w - s.pad_w;
    const bool cols_in = s.dilation_w == 1 && ix0 >= 0 && ix0 + s.kernel_w <= s.in_w;
    for (std::int64_t ky = 0; ky < s.kernel_h; ++ky) {
      const std::int64_t iy = y * s.stride_h - s.pad_h + ky * s.dilation_h;
      const bool row_in = iy >= 0 && iy < s.in_h;
      if (row_in && cols_in) {
        // The taps of this kernel row are adjacent pixels: one contiguous run of words.
        const word_t* src = img + (iy * s.in_w + ix0) * iw;
        const std::int64_t n = s.kernel_w * iw;
        for (std::int64_t w = 0; w < n; ++w) d[w] = src[w];
        d += n;
        continue;
      }
      for (std::int64_t kx = 0; kx < s.kernel_w; ++kx, d += iw) {
        const std::int64_t ix = x * s.stride_w - s.pad_w + kx * s.dilation_w;
        if (row_in && ix >= 0 && ix < s.in_w) {
          const word_t* src = img + (iy * s.in_w + ix) * iw;
          for (std::int64_t w = 0; w < iw; ++w) d[w] = src[w];
        } else {
          for (std::int64_t w = 0; w + 1 < iw; ++w) d[w] = kMinusOneWord;
          d[iw - 1] = last;
        }
      }
    }
    if (++x == ow) {
      x = 0;
      if (++y == oh) y = 0, ++n;
    }
  }
}

// Blocks of at most ~64 KiB of patches; their count is a multiple of the thread count and
// their sizes differ by at most one pixel in all (only the last block is shorter), so the
// threads finish together. Threads claim blocks one at a time: a descheduled thread holds
// up at most one block. Rounding the block up to a whole register tile instead costs more
// than the tile tail saves: a 7x7 map (49 pixels) split 26 + 23 ran 1.72-1.77x faster on 2
// threads than on 1, split 25 + 24 1.84-1.91x. The larger first block goes to the caller
// (it always runs chunk 0), which starts about one line transfer before the worker.
std::int64_t block_pixels(std::int64_t pixels, std::int64_t row_words, std::int64_t threads) {
  const std::int64_t block_max = std::clamp<std::int64_t>(64 * 1024 / (row_words * 8), 8, 512);
  std::int64_t nblocks = (pixels + block_max - 1) / block_max;
  nblocks = (nblocks + threads - 1) / threads * threads;
  return std::max<std::int64_t>(1, (pixels + nblocks - 1) / nblocks);
}

// The float epilogue of a block while it is in cache: the same arithmetic as an unfused
// form (float multiply, then add; no FMA), so results are bit for bit equal.
BMX_SIMD_CLONES void epilogue(const std::int32_t* acc, std::int64_t rows, std::int64_t oc, std::int32_t k_bits,
                              const BConvOutput& o, float* out, const float* res) {
  const float* scale = o.scale;
  const float* shift = o.shift;
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int32_t* ar = acc + r * oc;
    float* dst = out + r * o.out_ps;
    if (res) {
      const float* rr = res + r * o.residual_ps;
      for (std::int64_t c = 0; c < oc; ++c) {
        const float match = static_cast<float>((ar[c] + k_bits) >> 1);
        float v = (scale ? scale[c] * match : match) + (shift ? shift[c] : 0.0f);
        v = o.relu ? std::max(v, 0.0f) : v;
        dst[c] = v + rr[c];
      }
    } else if (scale && shift) {
      for (std::int64_t c = 0; c < oc; ++c) {
        const float v = scale[c] * static_cast<float>((ar[c] + k_bits) >> 1) + shift[c];
        dst[c] = o.relu ? std::max(v, 0.0f) : v;
      }
    } else {
      for (std::int64_t c = 0; c < oc; ++c) {
        const float match = static_cast<float>((ar[c] + k_bits) >> 1);
        const float v = (scale ? scale[c] * match : match) + (shift ? shift[c] : 0.0f);
        dst[c] = o.relu ? std::max(v, 0.0f) : v;
      }
    }
  }
}

bool is_pointwise(const BConv2DShape& s) {
  return s.kernel_h == 1 && s.kernel_w == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 && s.pad_w == 0;
}

// The arguments of a threaded convolution, carried in the thread pool's job lines (a
// worker reads nothing from the caller's stack).
template <typename T>
struct ConvJob {
  const T* input = nullptr;
  const word_t* filter = nullptr;
  const word_t* packed_filter = nullptr;  // when set, the kernel's run_packed
  std::int32_t* out = nullptr;
  const BgemmKernel* kernel = nullptr;
  BConv2DShape s;
  std::int64_t block = 0;
};

// The kernel on one block of patch rows (a, stride row_words) for pixels [p0, p1),
// straight into the int32 output.
template <typename T>
void run_block(const ConvJob<T>& j, const word_t* a, std::int64_t row_words, std::int64_t p0, std::int64_t p1) {
  const BConv2DShape& s = j.s;
  std::int32_t* c = j.out + p0 * s.out_c;
  if (j.packed_filter)
    j.kernel->run_packed(a, row_words, j.packed_filter, 0, p1 - p0, 0, s.out_c, row_words, s.k_bits(), c, s.out_c);
  else
    j.kernel->run(a, row_words, j.filter, row_words, 0, p1 - p0, 0, s.out_c, row_words, s.k_bits(), c, s.out_c);
}

// Pixel blocks of [lo, hi): im2col, then the kernel straight into the int32 output.
void conv_blocks(const ConvJob<word_t>& j, std::int64_t lo, std::int64_t hi) {
  const BConv2DShape& s = j.s;
  const std::int64_t row_words = s.kernel_h * s.kernel_w * s.in_words();
  thread_local ScratchBuffer<word_t> cols_buf;
  word_t* cols = cols_buf.get(static_cast<std::size_t>(j.block * row_words));
  for (std::int64_t p0 = lo; p0 < hi; p0 += j.block) {
    const std::int64_t p1 = std::min(hi, p0 + j.block);
    im2col(j.input, s, p0, p1, cols);
    run_block(j, cols, row_words, p0, p1);
  }
}

// The int32 forms' common part: check, resolve the kernel (a packed filter only with a
// kernel that can use it), then `blocks` over pixel blocks sized for the thread count.
template <typename T>
void run_conv_job(const T* input, const word_t* filter, const BConv2DShape& s, std::int32_t* out, ThreadPool* pool,
                  const BgemmKernel& k, const word_t* packed_filter,
                  void (*blocks)(const ConvJob<T>&, std::int64_t, std::int64_t)) {
  const std::int64_t pixels = s.batch * s.out_h() * s.out_w();
  ConvJob<T> job;
  job.input = input, job.filter = filter, job.out = out, job.kernel = &k, job.s = s;
  job.packed_filter = k.run_packed ? packed_filter : nullptr;
  job.block = block_pixels(pixels, s.kernel_h * s.kernel_w * s.in_words(), pool ? pool->num_threads() : 1);
  parallel_for_dynamic(pool, pixels, job.block, blocks, job);
}

}  // namespace

void bconv2d(const word_t* input, const word_t* filter, const BConv2DShape& s, std::int32_t* out,
             ThreadPool* pool, const BgemmKernel* kernel, const word_t* packed_filter) {
  check_shape(s);
  const BgemmKernel& k = kernel ? *kernel : bgemm_kernel("auto");
  // A 1x1 convolution with stride 1 and no padding needs no im2col: pixels are rows.
  if (is_pointwise(s) && !(packed_filter && k.run_packed)) {
    const std::int64_t iw = s.in_words();
    bgemm(input, iw, filter, iw, s.batch * s.out_h() * s.out_w(), s.out_c, iw, s.k_bits(), out, s.out_c, pool, &k);
    return;
  }
  run_conv_job(input, filter, s, out, pool, k, packed_filter, &conv_blocks);
}

namespace {

// Packs (into img, laid out as the whole packed input) every input row that the patches of
// output pixels [p0, p1) read: for each image, the rows from the first output row's top
// tap to the last output row's bottom tap (rows skipped by a stride > kernel are packed
// too; harmless).
template <typename T>
void pack_rows_for(const T* input, const BConv2DShape& s, std::int64_t p0, std::int64_t p1, word_t* img) {
  const std::int64_t oh = s.out_h(), ow = s.out_w(), iw = s.in_words(), per_image = oh * ow;
  for (std::int64_t n = p0 / per_image; n * per_image < p1; ++n) {
    const std::int64_t y0 = (std::max(p0, n * per_image) - n * per_image) / ow;
    const std::int64_t y1 = (std::min(p1, (n + 1) * per_image) - 1 - n * per_image) / ow;
    const std::int64_t r0 = std::max<std::int64_t>(0, y0 * s.stride_h - s.pad_h);
    const std::int64_t r1 = std::min(s.in_h - 1, y1 * s.stride_h - s.pad_h + (s.kernel_h - 1) * s.dilation_h);
    if (r0 > r1) continue;
    const std::int64_t first = (n * s.in_h + r0) * s.in_w;
    pack_rows(input + first * s.in_c, (r1 - r0 + 1) * s.in_w, s.in_c, s.in_c, img + first * iw, iw, nullptr);
  }
}

// Pixel blocks of [lo, hi) with the input given as values: pack the rows they read, im2col
// (unless pointwise), then the kernel straight into the int32 output.
template <typename T>
void value_blocks(const ConvJob<T>& j, std::int64_t lo, std::int64_t hi) {
  const BConv2DShape& s = j.s;
  const std::int64_t iw = s.in_words(), row_words = s.kernel_h * s.kernel_w * iw;
  const std::int64_t in_words_total = s.batch * s.in_h * s.in_w * iw;
  thread_local ScratchBuffer<word_t> img_buf, cols_buf;
  word_t* img = img_buf.get(static_cast<std::size_t>(in_words_total));
  word_t* cols = is_pointwise(s) ? nullptr : cols_buf.get(static_cast<std::size_t>(j.block * row_words));
  for (std::int64_t p0 = lo; p0 < hi; p0 += j.block) {
    const std::int64_t p1 = std::min(hi, p0 + j.block);
    pack_rows_for(j.input, s, p0, p1, img);
    const word_t* a = img + p0 * iw;
    if (cols) {
      im2col(img, s, p0, p1, cols);
      a = cols;
    }
    run_block(j, a, row_words, p0, p1);
  }
}

// Input given as values: every block packs the input rows it reads itself, inside the
// convolution's one parallel loop. A separate packing pass would be a second fork-join and,
// for a small map, a serial step (packing a 7x7x576 input takes ~1 us, a tenth of the
// layer); the rows shared by two blocks (the kernel's halo) are packed twice instead.
template <typename T>
void bconv2d_values(const T* input, const word_t* filter, const BConv2DShape& s, std::int32_t* out, ThreadPool* pool,
                    const BgemmKernel* kernel, const word_t* packed_filter) {
  check_shape(s);
  run_conv_job(input, filter, s, out, pool, kernel ? *kernel : bgemm_kernel("auto"), packed_filter, &value_blocks<T>);
}

}  // namespace

void bconv2d(const float* input, const word_t* filter, const BConv2DShape& s, std::int32_t* out, ThreadPool* pool,
             const BgemmKernel* kernel, const word_t* packed_filter) {
  bconv2d_values(input, filter, s, out, pool, kernel, packed_filter);
}

void bconv2d(const std::int8_t* input, const word_t* filter, const BConv2DShape& s, std::int32_t* out,
             ThreadPool* pool, const BgemmKernel* kernel, const word_t* packed_filter) {
  bconv2d_values(input, filter, s, out, pool, kernel, packed_filter);
}

std::int64_t bconv2d_packed_filter_words(const BConv2DShape& s, const BgemmKernel& kernel) {
  if (!kernel.pack_b || !kernel.run_packed || !kernel.packed_b_words) return 0;
  return kernel.packed_b_words(s.out_c, s.kernel_h * s.kernel_w * s.in_words());
}

void bconv2d_pack_filter(const word_t* filter, const BConv2DShape& s, const BgemmKernel& kernel, word_t* out) {
  if (bconv2d_packed_filter_words(s, kernel) == 0) return;
  const std::int64_t row_words = s.kernel_h * s.kernel_w * s.in_words();
  kernel.pack_b(filter, row_words, s.out_c, row_words, out);
}

namespace {

struct FusedJob {
  const word_t* input = nullptr;
  const word_t* filter = nullptr;
  const word_t* packed_filter = nullptr;
  const BgemmKernel* kernel = nullptr;
  BConv2DShape s;
  BConvOutput o;
  std::int64_t block = 0;
};

// Pixel blocks of [lo, hi): im2col (unless pointwise), the kernel into a block of int32
// accumulators, and the float epilogue while they are in cache.
void fused_blocks(const FusedJob& j, std::int64_t lo, std::int64_t hi) {
  const BConv2DShape& s = j.s;
  const BConvOutput& o = j.o;
  const BgemmKernel& k = *j.kernel;
  const std::int64_t iw = s.in_words(), row_words = s.kernel_h * s.kernel_w * iw, oc = s.out_c;
  const std::int32_t k_bits = s.k_bits();
  const bool pointwise = is_pointwise(s);
  thread_local ScratchBuffer<word_t> cols_buf;
  thread_local ScratchBuffer<std::int32_t> acc_buf;
  word_t* cols = pointwise ? nullptr : cols_buf.get(static_cast<std::size_t>(j.block * row_words));
  std::int32_t* acc = acc_buf.get(static_cast<std::size_t>(j.block * oc));
  for (std::int64_t p0 = lo; p0 < hi; p0 += j.block) {
    const std::int64_t p1 = std::min(hi, p0 + j.block), rows = p1 - p0;
    const word_t* a = j.input + p0 * iw;
    if (cols) {
      im2col(j.input, s, p0, p1, cols);
      a = cols;
    }
    if (j.packed_filter)
      k.run_packed(a, row_words, j.packed_filter, 0, rows, 0, oc, row_words, k_bits, acc, oc);
    else
      k.run(a, row_words, j.filter, row_words, 0, rows, 0, oc, row_words, k_bits, acc, oc);
    epilogue(acc, rows, oc, k_bits, o, o.out + p0 * o.out_ps,
             o.residual ? o.residual + p0 * o.residual_ps : nullptr);
  }
}

}  // namespace

void bconv2d(const word_t* input, const word_t* filter, const BConv2DShape& s, const BConvOutput& o,
             ThreadPool* pool, const BgemmKernel* kernel, const word_t* packed_filter) {
  check_shape(s);
  if (o.out == nullptr || o.out_ps < s.out_c || (o.residual && o.residual_ps < s.out_c))
    throw std::invalid_argument("bconv2d: bad float output");
  const BgemmKernel& k = kernel ? *kernel : bgemm_kernel("auto");
  if (packed_filter && !k.run_packed) packed_filter = nullptr;
  const std::int64_t iw = s.in_words();
  const std::int64_t pixels = s.batch * s.out_h() * s.out_w();
  const std::int64_t row_words = s.kernel_h * s.kernel_w * iw;
  FusedJob job;
  job.input = input, job.filter = filter, job.packed_filter = packed_filter, job.kernel = &k, job.s = s, job.o = o;
  job.block = block_pixels(pixels, row_words, pool ? pool->num_threads() : 1);
  parallel_for_dynamic(pool, pixels, job.block, &fused_blocks, job);
}

}  // namespace bmx
