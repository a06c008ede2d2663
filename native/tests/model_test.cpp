// model_test.cpp: the whole model's gradients by finite differences (double),
// config parsing, KV-cache decode and bad-input errors.
#include <cstring>
#include <vector>

#include "engine_test_util.h"
#include "lora.h"

using fwtest::expect_grad_matches;

namespace {

// Loss and analytic gradients of a double model on a fixed batch, then a
// finite-difference check of every parameter tensor.
void check_model_grads(fw::ModelT<double>& m, fw::LoraT<double>* lora, int B, int T) {
  std::vector<int32_t> tok, tgt;
  fwtest::random_batch(tok, tgt, B, T, m.cfg.vocab_size, 99);
  auto f = [&] { return m.forward(tok.data(), tgt.data(), B, T); };
  m.zero_grad();
  f();
  m.backward();
  if (lora) {
    for (const fw::TensorInfo& t : lora->layout.tensors)
      expect_grad_matches(t.name.c_str(), lora->params.data() + t.offset, t.numel, lora->grads.data() + t.offset, f);
  } else {
    for (const fw::TensorInfo& t : m.layout.tensors)
      expect_grad_matches(t.name.c_str(), m.params.data() + t.offset, t.numel, m.grads.data() + t.offset, f);
  }
}

}  // namespace

TEST(model, gradients_match_finite_differences_gqa_bias_untied) {
  fw::ModelT<double> m(fwtest::tiny_config(false, true));
  m.init_random(1, 0.3);  // large init so every path carries signal
  // Non-trivial norm weights and biases too.
  for (const auto& t : m.layout.tensors)
    if (t.name.find("norm") != std::string::npos || t.name.find("bias") != std::string::npos) {
      auto r = fwtest::randn(t.numel, t.offset + 7, 0.3);
      for (size_t i = 0; i < t.numel; i++) m.params[t.offset + i] += r[i];
    }
  m.enable_grads();
  check_model_grads(m, nullptr, 2, 5);
}

TEST(model, gradients_match_finite_differences_tied_no_bias) {
  fw::ModelT<double> m(fwtest::tiny_config(true, false));
  m.init_random(2, 0.3);
  m.enable_grads();
  EXPECT_EQ(m.layout.find("lm_head.weight"), nullptr);
  check_model_grads(m, nullptr, 2, 4);
}

TEST(model, gradients_match_finite_differences_with_recompute) {
  fw::ModelT<double> m(fwtest::tiny_config(false, true));
  m.init_random(3, 0.3);
  m.enable_grads();
  m.set_recompute(true);
  check_model_grads(m, nullptr, 1, 6);
}

TEST(model, lora_gradients_match_finite_differences_with_dropout) {
  fw::ModelT<double> m(fwtest::tiny_config(false, true));
  m.init_random(4, 0.3);
  fw::LoraConfig lc;
  lc.rank = 2;
  lc.alpha = 4;
  lc.dropout = 0.25;  // masks are a function of (seed, step): stable under perturbation
  lc.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  fw::LoraT<double> lora(m.cfg, lc);
  lora.init(5);
  auto r = fwtest::randn(lora.params.size(), 6, 0.3);  // B != 0 so dA is non-zero
  for (size_t i = 0; i < r.size(); i++) lora.params[i] += r[i];
  m.set_lora(&lora);
  check_model_grads(m, &lora, 2, 4);
  EXPECT_FALSE(m.has_grads()) << "base stays frozen: no gradient buffer";
}

TEST(model, forward_cached_matches_full_forward) {
  fw::Model m(fwtest::tiny_config(false, true));
  m.init_random(7, 0.2);
  int B = 2, T = 7, V = m.cfg.vocab_size;
  std::vector<int32_t> tok, tgt;
  fwtest::random_batch(tok, tgt, B, T, V, 8);
  m.forward(tok.data(), nullptr, B, T);
  std::vector<float> full(m.logits(), m.logits() + (size_t)B * T * V);
  fw::KVCache cache;
  cache.init(m.cfg, B, 16);
  // Prefill 4 positions (all logits), then decode the rest one at a time.
  int P = 4;
  std::vector<int32_t> pre(B * P);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < P; t++) pre[b * P + t] = tok[b * T + t];
  std::vector<float> lp((size_t)B * P * V), ls((size_t)B * V);
  m.forward_cached(pre.data(), B, P, cache, lp.data(), true);
  double max_diff = 0;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < P; t++)
      for (int v = 0; v < V; v++)
        max_diff = std::max(max_diff, (double)std::fabs(lp[((size_t)b * P + t) * V + v] - full[((size_t)b * T + t) * V + v]));
  for (int t = P; t < T; t++) {
    int32_t step_tok[2] = {tok[t], tok[T + t]};
    m.forward_cached(step_tok, B, 1, cache, ls.data());
    for (int b = 0; b < B; b++)
      for (int v = 0; v < V; v++)
        max_diff = std::max(max_diff, (double)std::fabs(ls[(size_t)b * V + v] - full[((size_t)b * T + t) * V + v]));
  }
  EXPECT_EQ(cache.len, T);
  EXPECT_LT(max_diff, 1e-5);
  int32_t one[2] = {0, 0};
  fw::KVCache small;
  small.init(m.cfg, B, 1);
  m.forward_cached(one, B, 1, small, ls.data());
  EXPECT_THROW(m.forward_cached(one, B, 1, small, ls.data()), fw::Error) << "full cache must be refused";
}

TEST(model, config_parses_hf_json_and_refuses_unknown_architectures) {
  nlohmann::json j = {{"architectures", {"Qwen2ForCausalLM"}}, {"model_type", "qwen2"}, {"vocab_size", 100},
                      {"hidden_size", 64}, {"intermediate_size", 128}, {"num_hidden_layers", 2},
                      {"num_attention_heads", 8}, {"num_key_value_heads", 2}, {"rope_theta", 1000000.0},
                      {"rms_norm_eps", 1e-6}, {"tie_word_embeddings", true}, {"hidden_act", "silu"},
                      {"eos_token_id", 5}, {"rope_scaling", nullptr}};
  fw::Config c = fw::config_from_json(j);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_FALSE(c.o_proj_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.eos_token_id, 5);
  fw::ParamLayout lay = fw::llama_param_layout(c);
  EXPECT_EQ(lay.at("model.layers.1.self_attn.k_proj.weight").shape, (std::vector<int64_t>{16, 64}));
  EXPECT_EQ(lay.at("model.layers.1.self_attn.k_proj.bias").shape, (std::vector<int64_t>{16}));
  EXPECT_EQ(lay.find("model.layers.1.self_attn.o_proj.bias"), nullptr);
  EXPECT_EQ(lay.find("lm_head.weight"), nullptr);
  // Round trip.
  fw::Config c2 = fw::config_from_json(c.to_json());
  EXPECT_EQ(c2.to_json(), c.to_json());

  auto expect_kind = [](nlohmann::json bad, fw::ErrorKind kind, const char* needle) {
    try {
      fw::config_from_json(bad);
      ADD_FAILURE() << "accepted " << bad.dump();
    } catch (const fw::Error& e) {
      EXPECT_EQ((int)e.kind(), (int)kind) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  nlohmann::json g = j;
  g["model_type"] = "gpt2";
  g.erase("architectures");
  expect_kind(g, fw::ErrorKind::kUnsupported, "gpt2");
  g = j;
  g["architectures"] = {"GPTNeoXForCausalLM"};
  expect_kind(g, fw::ErrorKind::kUnsupported, "GPTNeoXForCausalLM");
  g = j;
  g["num_key_value_heads"] = 3;
  expect_kind(g, fw::ErrorKind::kInvalidArgument, "num_key_value_heads");
  g = j;
  g.erase("hidden_size");
  expect_kind(g, fw::ErrorKind::kInvalidArgument, "hidden_size");
  g = j;
  g["vocab_size"] = "100";
  expect_kind(g, fw::ErrorKind::kInvalidArgument, "vocab_size");
  g = j;
  g["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  expect_kind(g, fw::ErrorKind::kUnsupported, "rope_scaling");
  EXPECT_THROW(fw::config_from_file("/nonexistent/config.json"), fw::Error);
}

TEST(model, rejects_bad_tokens_without_touching_state) {
  fw::Model m(fwtest::tiny_config());
  m.init_random(9);
  std::vector<float> before = m.params;
  std::vector<int32_t> tok = {1, 2, 11}, tgt = {1, 2, 3};
  EXPECT_THROW(m.forward(tok.data(), tgt.data(), 1, 3), fw::Error);
  tok = {1, 2, 3};
  tgt = {1, -5, 3};
  EXPECT_THROW(m.forward(tok.data(), tgt.data(), 1, 3), fw::Error);
  std::vector<int32_t> longtok(65, 1);
  EXPECT_THROW(m.forward(longtok.data(), nullptr, 1, 65), fw::Error) << "beyond max_position_embeddings";
  EXPECT_EQ(before, m.params);
  EXPECT_THROW(m.backward(), fw::Error) << "backward without forward";
}
