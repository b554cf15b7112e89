// Python bindings of the inference runtime (bmx::Model); bmx.engine.Model wraps them.
//
// Errors: a bad model file raises bmx._engine.ModelError (a ValueError subclass); a bad
// predict() argument raises ValueError. The GIL is released while loading and while
// predicting, so several Python threads can run one Model concurrently (each call gets
// its own execution context inside the Model).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "bmx/engine.h"
#include "python/bindings.h"
#include "runtime/limits.h"

namespace py = pybind11;

namespace bmx::python {

namespace {

std::unique_ptr<Model> load(const py::buffer& data, int num_threads) {
  py::buffer_info info = data.request();
  if (info.ndim > 1 && !py::array::ensure(data)) throw py::value_error("model bytes must be a flat buffer");
  const std::size_t size = static_cast<std::size_t>(info.size) * static_cast<std::size_t>(info.itemsize);
  const void* ptr = info.ptr;
  py::gil_scoped_release nogil;
  return std::make_unique<Model>(Model::from_bytes(ptr, size, num_threads));
}

py::array_t<float> predict(const Model& m, const py::array& x) {
  if (!py::isinstance<py::array_t<float>>(x) || x.dtype().kind() != 'f' || x.itemsize() != 4) {
    throw py::value_error("predict: input must be a float32 array, got dtype " +
                          std::string(py::str(x.dtype())));
  }
  const auto in_shape = m.input_shape();
  if (x.ndim() != 4 || x.shape(1) != in_shape[1] || x.shape(2) != in_shape[2] || x.shape(3) != in_shape[3]) {
    std::string got = "(";
    for (py::ssize_t i = 0; i < x.ndim(); ++i) got += (i ? ", " : "") + std::to_string(x.shape(i));
    got += x.ndim() == 1 ? ",)" : ")";
    throw py::value_error("predict: input must be NCHW (N, " + std::to_string(in_shape[1]) + ", " +
                          std::to_string(in_shape[2]) + ", " + std::to_string(in_shape[3]) + "), got shape " + got);
  }
  if (x.shape(0) < 1 || x.shape(0) > rt::kMaxBatch) throw py::value_error("predict: batch size must be in [1, 2^20]");
  static_assert(rt::kMaxBatch == std::int64_t{1} << 20, "the message above names the bound");
  if (!(x.flags() & py::array::c_style)) throw py::value_error("predict: input must be C-contiguous");
  const int batch = static_cast<int>(x.shape(0));
  std::vector<py::ssize_t> out_shape = {batch};
  const auto os = m.output_shape();
  for (std::size_t i = 1; i < os.size(); ++i) out_shape.push_back(static_cast<py::ssize_t>(os[i]));
  py::array_t<float> out(out_shape);
  const float* in = static_cast<const float*>(x.data());
  float* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    m.predict(in, batch, o);
  }
  return out;
}

py::dict profile(const Model& m) {
  py::dict d;
  for (const auto& e : m.profile()) d[py::str(e.kind)] = e.seconds;
  return d;
}

}  // namespace

void bind_runtime(py::module_& m) {
  // Translators registered later are tried first: InputError before its base Error.
  py::register_exception<Error>(m, "ModelError", PyExc_ValueError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const InputError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
  // The model format version this reader reads, and the bounds the loader and predict()
  // enforce (runtime/limits.h), so that Python (the converter's contract checks) uses the
  // same numbers instead of copies.
  m.attr("FORMAT_VERSION") = kFormatVersion;
  m.attr("MIN_FORMAT_VERSION") = kMinFormatVersion;
  py::dict limits;
  limits["max_dim"] = rt::kMaxDim;                // any single dimension or op parameter
  limits["max_elems"] = rt::kMaxElems;            // elements of one value at batch 1
  limits["max_total_bytes"] = rt::kMaxTotalBytes; // all values together at batch 1 (4 bytes per element)
  limits["max_window"] = rt::kMaxWindow;          // kernel, stride, pad, dilation entries
  limits["max_ops"] = rt::kMaxOps;                // ops of a model
  limits["max_values"] = rt::kMaxValues;          // values of a model
  limits["max_op_inputs"] = rt::kMaxOpInputs;     // inputs of one op
  limits["max_reduction"] = rt::kMaxReduction;    // C_in / groups * KH * KW of a conv
  limits["max_file_bytes"] = rt::kMaxFileBytes;   // a model file read from a path
  limits["max_batch"] = rt::kMaxBatch;            // images of one predict() call
  limits["max_threads"] = rt::kMaxThreads;        // num_threads of a Model
  // Read-only (types.MappingProxyType): a caller cannot change what it would not change in C++.
  m.attr("LIMITS") = py::module_::import("types").attr("MappingProxyType")(limits);

  py::class_<Model>(m, "Model", "Compiled bmx model (see bmx.engine.Model).")
      .def(py::init(&load), py::arg("data"), py::arg("num_threads") = 1)
      .def_property_readonly("input_shape",
                             [](const Model& self) { return py::tuple(py::cast(self.input_shape())); })
      .def_property_readonly("output_shape",
                             [](const Model& self) { return py::tuple(py::cast(self.output_shape())); })
      .def_property_readonly("num_classes", &Model::num_classes)
      .def_property_readonly("producer", &Model::producer)
      .def_property_readonly("num_ops", &Model::num_ops)
      .def_property_readonly("mean", &Model::mean)
      .def_property_readonly("std", &Model::std)
      .def_property("num_threads", &Model::num_threads, &Model::set_num_threads)
      .def_property("profiling", &Model::profiling, &Model::set_profiling)
      .def("predict", &predict, py::arg("x"))
      .def("profile", &profile)
      .def("profile_ops", &Model::profile_ops)
      .def("reset_profile", &Model::reset_profile)
      .def("summary", &Model::summary);
  m.def(
      "validate_model",
      [](const py::buffer& data) {
        py::buffer_info info = data.request();
        const std::size_t size = static_cast<std::size_t>(info.size) * static_cast<std::size_t>(info.itemsize);
        validate_model(info.ptr, size);
      },
      py::arg("data"), "Check a model held in memory; raises ModelError.");
}

}  // namespace bmx::python
