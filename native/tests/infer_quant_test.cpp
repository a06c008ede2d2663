// infer_quant_test.cpp: INT8 weight-only quantisation: the kernel against a
// double-precision reference, and the perplexity cost on a small trained model.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "infer.h"
#include "io_testutil.h"
#include "model.h"
#include "quant.h"
#include "train_rng.h"

TEST(infer_quant, q8_matmul_matches_dequantised_reference) {
  const int OC = 37, IC = 70;  // odd sizes exercise the tails
  fw::Rng rng(1);
  std::vector<float> w((size_t)OC * IC), bias(OC);
  for (float& x : w) x = (float)rng.normal();
  for (float& x : bias) x = (float)rng.normal();
  fw::QuantMatrix q = fw::quantize_q8(w.data(), OC, IC);
  std::vector<float> dq = fw::dequantize_q8(q);
  for (int o = 0; o < OC; o++) {
    float amax = 0;
    for (int i = 0; i < IC; i++) amax = std::max(amax, std::fabs(w[(size_t)o * IC + i]));
    for (int i = 0; i < IC; i++) EXPECT_LE(std::fabs(dq[(size_t)o * IC + i] - w[(size_t)o * IC + i]), amax / 254.0f * 1.0001f);
  }
  for (int N : {1, 3, 4, 9}) {
    std::vector<float> x((size_t)N * IC), out((size_t)N * OC);
    for (float& v : x) v = (float)rng.normal();
    fw::matmul_q8(out.data(), x.data(), q, bias.data(), N);
    for (int n = 0; n < N; n++)
      for (int o = 0; o < OC; o++) {
        double ref = bias[o];
        for (int i = 0; i < IC; i++) ref += (double)x[(size_t)n * IC + i] * dq[(size_t)o * IC + i];
        EXPECT_NEAR(out[(size_t)n * OC + o], ref, 1e-4 * (1 + std::fabs(ref))) << "N=" << N;
      }
  }
  std::printf("avx2 kernels: %s\n", fw::quant_has_avx2() ? "yes" : "no");
}

// Text from a noisy deterministic process: the model can learn most of it.
static std::vector<int32_t> synthetic_tokens(int n, int V, uint64_t seed) {
  fw::Rng rng(seed);
  std::vector<int32_t> t;
  int32_t prev = 1;
  for (int i = 0; i < n; i++) {
    int32_t next = (prev * 7 + 3) % V;
    if (rng.uniform() < 0.1) next = (int32_t)(rng.next_u64() % (uint64_t)V);
    t.push_back(next);
    prev = next;
  }
  return t;
}

TEST(infer_quant, int8_perplexity_cost_on_a_trained_model_is_small) {
  nlohmann::json j = {{"model_type", "llama"},     {"vocab_size", 64},       {"hidden_size", 64},
                      {"intermediate_size", 128},  {"num_hidden_layers", 2}, {"num_attention_heads", 4},
                      {"num_key_value_heads", 2},  {"max_position_embeddings", 64}};
  fw::Model model(fw::config_from_json(j));
  model.init_random(7, 0.02);
  model.enable_grads();
  const int B = 8, T = 32, V = 64, steps = 60;
  auto train = synthetic_tokens(200000, V, 1);
  auto val = synthetic_tokens(T * 40, V, 2);
  // plain Adam (the optimizer proper lives in optim.h; this test only needs a trained model)
  std::vector<float> m(model.params.size(), 0.0f), v(model.params.size(), 0.0f);
  std::vector<int32_t> in((size_t)B * T), tg((size_t)B * T);
  fw::Rng rng(3);
  float loss = 0;
  for (int s = 1; s <= steps; s++) {
    for (int b = 0; b < B; b++) {
      size_t off = rng.next_u64() % (train.size() - T - 1);
      for (int t = 0; t < T; t++) {
        in[(size_t)b * T + t] = train[off + t];
        tg[(size_t)b * T + t] = train[off + t + 1];
      }
    }
    model.zero_grad();
    loss = model.forward(in.data(), tg.data(), B, T);
    model.backward();
    const float lr = 1e-2f, b1 = 0.9f, b2 = 0.99f;
    const float c1 = 1 - std::pow(b1, (float)s), c2 = 1 - std::pow(b2, (float)s);
    for (size_t i = 0; i < model.params.size(); i++) {
      float g = model.grads[i];
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      model.params[i] -= lr * (m[i] / c1) / (std::sqrt(v[i] / c2) + 1e-8f);
    }
  }
  fw::InferEngine f32(model, false), q8(model, true);
  double ppl32 = std::exp(f32.mean_nll(val, T)), ppl8 = std::exp(q8.mean_nll(val, T));
  std::printf("final train loss %.3f; val ppl fp32 %.4f int8 %.4f (%+.3f%%); weights %zu -> %zu bytes\n", loss, ppl32, ppl8,
              100.0 * (ppl8 / ppl32 - 1), f32.weight_bytes(), q8.weight_bytes());
  EXPECT_LT(ppl32, 16.0) << "the model did not learn (uniform is 64)";
  EXPECT_LT(ppl8 / ppl32, 1.02);
  EXPECT_LT(q8.weight_bytes() * 3, f32.weight_bytes());
}
