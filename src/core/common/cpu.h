// Run-time CPU feature detection used by kernel dispatch.
#pragma once

#include <string>

namespace bmx {

struct CpuFeatures {
  bool popcnt = false;
  bool avx2 = false;
  bool avx512_vpopcntdq = false;  // with avx512f + avx512bw + avx512vl
  bool avx512f = false;           // AVX-512 Foundation (float kernels; FMA included)
  bool neon = false;
};

// Features of the CPU this process runs on (cached after the first call).
// BMX_DISABLE_SIMD=avx512,avx2,neon in the environment masks features (for tests).
const CpuFeatures& cpu_features();
std::string cpu_features_string();

}  // namespace bmx
