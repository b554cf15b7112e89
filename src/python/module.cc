// bmx._engine: the private compiled module; bmx.engine re-exports it with docstrings.
#include <pybind11/pybind11.h>

#include "bmx/convention.h"
#include "core/common/cpu.h"
#include "python/bindings.h"

namespace py = pybind11;

PYBIND11_MODULE(_engine, m) {
  m.doc() = "bmx C++ engine (private; use bmx.engine)";
  m.attr("__version__") = BMX_VERSION;
  m.attr("WORD_BITS") = bmx::kWordBits;
  // Read BMX_DISABLE_SIMD now: a typo in it fails the import with the list of valid names
  // instead of surfacing at the first kernel call.
  bmx::cpu_features();
  m.def("cpu_features", &bmx::cpu_features_string, "CPU features the kernel dispatcher sees.");
  bmx::python::bind_kernels(m);
  bmx::python::bind_runtime(m);
}
