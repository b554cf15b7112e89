// Python bindings of the inference runtime (bmx::Model); filled by the runtime.
#include "python/bindings.h"

namespace bmx::python {
void bind_runtime(pybind11::module_&) {}
}  // namespace bmx::python
