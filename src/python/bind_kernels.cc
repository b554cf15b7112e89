// Python bindings of the bit-packing and binary GEMM/conv kernels.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>

#include "core/bitpack/reference.h"
#include "python/bindings.h"

namespace py = pybind11;

namespace bmx::python {

namespace {
py::array_t<word_t> pack_rows_f32(py::array_t<float, py::array::c_style | py::array::forcecast> x) {
  if (x.ndim() != 2) throw py::value_error("pack_rows: expected a 2-D float32 array");
  const auto rows = x.shape(0), k = x.shape(1);
  py::array_t<word_t> out({rows, static_cast<py::ssize_t>(words_for_bits(k))});
  ref::pack_rows(x.data(), rows, k, out.mutable_data());
  return out;
}
}  // namespace

void bind_kernels(py::module_& m) {
  m.def("pack_rows_reference", &pack_rows_f32, py::arg("x"),
        "Naive packing of the rows of a 2-D float32 array (reference kernel).");
}

}  // namespace bmx::python
