// infer_decode_test.cpp: the KV-cached inference path against the training
// forward, batching, sampling, and save/load of HF folders.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "hf_io.h"
#include "infer.h"
#include "io_testutil.h"
#include "model.h"
#include "train_rng.h"
#include <set>

using fwtest::TempDir;

static fw::Config tiny_config(const std::string& type, bool tied) {
  nlohmann::json j = {{"model_type", type},       {"vocab_size", 96},        {"hidden_size", 32},
                      {"intermediate_size", 48},  {"num_hidden_layers", 2},  {"num_attention_heads", 4},
                      {"num_key_value_heads", 2}, {"max_position_embeddings", 64}, {"tie_word_embeddings", tied},
                      {"rms_norm_eps", 1e-5}};
  return fw::config_from_json(j);
}

static std::unique_ptr<fw::Model> tiny_model(const std::string& type, bool tied, uint64_t seed) {
  auto m = std::make_unique<fw::Model>(tiny_config(type, tied));
  m->init_random(seed, 0.1);
  if (m->cfg.attention_bias) {  // make the biases matter
    fw::Rng rng(seed + 1);
    for (const fw::TensorInfo& t : m->layout.tensors)
      if (t.name.find("bias") != std::string::npos)
        for (size_t i = 0; i < t.numel; i++) m->params[t.offset + i] = (float)(0.1 * rng.normal());
  }
  return m;
}

static std::vector<int32_t> tokens_for(int T, int V, uint64_t seed) {
  fw::Rng rng(seed);
  std::vector<int32_t> t;
  for (int i = 0; i < T; i++) t.push_back((int32_t)(rng.next_u64() % (uint64_t)V));
  return t;
}

static float max_abs_diff(const float* a, const float* b, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; i++) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

// decode token by token after a prefill of `pre` tokens == the full forward
static void check_decode_matches_forward(const std::string& type, bool tied) {
  auto model = tiny_model(type, tied, 3);
  const int T = 20, V = model->cfg.vocab_size, pre = 7;
  auto toks = tokens_for(T, V, 9);
  model->set_training(false);
  model->forward(toks.data(), nullptr, 1, T);
  std::vector<float> full(model->logits(), model->logits() + (size_t)T * V);

  fw::InferEngine eng(*model, false);
  fw::InferCache cache;
  cache.init(model->cfg, 1, T);
  std::vector<float> got((size_t)T * V);
  std::vector<int> seq(pre, 0), pos(pre);
  for (int t = 0; t < pre; t++) pos[t] = t;
  eng.forward(toks.data(), seq.data(), pos.data(), pre, cache, got.data());
  for (int t = pre; t < T; t++) {
    int s = 0;
    eng.forward(&toks[t], &s, &t, 1, cache, got.data() + (size_t)t * V);
  }
  EXPECT_EQ(cache.len[0], T);
  float d = max_abs_diff(full.data(), got.data(), full.size());
  EXPECT_LT(d, 1e-5f) << type << " tied=" << tied;
}

TEST(infer_decode, kv_cache_decode_equals_full_forward_llama_gqa) { check_decode_matches_forward("llama", false); }
TEST(infer_decode, kv_cache_decode_equals_full_forward_qwen2_bias_tied) { check_decode_matches_forward("qwen2", true); }

TEST(infer_decode, batched_generation_equals_unbatched) {
  auto model = tiny_model("llama", false, 5);
  fw::InferEngine eng(*model, false);
  const int V = model->cfg.vocab_size;
  std::vector<std::vector<int32_t>> prompts = {tokens_for(3, V, 1), tokens_for(9, V, 2), tokens_for(5, V, 3)};
  fw::GenerateParams gp;
  gp.max_new_tokens = 8;
  gp.sampling.temperature = 0.8f;
  gp.seed = 42;
  auto batched = eng.generate(prompts, gp);
  for (size_t b = 0; b < prompts.size(); b++) {
    fw::GenerateParams one = gp;
    one.seed = gp.seed + b * 0x9e3779b97f4a7c15ull;  // the per-sequence stream generate() gives index b
    auto single = eng.generate({prompts[b]}, one);
    EXPECT_EQ(single[0].tokens, batched[b].tokens) << "prompt " << b;
    ASSERT_EQ(single[0].logprobs.size(), batched[b].logprobs.size());
    for (size_t i = 0; i < single[0].logprobs.size(); i++) EXPECT_NEAR(single[0].logprobs[i], batched[b].logprobs[i], 1e-5);
    EXPECT_EQ(batched[b].tokens.size(), 8u);
    EXPECT_EQ(batched[b].finish_reason, "length");
  }
}

TEST(infer_decode, stops_on_eos_and_reports_logprobs) {
  auto model = tiny_model("llama", false, 6);
  fw::InferEngine eng(*model, false);
  fw::GenerateParams gp;
  gp.max_new_tokens = 10;
  gp.sampling.temperature = 0.0f;
  auto g = eng.generate({{1, 2, 3}}, gp);
  ASSERT_EQ(g[0].tokens.size(), 10u);
  gp.eos_id = g[0].tokens[3];  // pretend the 4th greedy token is EOS
  auto stopped = eng.generate({{1, 2, 3}}, gp);
  size_t first = std::find(g[0].tokens.begin(), g[0].tokens.end(), gp.eos_id) - g[0].tokens.begin();
  EXPECT_EQ(stopped[0].tokens.size(), first + 1);
  EXPECT_EQ(stopped[0].finish_reason, "eos");
  for (float lp : stopped[0].logprobs) EXPECT_LE(lp, 0.0f);
}

TEST(infer_decode, sampling_is_seeded_and_top_k_top_p_restrict_support) {
  const int V = 50;
  std::vector<float> logits(V);
  for (int i = 0; i < V; i++) logits[i] = std::sin((float)i * 1.7f) * 3.0f;
  std::vector<int> order(V);
  for (int i = 0; i < V; i++) order[i] = i;
  std::sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });

  auto draw = [&](fw::SamplingParams p, uint64_t seed, int n) {
    fw::SampleRng rng(seed);
    std::vector<int> out;
    for (int i = 0; i < n; i++) out.push_back(fw::sample_token(logits.data(), V, p, rng, nullptr));
    return out;
  };
  fw::SamplingParams p;
  p.temperature = 1.0f;
  EXPECT_EQ(draw(p, 7, 200), draw(p, 7, 200));
  EXPECT_NE(draw(p, 7, 200), draw(p, 8, 200));

  p.top_k = 3;
  for (int t : draw(p, 1, 500)) EXPECT_TRUE(t == order[0] || t == order[1] || t == order[2]) << t;
  // top-p: the nucleus is the shortest sorted prefix with mass >= top_p
  p.top_k = 0;
  p.top_p = 0.5f;
  double mx = logits[order[0]], sum = 0;
  for (int i = 0; i < V; i++) sum += std::exp(logits[i] - mx);
  double cum = 0;
  int nucleus = 0;
  while (cum < 0.5) cum += std::exp(logits[order[nucleus++]] - mx) / sum;
  std::set<int> allowed(order.begin(), order.begin() + nucleus);
  std::set<int> seen;
  for (int t : draw(p, 2, 1000)) {
    EXPECT_TRUE(allowed.count(t)) << t;
    seen.insert(t);
  }
  EXPECT_GT(seen.size(), 1u);
  // greedy ignores the generator
  p.temperature = 0.0f;
  for (int t : draw(p, 3, 10)) EXPECT_EQ(t, order[0]);
  p.top_p = 1.5f;
  fwtest::expect_error([&] { p.validate(); }, fw::ErrorKind::kInvalidArgument, "top_p");
}

TEST(infer_decode, saved_and_loaded_model_gives_identical_logits) {
  TempDir d;
  auto model = tiny_model("qwen2", false, 11);
  fwtest::write_bytes(d / "tokenizer.json", "{\"model\": {}}");
  fw::model_save_hf(*model, d / "out", d / "tokenizer.json");
  auto back = fw::model_load_hf(d / "out");
  EXPECT_EQ(back->params, model->params);
  EXPECT_EQ(fwtest::read_bytes(d / "out/tokenizer.json"), "{\"model\": {}}");
  auto toks = tokens_for(12, model->cfg.vocab_size, 4);
  model->forward(toks.data(), nullptr, 1, 12);
  std::vector<float> a(model->logits(), model->logits() + 12 * model->cfg.vocab_size);
  back->forward(toks.data(), nullptr, 1, 12);
  std::vector<float> b(back->logits(), back->logits() + 12 * back->cfg.vocab_size);
  EXPECT_EQ(a, b);
  // a config that does not match the weights is refused, naming the tensor
  nlohmann::json cj = model->cfg.to_json();
  cj["intermediate_size"] = 64;
  fw::write_file_atomic(d / "out/config.json", cj.dump());
  fwtest::expect_error([&] { fw::model_load_hf(d / "out"); }, fw::ErrorKind::kInvalidArgument, "the model expects");
  fwtest::expect_error([&] { fw::model_load_hf(d / "nope"); }, fw::ErrorKind::kIo, "not found");
}

TEST(infer_decode, peft_adapter_round_trip) {
  TempDir d;
  fw::Config cfg = tiny_config("llama", false);
  fw::LoraConfig lc;
  lc.rank = 4;
  lc.alpha = 8;
  lc.target_modules = {"q_proj", "v_proj", "down_proj"};
  fw::Lora lora(cfg, lc);
  lora.init(3);
  for (size_t i = 0; i < lora.params.size(); i++) lora.params[i] += 0.001f * (float)(i % 7);
  fw::adapter_save(lora, d / "ad", "tiny-base");
  nlohmann::json j = nlohmann::json::parse(fwtest::read_bytes(d / "ad/adapter_config.json"));
  EXPECT_EQ(j["r"], 4);
  EXPECT_EQ(j["base_model_name_or_path"], "tiny-base");
  EXPECT_EQ(j["peft_type"], "LORA");
  auto back = fw::adapter_load(d / "ad", cfg);
  EXPECT_EQ(back->params, lora.params);
  EXPECT_EQ(back->cfg.target_modules, lc.target_modules);
  fw::SafeTensorsReader r(d / "ad/adapter_model.safetensors");
  EXPECT_TRUE(r.has("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"));
}

TEST(infer_decode, sharded_hf_folder_loads) {
  TempDir d;
  auto model = tiny_model("llama", true, 12);
  fw::make_dirs(d / "sh");
  fw::write_file_atomic(d / "sh/config.json", model->cfg.to_json().dump());
  // split the tensors over two files, the way HF does for large models
  std::vector<fw::TensorView> a, b;
  nlohmann::json map = nlohmann::json::object();
  for (const fw::TensorInfo& t : model->layout.tensors) {
    bool first = t.name.find("layers.1.") == std::string::npos;
    (first ? a : b).push_back({t.name, t.shape, model->params.data() + t.offset});
    map[t.name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  fw::safetensors_write(d / "sh/model-00001-of-00002.safetensors", a, fw::StDType::kBF16);
  fw::safetensors_write(d / "sh/model-00002-of-00002.safetensors", b, fw::StDType::kBF16);
  fw::write_file_atomic(d / "sh/model.safetensors.index.json", nlohmann::json{{"weight_map", map}}.dump());
  auto back = fw::model_load_hf(d / "sh");
  for (size_t i = 0; i < model->params.size(); i++) ASSERT_NEAR(back->params[i], model->params[i], std::fabs(model->params[i]) / 128 + 1e-30);
  map.erase("model.norm.weight");
  fw::write_file_atomic(d / "sh/model.safetensors.index.json", nlohmann::json{{"weight_map", map}}.dump());
  fwtest::expect_error([&] { fw::model_load_hf(d / "sh"); }, fw::ErrorKind::kInvalidArgument, "model.norm.weight");
}

TEST(infer_decode, rewinding_a_sequence_equals_a_fresh_one_and_gaps_are_refused) {
  auto model = tiny_model("llama", false, 13);
  fw::InferEngine eng(*model, false);
  const int V = model->cfg.vocab_size;
  fw::InferCache cache;
  cache.init(model->cfg, 2, 16);
  std::vector<int32_t> a = {5, 6, 7, 8, 9}, b = {5, 6, 40, 41};
  std::vector<int> seq0(5, 0), pos(5);
  for (int t = 0; t < 5; t++) pos[t] = t;
  eng.forward(a.data(), seq0.data(), pos.data(), 5, cache, std::vector<float>(5 * V).data());
  // rewind sequence 0 to position 2 and continue with b's tail; sequence 1 gets b fresh
  std::vector<float> rew(2 * V), fresh(4 * V);
  eng.forward(b.data() + 2, seq0.data(), pos.data() + 2, 2, cache, rew.data());
  EXPECT_EQ(cache.len[0], 4);
  std::vector<int> seq1(4, 1);
  eng.forward(b.data(), seq1.data(), pos.data(), 4, cache, fresh.data());
  EXPECT_LT(max_abs_diff(rew.data(), fresh.data() + 2 * V, 2 * V), 1e-5f);
  int p = 6, s = 0;
  int32_t tok = 1;
  fwtest::expect_error([&] { eng.forward(&tok, &s, &p, 1, cache, rew.data()); }, fw::ErrorKind::kInvalidArgument, "gap");
  int ps[2] = {4, 6}, ss[2] = {1, 1};
  int32_t ts[2] = {1, 2};
  fwtest::expect_error([&] { eng.forward(ts, ss, ps, 2, cache, rew.data()); }, fw::ErrorKind::kInvalidArgument, "consecutive");
  tok = V;
  fwtest::expect_error([&] { eng.forward(&tok, &s, &ps[0], 1, cache, rew.data()); }, fw::ErrorKind::kInvalidArgument, "out of range");
}

TEST(infer_decode, on_token_streams_every_token_and_can_cancel_one_sequence) {
  auto model = tiny_model("llama", false, 14);
  fw::InferEngine eng(*model, false);
  fw::GenerateParams gp;
  gp.max_new_tokens = 6;
  gp.sampling.temperature = 0.0f;
  std::vector<std::vector<int32_t>> streamed(2);
  gp.on_token = [&](int seq, int32_t tok, float) {
    streamed[seq].push_back(tok);
    return !(seq == 1 && streamed[1].size() == 2);  // cancel sequence 1 after 2 tokens
  };
  auto g = eng.generate({{1, 2, 3}, {4, 5}}, gp);
  EXPECT_EQ(streamed[0], g[0].tokens);
  EXPECT_EQ(streamed[1], g[1].tokens);
  EXPECT_EQ(g[0].tokens.size(), 6u);
  EXPECT_EQ(g[1].tokens.size(), 2u);
  EXPECT_EQ(g[1].finish_reason, "cancelled");
}
