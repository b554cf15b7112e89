#include "core/common/cpu.h"

#include <cstdlib>
#include <stdexcept>

namespace bmx {

namespace {

std::string trim(const std::string& t) {
  const auto b = t.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return t.substr(b, t.find_last_not_of(" \t") - b + 1);
}

}  // namespace

void apply_simd_mask(const char* mask, CpuFeatures& f) {
  // Comma-separated names; a typo must not silently leave a feature enabled.
  std::string rest(mask);
  while (true) {
    const auto comma = rest.find(',');
    const std::string name = trim(rest.substr(0, comma));
    if (name == "avx512") {
      f.avx512_vpopcntdq = f.avx512f = false;
    } else if (name == "avx2") {
      f.avx2 = f.fma = false;
    } else if (name == "neon") {
      f.neon = false;
    } else if (name == "popcnt") {
      f.popcnt = false;
    } else if (!name.empty()) {
      throw std::invalid_argument("BMX_DISABLE_SIMD: unknown feature '" + name +
                                  "'; valid names (comma-separated): avx512, avx2, popcnt, neon");
    }
    if (comma == std::string::npos) break;
    rest = rest.substr(comma + 1);
  }
}

namespace {

CpuFeatures detect() {
  CpuFeatures f;
#if defined(BMX_ARCH_X86) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  f.popcnt = __builtin_cpu_supports("popcnt");
  f.avx2 = __builtin_cpu_supports("avx2");
  f.avx512_vpopcntdq = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                       __builtin_cpu_supports("avx512vl") &&
                       __builtin_cpu_supports("avx512vpopcntdq");
  f.avx512f = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
  f.fma = __builtin_cpu_supports("fma");
#elif defined(__aarch64__)
  f.neon = true;  // Advanced SIMD is mandatory on AArch64
#elif defined(__ARM_NEON)
  f.neon = true;  // compiled with -mfpu=neon*: the target has NEON
#endif
  if (const char* mask = std::getenv("BMX_DISABLE_SIMD")) apply_simd_mask(mask, f);
  return f;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

std::string cpu_features_string() {
  const auto& f = cpu_features();
  std::string s;
  auto add = [&](bool on, const char* n) {
    if (!on) return;
    if (!s.empty()) s += ",";
    s += n;
  };
  add(f.popcnt, "popcnt");
  add(f.avx2, "avx2");
  add(f.avx512f, "avx512f");
  add(f.avx512_vpopcntdq, "avx512_vpopcntdq");
  add(f.neon, "neon");
  return s.empty() ? "portable" : s;
}

}  // namespace bmx
