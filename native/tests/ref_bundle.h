// ref_bundle.h: the tensor bundle that tests/ref/llama_ref.py reads and
// writes: a JSON index {"meta": ..., "tensors": {name: {"shape", "offset"}}}
// plus a raw little-endian float32 .bin. Shared by the CPU parity test
// (ref_test.cpp) and the GPU one (cuda/cuda_ref_test.cpp).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace fwref {

struct Named {
  std::string name;
  std::vector<int64_t> shape;
  const float* data;
};

inline void write_bundle(const std::string& prefix, const nlohmann::json& meta, const std::vector<Named>& ts) {
  nlohmann::json idx = nlohmann::json::object();
  std::ofstream bin(prefix + ".bin", std::ios::binary);
  size_t off = 0;
  for (const Named& t : ts) {
    size_t n = 1;
    for (int64_t d : t.shape) n *= (size_t)d;
    idx[t.name] = {{"shape", t.shape}, {"offset", off}};
    bin.write((const char*)t.data, (std::streamsize)(n * sizeof(float)));
    off += n;
  }
  std::ofstream(prefix + ".json") << nlohmann::json{{"meta", meta}, {"tensors", idx}}.dump();
}

inline std::map<std::string, std::vector<float>> read_bundle(const std::string& prefix) {
  nlohmann::json j;
  std::ifstream(prefix + ".json") >> j;
  std::ifstream bin(prefix + ".bin", std::ios::binary);
  std::vector<char> raw((std::istreambuf_iterator<char>(bin)), std::istreambuf_iterator<char>());
  const float* f = (const float*)raw.data();
  std::map<std::string, std::vector<float>> out;
  for (auto& [name, t] : j["tensors"].items()) {
    size_t n = 1;
    for (auto& d : t["shape"]) n *= d.get<size_t>();
    size_t off = t["offset"].get<size_t>();
    out[name] = std::vector<float>(f + off, f + off + n);
  }
  return out;
}

// The interpreter that runs the reference: FW_REF_PYTHON, else `fallback`.
inline std::string ref_python(const char* fallback) {
  const char* p = std::getenv("FW_REF_PYTHON");
  return p && *p ? p : fallback;
}

// tests/ref/llama_ref.py: under FW_NATIVE_ROOT when set, else next to this
// header in the source tree.
inline std::string ref_script() {
  const char* root = std::getenv("FW_NATIVE_ROOT");
  if (root && *root) return std::string(root) + "/tests/ref/llama_ref.py";
  const std::string here = __FILE__;
  return here.substr(0, here.rfind('/')) + "/ref/llama_ref.py";
}

}  // namespace fwref
