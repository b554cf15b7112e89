// Registration functions of the pybind11 module, one per source file in src/python/.
#pragma once
#include <pybind11/pybind11.h>

namespace bmx::python {
void bind_kernels(pybind11::module_& m);   // bind_kernels.cc: packing, binary GEMM/conv
void bind_runtime(pybind11::module_& m);   // bind_runtime.cc: bmx::Model
}  // namespace bmx::python
