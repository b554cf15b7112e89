// Run-time CPU feature detection used by kernel dispatch.
#pragma once

#include <string>

// Plain C++ loops (element-wise float ops, epilogues, pooling) compiled three times, for
// AVX-512, AVX2 and the baseline, with the best picked at load time (GCC ifunc), so that
// the portable build still runs them at full vector width. fp-contract=off: no fused
// multiply-add is formed, so every clone rounds exactly like the baseline (results are
// bit for bit independent of the CPU).
#if defined(BMX_ARCH_X86) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define BMX_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default"), optimize("fp-contract=off")))
#else
#define BMX_SIMD_CLONES
#endif

namespace bmx {

struct CpuFeatures {
  bool popcnt = false;
  bool avx2 = false;
  bool avx512_vpopcntdq = false;  // with avx512f + avx512bw + avx512vl
  bool avx512f = false;           // AVX-512 Foundation (float kernels; FMA included)
  bool fma = false;               // FMA3 (the AVX2 float kernels)
  bool neon = false;
};

// Features of the CPU this process runs on (cached after the first call).
// BMX_DISABLE_SIMD=avx512,avx2,popcnt,neon in the environment masks features (for tests).
// An unknown name in BMX_DISABLE_SIMD throws std::invalid_argument listing the valid ones.
const CpuFeatures& cpu_features();
// Clear the features named in `mask` ("avx512,avx2"); throws std::invalid_argument for an
// unknown name.
void apply_simd_mask(const char* mask, CpuFeatures& f);
std::string cpu_features_string();

}  // namespace bmx
