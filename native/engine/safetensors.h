// safetensors.h: read and write the Hugging Face safetensors format.
//
// Layout: u64 little-endian header length N, N bytes of JSON
// {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
//  "__metadata__": {"k": "v"}}, then the byte buffer (offsets are relative to
// its start). The reader maps the file and validates everything before any
// tensor is handed out: header length sane, JSON an object, dtype known,
// offsets inside the buffer, non-overlapping, covering it without holes,
// shape product x element size == byte size. F32, F16 and BF16 load as fp32;
// the writer stores F32 (or BF16 to halve the size). Errors are fw::Error:
// kIo (missing), kCorrupt (truncated / malformed), kUnsupported (dtype),
// kInvalidArgument (a shape that differs from what the caller expects).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "fileio.h"

namespace fw {

// dtypes the reader recognises; only the float ones convert to fp32.
enum class StDType { kF32, kF16, kBF16, kF64, kI64, kI32, kI16, kI8, kU8, kBool };

// size in bytes of one element of `dt`
size_t dtype_size(StDType dt);
const char* dtype_name(StDType dt);

struct StTensorInfo {
  std::string name;
  StDType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range within the data buffer
  int64_t numel() const;
};

std::string st_shape_str(const std::vector<int64_t>& shape);

// An opened, validated safetensors file (memory-mapped).
class SafeTensorsReader {
 public:
  explicit SafeTensorsReader(const std::string& path);

  const std::string& path() const { return file_.path(); }
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  const StTensorInfo& info(const std::string& name) const;  // kInvalidArgument when missing
  std::vector<std::string> names() const;                 // sorted
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Converts tensor `name` to fp32 into dst (numel floats). When `expected` is
  // not empty the stored shape must equal it, else kInvalidArgument.
  void read_f32(const std::string& name, float* dst, const std::vector<int64_t>& expected = {}) const;
  std::vector<float> read_f32(const std::string& name, const std::vector<int64_t>& expected = {}) const;

 private:
  MappedFile file_;
  uint64_t data_start_ = 0;
  std::vector<StTensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// One tensor to write: a view of fp32 data the caller keeps alive.
struct TensorView {
  std::string name;
  std::vector<int64_t> shape;
  const float* data;
};

// Writes a safetensors file atomically (temp + fsync + rename). dtype is kF32
// or kBF16 (rounded to nearest even). Tensors are stored in name order.
void safetensors_write(const std::string& path, const std::vector<TensorView>& tensors, StDType dtype = StDType::kF32,
                       const std::map<std::string, std::string>& metadata = {});
// Same, but plain durable write without the rename (for files inside a
// directory that is itself renamed into place, e.g. checkpoints).
void safetensors_write_durable(const std::string& path, const std::vector<TensorView>& tensors, StDType dtype = StDType::kF32,
                               const std::map<std::string, std::string>& metadata = {});

// fp16 / bf16 <-> fp32 conversions (exposed for tests and for quantisation).
float f16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t b);
uint16_t f32_to_bf16(float f);

}  // namespace fw
