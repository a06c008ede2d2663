// engine_test_util.h: helpers shared by the engine's tests (model/ops/train).
//
// Finite differences run on the double-precision instantiation of the ops and
// the model (ModelT<double>): central differences with h = 1e-6 have a
// truncation error around 1e-12, so analytic and numeric gradients must agree
// to ~1e-7 relative, far tighter than any float check could.
#pragma once

#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "model.h"
#include "train_rng.h"

namespace fwtest {

inline std::vector<double> randn(size_t n, uint64_t seed, double scale = 1.0) {
  fw::Rng r(seed);
  std::vector<double> v(n);
  for (double& x : v) x = r.normal() * scale;
  return v;
}

// Compare an analytic gradient with central differences of f() w.r.t. x.
// Checks every element (or every `stride`-th one for big tensors).
inline void expect_grad_matches(const char* what, double* x, size_t n, const double* analytic,
                                const std::function<double()>& f, double rtol = 1e-6, size_t stride = 1) {
  const double h = 1e-6;
  double max_err = 0, max_abs = 0;
  for (size_t i = 0; i < n; i += stride) {
    double keep = x[i];
    x[i] = keep + h;
    double fp = f();
    x[i] = keep - h;
    double fm = f();
    x[i] = keep;
    double num = (fp - fm) / (2 * h);
    max_err = std::max(max_err, std::fabs(num - analytic[i]));
    max_abs = std::max(max_abs, std::fabs(num));
  }
  double rel = max_err / std::max(max_abs, 1e-12);
  EXPECT_LE(rel, rtol) << what << ": max |analytic - numeric| = " << max_err << " (scale " << max_abs << ")";
  EXPECT_GT(max_abs, 0.0) << what << ": gradient is identically zero, the check would be vacuous";
}

// A tiny config exercising GQA, explicit head_dim != C/NH, q/k/v/o biases and
// untied embeddings (tied = true flips the last).
inline fw::Config tiny_config(bool tied = false, bool bias = true) {
  nlohmann::json j = {{"model_type", "llama"},
                      {"vocab_size", 11},
                      {"hidden_size", 8},
                      {"intermediate_size", 12},
                      {"num_hidden_layers", 2},
                      {"num_attention_heads", 4},
                      {"num_key_value_heads", 2},
                      {"head_dim", 4},
                      {"rope_theta", 10000.0},
                      {"rms_norm_eps", 1e-5},
                      {"max_position_embeddings", 64},
                      {"tie_word_embeddings", tied},
                      {"attention_bias", bias}};
  return fw::config_from_json(j);
}

inline void random_batch(std::vector<int32_t>& tok, std::vector<int32_t>& tgt, int B, int T, int V, uint64_t seed,
                         bool mask_prefix = true) {
  fw::Rng r(seed);
  tok.resize((size_t)B * T);
  tgt.resize((size_t)B * T);
  for (auto& t : tok) t = (int32_t)(r.next_u64() % V);
  for (auto& t : tgt) t = (int32_t)(r.next_u64() % V);
  if (mask_prefix)
    for (int b = 0; b < B; b++) tgt[(size_t)b * T] = fw::kIgnoreIndex;  // a masked "prompt" token
}

}  // namespace fwtest
