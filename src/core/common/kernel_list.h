// Choosing a kernel from one family's kernel list (bgemm, kbgemm): "auto" (or "") is the
// available kernel of highest priority, any other name must be in the list and run on
// this CPU. Errors are std::invalid_argument (ValueError in Python) naming the choices.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "core/common/cpu.h"

namespace bmx {

// K has `name`, `available()` and `priority`; the list holds at least one kernel that is
// always available (the reference), so "auto" always finds one.
template <typename K>
const K& pick_kernel(const std::vector<K>& list, const std::string& name, const char* family) {
  if (name.empty() || name == "auto") {
    const K* best = nullptr;
    for (const auto& k : list)
      if (k.available() && (best == nullptr || k.priority > best->priority)) best = &k;
    return *best;
  }
  std::string names;
  for (const auto& k : list) {
    if (name == k.name) {
      if (!k.available())
        throw std::invalid_argument(std::string(family) + " kernel '" + name +
                                    "' is not available on this CPU (features: " + cpu_features_string() + ")");
      return k;
    }
    names += names.empty() ? "" : ", ";
    names += k.name;
  }
  throw std::invalid_argument("unknown " + std::string(family) + " kernel '" + name + "'; known: auto, " + names);
}

}  // namespace bmx
