// safetensors.cpp: validated reader (mmap) and streaming writer.
#include "safetensors.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common.h"

namespace fw {

using json = nlohmann::json;

// A header larger than this is not a model file (HF caps it at 100 MB too).
static const uint64_t kMaxHeaderBytes = 100ull << 20;

size_t dtype_size(StDType dt) {
  switch (dt) {
    case StDType::kF64: case StDType::kI64: return 8;
    case StDType::kF32: case StDType::kI32: return 4;
    case StDType::kF16: case StDType::kBF16: case StDType::kI16: return 2;
    case StDType::kI8: case StDType::kU8: case StDType::kBool: return 1;
  }
  return 0;
}

const char* dtype_name(StDType dt) {
  switch (dt) {
    case StDType::kF32: return "F32";
    case StDType::kF16: return "F16";
    case StDType::kBF16: return "BF16";
    case StDType::kF64: return "F64";
    case StDType::kI64: return "I64";
    case StDType::kI32: return "I32";
    case StDType::kI16: return "I16";
    case StDType::kI8: return "I8";
    case StDType::kU8: return "U8";
    case StDType::kBool: return "BOOL";
  }
  return "?";
}

static bool dtype_parse(const std::string& s, StDType* out) {
  static const std::pair<const char*, StDType> table[] = {
      {"F32", StDType::kF32}, {"F16", StDType::kF16}, {"BF16", StDType::kBF16}, {"F64", StDType::kF64},
      {"I64", StDType::kI64}, {"I32", StDType::kI32}, {"I16", StDType::kI16},   {"I8", StDType::kI8},
      {"U8", StDType::kU8},   {"BOOL", StDType::kBool}};
  for (const auto& e : table) {
    if (s == e.first) { *out = e.second; return true; }
  }
  return false;
}

int64_t StTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string st_shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// ----------------------------------------------------------------------------
// conversions

float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;  // +-0
    } else {        // subnormal: renormalise
      int e = -1;
      do { e++; mant <<= 1; } while ((mant & 0x400) == 0);
      bits = sign | (uint32_t)(127 - 15 - e) << 23 | (mant & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | mant << 13;  // inf / nan
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float bf16_to_f32(uint16_t b) {
  uint32_t bits = (uint32_t)b << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40);  // quiet nan
  uint32_t rounding = 0x7fff + ((bits >> 16) & 1);                                   // to nearest even
  return (uint16_t)((bits + rounding) >> 16);
}

// ----------------------------------------------------------------------------
// reader

SafeTensorsReader::SafeTensorsReader(const std::string& path) {
  FW_CHECK_HINT(path_exists(path), kIo, "safetensors file not found: " << path, "check the model folder path");
  file_ = MappedFile(path);
  const size_t size = file_.size();
  FW_CHECK_HINT(size >= 8, kCorrupt, path << ": file is " << size << " bytes, too short for a safetensors header",
                "the file is truncated or not a safetensors file");
  uint64_t n = 0;
  for (int i = 0; i < 8; i++) n |= (uint64_t)file_.data()[i] << (8 * i);
  FW_CHECK_HINT(n >= 2 && n <= kMaxHeaderBytes, kCorrupt, path << ": header length " << n << " is not sane",
                "the file is corrupt or not a safetensors file");
  FW_CHECK_HINT(8 + n <= size, kCorrupt, path << ": header length " << n << " runs past the end of the " << size << "-byte file",
                "the file is truncated");
  data_start_ = 8 + n;
  const uint64_t data_len = size - data_start_;

  json header;
  try {
    header = json::parse((const char*)file_.data() + 8, (const char*)file_.data() + 8 + n);
  } catch (const json::parse_error& e) {
    FW_CHECK_HINT(false, kCorrupt, path << ": header is not valid JSON: " << e.what(), "the file is corrupt");
  }
  FW_CHECK(header.is_object(), kCorrupt, path << ": header JSON is not an object");

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      FW_CHECK(v.is_object(), kCorrupt, path << ": __metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        FW_CHECK(m.value().is_string(), kCorrupt, path << ": __metadata__." << m.key() << " is not a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    FW_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"), kCorrupt,
             path << ": tensor '" << name << "' needs dtype, shape and data_offsets");
    StTensorInfo t;
    t.name = name;
    FW_CHECK(v["dtype"].is_string(), kCorrupt, path << ": tensor '" << name << "' dtype is not a string");
    std::string ds = v["dtype"].get<std::string>();
    FW_CHECK_HINT(dtype_parse(ds, &t.dtype), kUnsupported, path << ": tensor '" << name << "' has unknown dtype '" << ds << "'",
                  "supported: F32, F16, BF16 (and integer types for non-weight tensors)");
    FW_CHECK(v["shape"].is_array(), kCorrupt, path << ": tensor '" << name << "' shape is not an array");
    for (const json& d : v["shape"]) {
      FW_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0), kCorrupt,
               path << ": tensor '" << name << "' has a negative or non-integer dimension");
      uint64_t dim = d.get<uint64_t>();
      FW_CHECK(dim < (1ull << 40), kCorrupt, path << ": tensor '" << name << "' dimension " << dim << " is absurd");
      t.shape.push_back((int64_t)dim);
    }
    const json& off = v["data_offsets"];
    FW_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(), kCorrupt,
             path << ": tensor '" << name << "' data_offsets must be two non-negative integers");
    t.begin = off[0].get<uint64_t>();
    t.end = off[1].get<uint64_t>();
    FW_CHECK(t.begin <= t.end, kCorrupt, path << ": tensor '" << name << "' has begin > end");
    FW_CHECK_HINT(t.end <= data_len, kCorrupt,
                  path << ": tensor '" << name << "' bytes [" << t.begin << ", " << t.end << ") run past the data buffer of "
                       << data_len << " bytes",
                  "the file is truncated");
    // numel * size with overflow guard (dims < 2^40 each, so check stepwise)
    unsigned __int128 bytes = dtype_size(t.dtype);
    for (int64_t d : t.shape) bytes *= (unsigned __int128)d;
    FW_CHECK(bytes == (unsigned __int128)(t.end - t.begin), kCorrupt,
             path << ": tensor '" << name << "' shape " << st_shape_str(t.shape) << " x " << dtype_name(t.dtype) << " does not match its "
                  << (t.end - t.begin) << " bytes");
    tensors_.push_back(std::move(t));
  }

  // offsets must tile the buffer: sorted, no overlap, no holes
  std::vector<const StTensorInfo*> order;
  for (const StTensorInfo& t : tensors_) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const StTensorInfo* a, const StTensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t cursor = 0;
  for (const StTensorInfo* t : order) {
    FW_CHECK(t->begin >= cursor, kCorrupt, path << ": tensor '" << t->name << "' overlaps the previous tensor");
    FW_CHECK(t->begin == cursor, kCorrupt, path << ": hole in the data buffer before tensor '" << t->name << "'");
    cursor = t->end;
  }
  FW_CHECK_HINT(cursor == data_len, kCorrupt,
                path << ": data buffer is " << data_len << " bytes but tensors cover " << cursor, "the file has trailing garbage or is corrupt");
  for (size_t i = 0; i < tensors_.size(); i++) index_[tensors_[i].name] = i;
}

const StTensorInfo& SafeTensorsReader::info(const std::string& name) const {
  auto it = index_.find(name);
  FW_CHECK_HINT(it != index_.end(), kInvalidArgument, path() << ": no tensor named '" << name << "'",
                "the file was written for another architecture or naming scheme");
  return tensors_[it->second];
}

std::vector<std::string> SafeTensorsReader::names() const {
  std::vector<std::string> out;
  for (const auto& e : index_) out.push_back(e.first);
  return out;
}

void SafeTensorsReader::read_f32(const std::string& name, float* dst, const std::vector<int64_t>& expected) const {
  const StTensorInfo& t = info(name);
  if (!expected.empty()) {
    FW_CHECK_HINT(t.shape == expected, kInvalidArgument,
                  path() << ": tensor '" << name << "' has shape " << st_shape_str(t.shape) << ", the model expects " << st_shape_str(expected),
                  "config.json does not match the weights");
  }
  const uint8_t* src = file_.data() + data_start_ + t.begin;
  const int64_t n = t.numel();
  switch (t.dtype) {
    case StDType::kF32:
      std::memcpy(dst, src, (size_t)n * 4);
      break;
    case StDType::kF16:
      for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = f16_to_f32(h);
      }
      break;
    case StDType::kBF16:
      for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = bf16_to_f32(h);
      }
      break;
    default:
      FW_CHECK_HINT(false, kUnsupported, path() << ": tensor '" << name << "' is " << dtype_name(t.dtype) << ", not a float type",
                    "weights must be F32, F16 or BF16");
  }
}

std::vector<float> SafeTensorsReader::read_f32(const std::string& name, const std::vector<int64_t>& expected) const {
  std::vector<float> out((size_t)info(name).numel());
  read_f32(name, out.data(), expected);
  return out;
}

// ----------------------------------------------------------------------------
// writer

static void write_into(FileWriter& w, const std::vector<TensorView>& tensors_in, StDType dtype,
                       const std::map<std::string, std::string>& metadata) {
  FW_CHECK(dtype == StDType::kF32 || dtype == StDType::kBF16, kUnsupported, "safetensors writer stores F32 or BF16, not " << dtype_name(dtype));
  std::vector<const TensorView*> tensors;
  for (const TensorView& t : tensors_in) tensors.push_back(&t);
  std::sort(tensors.begin(), tensors.end(), [](const TensorView* a, const TensorView* b) { return a->name < b->name; });
  const size_t es = dtype_size(dtype);
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t off = 0;
  for (size_t i = 0; i < tensors.size(); i++) {
    const TensorView& t = *tensors[i];
    FW_CHECK(t.name != "__metadata__", kInvalidArgument, "a tensor cannot be named __metadata__");
    FW_CHECK(i == 0 || tensors[i - 1]->name != t.name, kInvalidArgument, "duplicate tensor name '" << t.name << "'");
    int64_t n = 1;
    for (int64_t d : t.shape) {
      FW_CHECK(d >= 0, kInvalidArgument, "tensor '" << t.name << "' has a negative dimension");
      n *= d;
    }
    header[t.name] = {{"dtype", dtype_name(dtype)}, {"shape", t.shape}, {"data_offsets", {off, off + (uint64_t)n * es}}};
    off += (uint64_t)n * es;
  }
  std::string hs = header.dump();
  while (hs.size() % 8 != 0) hs += ' ';  // keeps the buffer 8-byte aligned
  uint8_t len[8];
  for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)hs.size() >> (8 * i));
  w.write(len, 8);
  w.write(hs.data(), hs.size());
  std::vector<uint16_t> buf;
  for (const TensorView* tp : tensors) {
    int64_t n = 1;
    for (int64_t d : tp->shape) n *= d;
    if (dtype == StDType::kF32) {
      w.write(tp->data, (size_t)n * 4);
    } else {
      const int64_t chunk = 1 << 20;
      for (int64_t s = 0; s < n; s += chunk) {
        int64_t e = std::min(n, s + chunk);
        buf.resize((size_t)(e - s));
        for (int64_t i = s; i < e; i++) buf[(size_t)(i - s)] = f32_to_bf16(tp->data[i]);
        w.write(buf.data(), buf.size() * 2);
      }
    }
  }
}

void safetensors_write_durable(const std::string& path, const std::vector<TensorView>& tensors, StDType dtype,
                               const std::map<std::string, std::string>& metadata) {
  FileWriter w(path);
  write_into(w, tensors, dtype, metadata);
  w.close();
}

void safetensors_write(const std::string& path, const std::vector<TensorView>& tensors, StDType dtype,
                       const std::map<std::string, std::string>& metadata) {
  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  try {
    safetensors_write_durable(tmp, tensors, dtype, metadata);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  rename_path(tmp, path);
  size_t slash = path.find_last_of('/');
  fsync_dir(slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash)));
}

}  // namespace fw
