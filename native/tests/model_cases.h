// model_cases.h: the small models of the CUDA model's parity test
// (cuda/cuda_model_test.cpp) and how it draws their weights and batches,
// shared with the bundle writer ref/parity_bundles.cpp so that
// ref/cuda_model_twin.py can run exactly the test's instances on the CPU.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model.h"
#include "train_rng.h"

namespace fwcases {

struct ModelCase {
  const char* name;
  nlohmann::json cfg;
  int B, T;
};

inline std::vector<ModelCase> cases() {
  auto base = [](const char* type, int V, int C, int I, int L, int NH, int KVH, int HS, bool tied, bool bias) {
    nlohmann::json j = {{"model_type", type},
                        {"vocab_size", V},
                        {"hidden_size", C},
                        {"intermediate_size", I},
                        {"num_hidden_layers", L},
                        {"num_attention_heads", NH},
                        {"num_key_value_heads", KVH},
                        {"head_dim", HS},
                        {"rope_theta", 10000.0},
                        {"rms_norm_eps", 1e-5},
                        {"max_position_embeddings", 256},
                        {"tie_word_embeddings", tied}};
    if (std::string(type) == "llama") j["attention_bias"] = bias;
    return j;
  };
  return {
      {"llama gqa tied", base("llama", 97, 48, 80, 2, 4, 2, 12, true, false), 2, 19},
      {"llama bias untied", base("llama", 64, 32, 64, 2, 2, 2, 16, false, true), 3, 8},
      {"qwen2 gqa", base("qwen2", 80, 64, 96, 2, 4, 1, 16, false, false), 2, 33},
      {"llama hs64", base("llama", 128, 128, 256, 2, 2, 1, 64, true, false), 2, 70},
      {"llama hs128", base("llama", 96, 256, 384, 1, 2, 2, 128, false, false), 1, 131},
  };
}

inline void batch(std::vector<int32_t>& tok, std::vector<int32_t>& tgt, int B, int T, int V, uint64_t seed) {
  fw::Rng r(seed);
  tok.resize((size_t)B * T);
  tgt.resize((size_t)B * T);
  for (auto& t : tok) t = (int32_t)(r.next_u64() % V);
  for (auto& t : tgt) t = (int32_t)(r.next_u64() % V);
  for (int b = 0; b < B; b++) tgt[(size_t)b * T] = fw::kIgnoreIndex;  // a masked prompt token
}

// Weights N(0, init_std) (fw::Model::init_random), then the norm weights
// perturbed by N(0, 0.1) so their gradients are not all alike; fp32, before
// any rounding to the GPU's storage type.
inline void init_case_model(fw::Model& m, uint64_t seed, double init_std) {
  m.init_random(seed, init_std);
  fw::Rng r(seed + 1);
  for (const fw::TensorInfo& t : m.layout.tensors)
    if (t.name.find("norm") != std::string::npos)
      for (size_t i = 0; i < t.numel; i++) m.params[t.offset + i] += (float)(0.1 * r.normal());
}

}  // namespace fwcases
