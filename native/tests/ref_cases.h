// ref_cases.h: the small models the PyTorch parity tests run (ref_test.cpp
// on the CPU, cuda/cuda_ref_test.cpp on the GPU): their configs and the
// initialisation that exercises every gradient path.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "model.h"
#include "train_rng.h"

namespace fwref {

// Llama, GQA 4/2, q/k/v/o biases, untied lm_head.
inline nlohmann::json base_cfg() {
  return {{"model_type", "llama"}, {"vocab_size", 64}, {"hidden_size", 32}, {"intermediate_size", 48},
          {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"head_dim", 8},
          {"rope_theta", 500.0}, {"rms_norm_eps", 1e-5}, {"max_position_embeddings", 64},
          {"tie_word_embeddings", false}, {"attention_bias", true}};
}

// Qwen2, MQA 4/1, q/k/v biases (no o_proj bias), tied lm_head.
inline nlohmann::json qwen2_cfg() {
  nlohmann::json c = base_cfg();
  c["model_type"] = "qwen2";
  c["num_key_value_heads"] = 1;
  c["tie_word_embeddings"] = true;
  c.erase("attention_bias");
  c["rope_theta"] = 1000000.0;
  return c;
}

// normal(0, 0.1) matrices, norm weights away from 1 and non-zero biases, so
// every gradient path carries signal.
inline void randomize(fw::Model& m, uint64_t seed) {
  m.init_random(seed, 0.1);
  for (const fw::TensorInfo& t : m.layout.tensors)
    if (t.name.find("norm") != std::string::npos || t.name.find(".bias") != std::string::npos) {
      fw::Rng r(seed + t.offset);
      for (size_t i = 0; i < t.numel; i++) m.params[t.offset + i] += (float)(r.normal() * 0.1);
    }
}

}  // namespace fwref
