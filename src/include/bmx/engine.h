// bmx inference engine: the public C++ API (Bethge et al., "BMXNet 2", 2019: bit-packed
// binary layers computed with xor and popcount).
//
//   #include <bmx/engine.h>
//   bmx::Model model("binarydensenet28.bmx", /*num_threads=*/1);
//   std::vector<float> logits = model.predict(image_nchw, /*batch=*/1);
//
// A path may be a const char*, a std::string or a std::filesystem::path; a model held in
// memory is loaded with bmx::Model::from_bytes(data, size, num_threads).
//
// A model file (FlatBuffers, schema src/schema/bmx_model.fbs, docs/model-format.md) is
// treated as hostile: it is verified structurally and semantically (version, indices,
// arity, shapes recomputed from the op parameters, weight sizes, value kinds, order,
// bounded sizes) and any defect raises bmx::Error naming the op. Nothing is read from
// the file after the constructor returns.
//
// Thread safety: all const methods may be called concurrently on one Model. Each
// concurrent predict() call takes its own execution context (activation buffers and
// thread pool) from a pool inside the Model, so callers never wait on each other and
// never share buffers; serial calls reuse one context and allocate nothing after the
// first call with a given batch size. set_num_threads() and set_profiling() may be called
// at any time; calls already running keep the settings they started with.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace bmx {

// Model file format versions this reader understands (Model.version in the schema): files
// of kMinFormatVersion .. kFormatVersion load. Writers record the lowest version that
// expresses a model, so a model without the newer ops stays readable by older readers.
// 2 adds BinaryDense, MeanAbsChannels, Mul (XNOR-Net scaling) and 2-D Bits values;
// 3 adds Levels values (k-bit activations), Quantize and KbitConv2D.
constexpr std::uint32_t kFormatVersion = 3;
constexpr std::uint32_t kMinFormatVersion = 1;

// Any error of the engine: a bad or unsupported model file, a bad argument.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A bad predict() argument (shape, batch size, NaN/Inf in the input): the model is fine.
class InputError : public Error {
 public:
  using Error::Error;
};

// Time spent in one kind of op during the profiled predict() calls.
struct ProfileEntry {
  std::string kind;       // "packing", "binary_conv", "float_conv", "bn_threshold",
                          // "pool", "concat", "other"
  double seconds = 0.0;   // summed over calls
  std::int64_t calls = 0; // op executions counted
};

class Model {
 public:
  // Load from a file path; throws bmx::Error (unreadable file, invalid model, null path,
  // num_threads < 1). One overload per path type, so that a string literal, a
  // std::string and a std::filesystem::path each pick exactly one of them.
  explicit Model(const char* path, int num_threads = 1);
  explicit Model(const std::string& path, int num_threads = 1);
  explicit Model(const std::filesystem::path& path, int num_threads = 1);
  // A literal nullptr (or 0) is no path: rejected at compile time.
  explicit Model(std::nullptr_t, int num_threads = 1) = delete;
  // Load from `size` bytes in memory (copied as needed; the buffer may be freed
  // afterwards). Throws bmx::Error like the path constructors.
  static Model from_bytes(const void* data, std::size_t size, int num_threads = 1);
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  ~Model();

  // Logical input shape at batch 1, NCHW: {1, C, H, W}.
  std::vector<std::int64_t> input_shape() const;
  // Output shape at batch 1 as recorded ({1, num_classes} for a classifier).
  std::vector<std::int64_t> output_shape() const;
  // Floats per sample in the input (C*H*W) and in the output.
  std::int64_t input_size() const;
  std::int64_t output_size() const;
  int num_classes() const;
  std::string producer() const;
  int num_ops() const;
  // Normalisation recorded by the converter (empty when none was recorded).
  std::vector<float> mean() const;
  std::vector<float> std() const;

  // Threads used inside each predict() call (>= 1).
  void set_num_threads(int n);
  int num_threads() const;

  // Run the network on `batch` images, NCHW float32 contiguous (batch * input_size()
  // floats); writes batch * output_size() floats (NCHW if the output is 4-D).
  // Throws bmx::InputError for batch < 1, a batch too large to allocate, or a NaN/Inf in
  // the input (reported with its index).
  void predict(const float* nchw, int batch, float* out) const;
  std::vector<float> predict(const std::vector<float>& nchw, int batch) const;

  // Optional per-op timing, summed over predict() calls while enabled.
  void set_profiling(bool on);
  bool profiling() const;
  std::vector<ProfileEntry> profile() const;              // by op kind, fixed order
  std::vector<std::pair<std::string, double>> profile_ops() const;  // "name (Type)" -> seconds
  void reset_profile();

  // Human-readable table of ops with their shapes (for debugging).
  std::string summary() const;

  struct Impl;

 private:
  struct FromBytesTag {};
  Model(FromBytesTag, const void* data, std::size_t size, int num_threads);

  std::unique_ptr<Impl> impl_;
};

// Parse and validate a model held in memory without preparing it for execution (no
// weight repacking, no buffers): the cheap pure check a fuzzer calls. Throws bmx::Error.
void validate_model(const void* data, std::size_t size);

}  // namespace bmx
