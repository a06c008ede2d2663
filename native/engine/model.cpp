// model.cpp: the Llama decoder, forward and backward, composed from the ops.
//
// Per layer (pre-norm, residual stream x (B, T, C)):
//   h = rmsnorm(x, ln1); q, k, v = h Wq^T(+bq), h Wk^T(+bk), h Wv^T(+bv)
//   q, k = rope(q), rope(k); a = attention(q, k, v); xmid = x + a Wo^T(+bo)
//   h2 = rmsnorm(xmid, ln2); m = silu(h2 Wg^T) * (h2 Wu^T); out = xmid + m Wd^T
// then logits = rmsnorm(x_L, norm) W_lm^T (W_lm = embed_tokens when tied).
// The backward runs the same chain in reverse; every parameter gradient is
// accumulated (+=), activation gradients are overwritten.
#include "model.h"

#include <algorithm>
#include <cmath>
#include <climits>
#include <cstring>
#include <fstream>

#include <omp.h>

#include "lora.h"
#include "ops_attention.h"
#include "ops_embedding.h"
#include "ops_linear.h"
#include "ops_loss.h"
#include "ops_rmsnorm.h"
#include "ops_rope.h"
#include "ops_swiglu.h"
#include "train_rng.h"

namespace fw {

// ---------------------------------------------------------------- config

namespace {

using nlohmann::json;

int get_int(const json& j, const char* key, int def, bool required) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    FW_CHECK(!required, kInvalidArgument, "config.json: missing required field \"" << key << "\"");
    return def;
  }
  FW_CHECK(it->is_number_integer(), kInvalidArgument,
           "config.json: field \"" << key << "\" must be an integer, got " << it->dump());
  int64_t v = it->get<int64_t>();
  FW_CHECK(v >= INT32_MIN && v <= INT32_MAX, kInvalidArgument, "config.json: field \"" << key << "\" out of range");
  return (int)v;
}

double get_num(const json& j, const char* key, double def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  FW_CHECK(it->is_number(), kInvalidArgument, "config.json: field \"" << key << "\" must be a number, got " << it->dump());
  return it->get<double>();
}

bool get_bool(const json& j, const char* key, bool def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  FW_CHECK(it->is_boolean(), kInvalidArgument, "config.json: field \"" << key << "\" must be true/false, got " << it->dump());
  return it->get<bool>();
}

// HF architecture class -> model_type.
const char* arch_model_type(const std::string& a) {
  if (a == "LlamaForCausalLM") return "llama";
  if (a == "Qwen2ForCausalLM") return "qwen2";
  if (a == "MistralForCausalLM") return "mistral";
  return nullptr;
}

const char* kSupportedHint = "supported: model_type llama (incl. SmolLM), qwen2, mistral";

}  // namespace

Config config_from_json(const json& j) {
  FW_CHECK(j.is_object(), kInvalidArgument, "config.json must be a JSON object");
  Config c;
  std::string arch_type;
  if (auto it = j.find("architectures"); it != j.end() && !it->is_null()) {
    FW_CHECK(it->is_array(), kInvalidArgument, "config.json: \"architectures\" must be a list");
    for (const json& a : *it) {
      std::string name = a.is_string() ? a.get<std::string>() : a.dump();
      const char* t = arch_model_type(name);
      FW_CHECK_HINT(t, kUnsupported, "unsupported architecture \"" << name << "\"", kSupportedHint);
      arch_type = t;
    }
  }
  if (auto it = j.find("model_type"); it != j.end() && !it->is_null()) {
    FW_CHECK(it->is_string(), kInvalidArgument, "config.json: \"model_type\" must be a string");
    c.model_type = it->get<std::string>();
  } else {
    FW_CHECK_HINT(!arch_type.empty(), kInvalidArgument, "config.json has neither model_type nor architectures",
                  kSupportedHint);
    c.model_type = arch_type;
  }
  FW_CHECK_HINT(c.model_type == "llama" || c.model_type == "qwen2" || c.model_type == "mistral", kUnsupported,
                "unsupported model_type \"" << c.model_type << "\"", kSupportedHint);
  FW_CHECK(arch_type.empty() || arch_type == c.model_type, kInvalidArgument,
           "config.json: model_type \"" << c.model_type << "\" contradicts architectures (" << arch_type << ")");
  if (auto it = j.find("hidden_act"); it != j.end() && !it->is_null())
    FW_CHECK(it->is_string() && it->get<std::string>() == "silu", kUnsupported,
             "hidden_act " << it->dump() << " not supported (only silu)");
  if (auto it = j.find("rope_scaling"); it != j.end() && !it->is_null())
    FW_CHECK_HINT(false, kUnsupported, "rope_scaling " << it->dump() << " is not supported",
                  "only plain RoPE (rope_scaling null) is implemented");
  FW_CHECK(!get_bool(j, "use_sliding_window", false), kUnsupported, "qwen2 use_sliding_window=true is not supported");
  c.vocab_size = get_int(j, "vocab_size", 0, true);
  c.hidden_size = get_int(j, "hidden_size", 0, true);
  c.intermediate_size = get_int(j, "intermediate_size", 0, true);
  c.num_hidden_layers = get_int(j, "num_hidden_layers", 0, true);
  c.num_attention_heads = get_int(j, "num_attention_heads", 0, true);
  c.num_key_value_heads = get_int(j, "num_key_value_heads", c.num_attention_heads, false);
  c.head_dim = get_int(j, "head_dim", c.num_attention_heads > 0 ? c.hidden_size / c.num_attention_heads : 0, false);
  c.rope_theta = get_num(j, "rope_theta", 10000.0);
  c.rms_norm_eps = get_num(j, "rms_norm_eps", 1e-6);
  c.max_position_embeddings = get_int(j, "max_position_embeddings", 2048, false);
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", false);
  if (c.model_type == "qwen2") {
    // Qwen2 hard-wires biases on q/k/v (none on o_proj).
    c.attention_bias = true;
    c.o_proj_bias = false;
  } else {
    c.attention_bias = get_bool(j, "attention_bias", false);
    c.o_proj_bias = c.model_type == "llama" && c.attention_bias;
  }
  if (c.model_type == "mistral") c.sliding_window = get_int(j, "sliding_window", 0, false);
  c.bos_token_id = get_int(j, "bos_token_id", -1, false);
  if (auto it = j.find("eos_token_id"); it != j.end() && it->is_array() && !it->empty() && (*it)[0].is_number_integer())
    c.eos_token_id = (*it)[0].get<int>();
  else
    c.eos_token_id = get_int(j, "eos_token_id", -1, false);
  c.validate();
  return c;
}

Config config_from_file(const std::string& path) {
  std::ifstream f(path);
  FW_CHECK_HINT(f.good(), kIo, "cannot open config file " << path, "check the model directory holds config.json");
  json j;
  try {
    f >> j;
  } catch (const json::exception& e) {
    FW_CHECK(false, kCorrupt, "config file " << path << " is not valid JSON: " << e.what());
  }
  return config_from_json(j);
}

void Config::validate() const {
  FW_CHECK(vocab_size > 0 && hidden_size > 0 && intermediate_size > 0 && num_hidden_layers > 0 &&
               num_attention_heads > 0 && num_key_value_heads > 0 && head_dim > 0 && max_position_embeddings > 0,
           kInvalidArgument,
           "config: sizes must be positive (vocab " << vocab_size << ", hidden " << hidden_size << ", intermediate "
                                                    << intermediate_size << ", layers " << num_hidden_layers
                                                    << ", heads " << num_attention_heads << "/" << num_key_value_heads
                                                    << ", head_dim " << head_dim << ")");
  FW_CHECK(num_attention_heads % num_key_value_heads == 0, kInvalidArgument,
           "config: num_attention_heads " << num_attention_heads << " not a multiple of num_key_value_heads "
                                          << num_key_value_heads);
  FW_CHECK(head_dim % 2 == 0, kInvalidArgument, "config: head_dim " << head_dim << " must be even (RoPE)");
  FW_CHECK(rope_theta > 0 && rms_norm_eps > 0, kInvalidArgument, "config: rope_theta and rms_norm_eps must be > 0");
}

nlohmann::json Config::to_json() const {
  const char* arch = model_type == "qwen2" ? "Qwen2ForCausalLM"
                     : model_type == "mistral" ? "MistralForCausalLM"
                                               : "LlamaForCausalLM";
  nlohmann::json j = {{"architectures", {arch}},
                      {"model_type", model_type},
                      {"vocab_size", vocab_size},
                      {"hidden_size", hidden_size},
                      {"intermediate_size", intermediate_size},
                      {"num_hidden_layers", num_hidden_layers},
                      {"num_attention_heads", num_attention_heads},
                      {"num_key_value_heads", num_key_value_heads},
                      {"head_dim", head_dim},
                      {"hidden_act", "silu"},
                      {"rope_theta", rope_theta},
                      {"rms_norm_eps", rms_norm_eps},
                      {"max_position_embeddings", max_position_embeddings},
                      {"tie_word_embeddings", tie_word_embeddings},
                      {"torch_dtype", "float32"}};
  if (model_type != "qwen2") j["attention_bias"] = attention_bias;
  if (model_type == "mistral" && sliding_window > 0) j["sliding_window"] = sliding_window;
  if (bos_token_id >= 0) j["bos_token_id"] = bos_token_id;
  if (eos_token_id >= 0) j["eos_token_id"] = eos_token_id;
  return j;
}

// ---------------------------------------------------------------- layout

void ParamLayout::add(const std::string& name, std::vector<int64_t> shape, bool decay) {
  FW_CHECK(!index.count(name), kInternal, "duplicate tensor name " << name);
  TensorInfo t;
  t.name = name;
  t.numel = 1;
  for (int64_t d : shape) t.numel *= (size_t)d;
  t.shape = std::move(shape);
  t.offset = numel;
  t.decay = decay;
  numel += (t.numel + 15) / 16 * 16;  // next tensor 64-byte aligned
  index[name] = tensors.size();
  tensors.push_back(std::move(t));
}

const TensorInfo* ParamLayout::find(const std::string& name) const {
  auto it = index.find(name);
  return it == index.end() ? nullptr : &tensors[it->second];
}

const TensorInfo& ParamLayout::at(const std::string& name) const {
  const TensorInfo* t = find(name);
  FW_CHECK(t, kInvalidArgument, "no tensor named \"" << name << "\"");
  return *t;
}

size_t ParamLayout::count_params() const {
  size_t n = 0;
  for (const TensorInfo& t : tensors) n += t.numel;
  return n;
}

ParamLayout llama_param_layout(const Config& c) {
  ParamLayout p;
  int64_t V = c.vocab_size, C = c.hidden_size, I = c.intermediate_size;
  int64_t QD = (int64_t)c.num_attention_heads * c.head_dim, KD = (int64_t)c.num_key_value_heads * c.head_dim;
  p.add("model.embed_tokens.weight", {V, C}, true);
  for (int l = 0; l < c.num_hidden_layers; l++) {
    std::string pre = "model.layers." + std::to_string(l) + ".";
    p.add(pre + "input_layernorm.weight", {C}, false);
    p.add(pre + "self_attn.q_proj.weight", {QD, C}, true);
    if (c.attention_bias) p.add(pre + "self_attn.q_proj.bias", {QD}, false);
    p.add(pre + "self_attn.k_proj.weight", {KD, C}, true);
    if (c.attention_bias) p.add(pre + "self_attn.k_proj.bias", {KD}, false);
    p.add(pre + "self_attn.v_proj.weight", {KD, C}, true);
    if (c.attention_bias) p.add(pre + "self_attn.v_proj.bias", {KD}, false);
    p.add(pre + "self_attn.o_proj.weight", {C, QD}, true);
    if (c.o_proj_bias) p.add(pre + "self_attn.o_proj.bias", {C}, false);
    p.add(pre + "post_attention_layernorm.weight", {C}, false);
    p.add(pre + "mlp.gate_proj.weight", {I, C}, true);
    p.add(pre + "mlp.up_proj.weight", {I, C}, true);
    p.add(pre + "mlp.down_proj.weight", {C, I}, true);
  }
  p.add("model.norm.weight", {C}, false);
  if (!c.tie_word_embeddings) p.add("lm_head.weight", {V, C}, true);
  return p;
}

// ---------------------------------------------------------------- activations

// One layer's saved activations, carved out of a slot of slot_size_ elements.
// N = B*T, QD = NH*HS, KD = KVH*HS.
template <typename T>
struct LayerActs {
  T* ln1;    // (N, C)   input_layernorm output
  T* rstd1;  // (N)
  T* q;      // (N, QD)  post-RoPE
  T* k;      // (N, KD)  post-RoPE
  T* v;      // (N, KD)
  T* att;    // (B, NH, T, T) softmax probabilities
  T* atty;   // (N, QD)  attention output before o_proj
  T* xmid;   // (N, C)   residual after the attention block
  T* ln2;    // (N, C)
  T* rstd2;  // (N)
  T* gate;   // (N, I)
  T* up;     // (N, I)
  T* h;      // (N, I)   silu(gate) * up
};

template <typename T>
static size_t layer_acts_carve(const Config& c, int B, int T_, T* base, LayerActs<T>* a) {
  size_t N = (size_t)B * T_, C = c.hidden_size, I = c.intermediate_size;
  size_t QD = (size_t)c.num_attention_heads * c.head_dim, KD = (size_t)c.num_key_value_heads * c.head_dim;
  size_t sizes[13] = {N * C, N, N * QD, N * KD, N * KD, (size_t)B * c.num_attention_heads * T_ * T_, N * QD,
                      N * C, N * C, N, N * I, N * I, N * I};
  T** ptrs[13];
  if (a) {
    T** p[13] = {&a->ln1, &a->rstd1, &a->q, &a->k, &a->v, &a->att, &a->atty,
                 &a->xmid, &a->ln2, &a->rstd2, &a->gate, &a->up, &a->h};
    std::copy(p, p + 13, ptrs);
  }
  size_t off = 0;
  for (int i = 0; i < 13; i++) {
    if (a) *ptrs[i] = base + off;
    off += (sizes[i] + 15) / 16 * 16;  // keep every array 64-byte aligned
  }
  return off;
}

// ---------------------------------------------------------------- model

template <typename T>
ModelT<T>::ModelT(const Config& c) : cfg(c) {
  cfg.validate();
  layout = llama_param_layout(cfg);
  params.assign(layout.numel, T(0));
  rope_cos_.resize((size_t)cfg.max_position_embeddings * (cfg.head_dim / 2));
  rope_sin_.resize(rope_cos_.size());
  rope_tables(rope_cos_.data(), rope_sin_.data(), cfg.max_position_embeddings, cfg.head_dim, cfg.rope_theta);
}

template <typename T>
void ModelT<T>::init_random(uint64_t seed, double init_std) {
  Rng rng(seed);
  for (const TensorInfo& t : layout.tensors) {
    T* p = params.data() + t.offset;
    bool is_norm = t.name.find("norm") != std::string::npos;
    bool is_bias = t.name.size() > 5 && t.name.compare(t.name.size() - 5, 5, ".bias") == 0;
    for (size_t i = 0; i < t.numel; i++) p[i] = is_norm ? T(1) : is_bias ? T(0) : T(rng.normal() * init_std);
  }
}

template <typename T>
void ModelT<T>::enable_grads() {
  grads.assign(layout.numel, T(0));
}

template <typename T>
void ModelT<T>::zero_grad() {
  std::fill(grads.begin(), grads.end(), T(0));
  if (lora_) lora_->zero_grad();
}

template <typename T>
LayerParams<T> ModelT<T>::layer_ptrs(T* base, int l) {
  return layer_param_ptrs(layout, base, l);
}

template <typename T>
void ModelT<T>::ensure_acts(int B, int T_) {
  if (B == B_ && T_ == Tlen_ && acts_recompute_ == recompute_ && !slots_.empty()) return;
  const Config& c = cfg;
  size_t N = (size_t)B * T_, C = c.hidden_size, I = c.intermediate_size;
  size_t QD = (size_t)c.num_attention_heads * c.head_dim, KD = (size_t)c.num_key_value_heads * c.head_dim;
  slot_size_ = layer_acts_carve<T>(c, B, T_, nullptr, nullptr);
  int nslots = recompute_ ? 1 : c.num_hidden_layers;
  // Release before resizing so the old and new buffers never coexist.
  std::vector<T>().swap(slots_);
  slots_.assign(slot_size_ * nslots, T(0));
  resid_.assign(N * C * (c.num_hidden_layers + 1), T(0));
  final_.assign(N * C + 3 * N, T(0));
  logits_.assign(N * c.vocab_size, T(0));
  // Backward scratch: dh, dgate, dup (N, I); dln (N, C); datty, dq (N, QD);
  // dk, dv (N, KD); dP (T, T); then dres (N, C), the residual gradient.
  scratch_.assign(3 * N * I + N * C + 2 * N * QD + 2 * N * KD + (size_t)T_ * T_ + N * C, T(0));
  tokens_.assign(N, 0);
  targets_.assign(N, kIgnoreIndex);
  B_ = B;
  Tlen_ = T_;
  acts_recompute_ = recompute_;
}

template <typename T>
T* ModelT<T>::slot(int l) {
  return slots_.data() + (recompute_ ? 0 : (size_t)l * slot_size_);
}

template <typename T>
T* ModelT<T>::resid(int l) {
  return resid_.data() + (size_t)l * B_ * Tlen_ * cfg.hidden_size;
}

template <typename T>
size_t ModelT<T>::activation_bytes() const {
  return sizeof(T) * (slots_.size() + resid_.size() + final_.size() + logits_.size() + scratch_.size());
}

template <typename T>
uint64_t ModelT<T>::dropout_key() const {
  if (!lora_ || !training_) return 0;
  return lora_step_dropout_key(lora_->cfg, dropout_step_);
}

template <typename T>
void ModelT<T>::lin_forward(int l, int m, T* out, const T* inp, const T* w, const T* b, int N, int IC, int OC) {
  linear_forward(out, inp, w, b, N, IC, OC);
  if (lora_ && lora_->targets(l, m)) lora_->forward(l, m, out, inp, N, IC, OC, dropout_key());
}

template <typename T>
void ModelT<T>::lin_backward(int l, int m, T* dinp, T* dw, T* db, const T* dout, const T* inp, const T* w, int N,
                             int IC, int OC, bool accumulate) {
  linear_backward(dinp, dw, db, dout, inp, w, N, IC, OC, accumulate);
  if (lora_ && lora_->targets(l, m)) lora_->backward(l, m, dinp, dout, inp, N, IC, OC, dropout_key());
}

void check_batch(const Config& cfg, const int32_t* tokens, const int32_t* targets, int B, int T_) {
  FW_CHECK(B > 0 && T_ > 0, kInvalidArgument, "batch shape must be positive, got B=" << B << " T=" << T_);
  FW_CHECK_HINT(T_ <= cfg.max_position_embeddings, kInvalidArgument,
                "sequence length " << T_ << " exceeds max_position_embeddings " << cfg.max_position_embeddings,
                "use a shorter seq_len");
  FW_CHECK(cfg.sliding_window <= 0 || T_ <= cfg.sliding_window, kUnsupported,
           "sequence length " << T_ << " exceeds the sliding window " << cfg.sliding_window);
  size_t N = (size_t)B * T_;
  for (size_t i = 0; i < N; i++) {
    FW_CHECK(tokens[i] >= 0 && tokens[i] < cfg.vocab_size, kInvalidArgument,
             "token id " << tokens[i] << " at index " << i << " outside [0, " << cfg.vocab_size << ")");
    if (targets)
      FW_CHECK(targets[i] == kIgnoreIndex || (targets[i] >= 0 && targets[i] < cfg.vocab_size), kInvalidArgument,
               "target id " << targets[i] << " at index " << i << " outside [0, " << cfg.vocab_size
                            << ") and not -100");
  }
}

template <typename T>
void ModelT<T>::check_tokens(const int32_t* tokens, const int32_t* targets, int B, int T_) const {
  check_batch(cfg, tokens, targets, B, T_);
}

// Forward of layer l from resid(l) into resid(l+1), saving activations in s.
template <typename T>
void ModelT<T>::layer_forward(int l, int B, int T_, T* s) {
  const Config& c = cfg;
  int N = B * T_, C = c.hidden_size, I = c.intermediate_size, NH = c.num_attention_heads,
      KVH = c.num_key_value_heads, HS = c.head_dim, QD = NH * HS, KD = KVH * HS;
  LayerActs<T> a;
  layer_acts_carve(c, B, T_, s, &a);
  LayerParams<T> p = layer_params(l);
  const T* x = resid(l);
  T* out = resid(l + 1);
  rmsnorm_forward(a.ln1, a.rstd1, x, p.ln1, N, C, c.rms_norm_eps);
  lin_forward(l, 0, a.q, a.ln1, p.wq, p.bq, N, C, QD);
  lin_forward(l, 1, a.k, a.ln1, p.wk, p.bk, N, C, KD);
  lin_forward(l, 2, a.v, a.ln1, p.wv, p.bv, N, C, KD);
  rope_forward(a.q, rope_cos_.data(), rope_sin_.data(), B, T_, NH, HS, 0);
  rope_forward(a.k, rope_cos_.data(), rope_sin_.data(), B, T_, KVH, HS, 0);
  attention_forward(a.atty, a.att, a.q, a.k, a.v, B, T_, NH, KVH, HS);
  lin_forward(l, 3, a.xmid, a.atty, p.wo, p.bo, N, QD, C);
  size_t NC = (size_t)N * C;
  #pragma omp parallel for
  for (long i = 0; i < (long)NC; i++) a.xmid[i] += x[i];  // residual
  rmsnorm_forward(a.ln2, a.rstd2, a.xmid, p.ln2, N, C, c.rms_norm_eps);
  lin_forward(l, 4, a.gate, a.ln2, p.wgate, nullptr, N, C, I);
  lin_forward(l, 5, a.up, a.ln2, p.wup, nullptr, N, C, I);
  swiglu_forward(a.h, a.gate, a.up, (size_t)N * I);
  lin_forward(l, 6, out, a.h, p.wdown, nullptr, N, I, C);
  #pragma omp parallel for
  for (long i = 0; i < (long)NC; i++) out[i] += a.xmid[i];  // residual
}

// dx (N, C): gradient w.r.t. layer l's output on entry, w.r.t. its input on exit.
template <typename T>
void ModelT<T>::layer_backward(int l, int B, int T_, T* dx, T* s) {
  const Config& c = cfg;
  int N = B * T_, C = c.hidden_size, I = c.intermediate_size, NH = c.num_attention_heads,
      KVH = c.num_key_value_heads, HS = c.head_dim, QD = NH * HS, KD = KVH * HS;
  LayerActs<T> a;
  layer_acts_carve(c, B, T_, s, &a);
  LayerParams<T> p = layer_params(l);
  LayerParams<T> g = layer_ptrs(has_grads() ? grads.data() : nullptr, l);
  const T* x = resid(l);
  size_t n = N;
  T* dh = scratch_.data();     // (N, I)
  T* dgate = dh + n * I;       // (N, I)
  T* dup = dgate + n * I;      // (N, I)
  T* dln = dup + n * I;        // (N, C)
  T* datty = dln + n * C;      // (N, QD)
  T* dq = datty + n * QD;      // (N, QD)
  T* dk = dq + n * QD;         // (N, KD)
  T* dv = dk + n * KD;         // (N, KD)
  T* dP = dv + n * KD;         // (T, T)
  // MLP block: out = xmid + down(silu(gate(ln2)) * up(ln2)); dx flows to xmid unchanged.
  lin_backward(l, 6, dh, g.wdown, nullptr, dx, a.h, p.wdown, N, I, C, false);
  swiglu_backward(dgate, dup, dh, a.gate, a.up, n * I);
  lin_backward(l, 4, dln, g.wgate, nullptr, dgate, a.ln2, p.wgate, N, C, I, false);
  lin_backward(l, 5, dln, g.wup, nullptr, dup, a.ln2, p.wup, N, C, I, true);
  rmsnorm_backward(dx, g.ln2, dln, a.xmid, p.ln2, a.rstd2, N, C);  // dx is now d xmid
  // Attention block: xmid = x + o_proj(attention(rope(q), rope(k), v)).
  lin_backward(l, 3, datty, g.wo, g.bo, dx, a.atty, p.wo, N, QD, C, false);
  attention_backward(dq, dk, dv, dP, datty, a.att, a.q, a.k, a.v, B, T_, NH, KVH, HS);
  rope_backward(dq, rope_cos_.data(), rope_sin_.data(), B, T_, NH, HS, 0);
  rope_backward(dk, rope_cos_.data(), rope_sin_.data(), B, T_, KVH, HS, 0);
  lin_backward(l, 0, dln, g.wq, g.bq, dq, a.ln1, p.wq, N, C, QD, false);
  lin_backward(l, 1, dln, g.wk, g.bk, dk, a.ln1, p.wk, N, C, KD, true);
  lin_backward(l, 2, dln, g.wv, g.bv, dv, a.ln1, p.wv, N, C, KD, true);
  rmsnorm_backward(dx, g.ln1, dln, x, p.ln1, a.rstd1, N, C);  // dx is now d x
}

template <typename T>
T ModelT<T>::forward(const int32_t* tokens, const int32_t* targets, int B, int T_, double loss_normalizer) {
  check_tokens(tokens, targets, B, T_);
  ensure_acts(B, T_);
  const Config& c = cfg;
  int N = B * T_, C = c.hidden_size, V = c.vocab_size, L = c.num_hidden_layers;
  std::copy(tokens, tokens + N, tokens_.begin());
  embedding_forward(resid(0), tokens, param("model.embed_tokens.weight"), N, C);
  for (int l = 0; l < L; l++) layer_forward(l, B, T_, slot(l));
  T* lnf = final_.data();         // (N, C)
  T* rstdf = lnf + (size_t)N * C; // (N)
  T* losses = rstdf + N;          // (N)
  T* lse = losses + N;            // (N)
  rmsnorm_forward(lnf, rstdf, resid(L), param("model.norm.weight"), N, C, c.rms_norm_eps);
  const T* wlm = param(c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
  linear_forward(logits_.data(), lnf, wlm, (const T*)nullptr, N, C, V);
  logits_valid_ = true;
  have_targets_ = targets != nullptr;
  n_targets_ = 0;
  if (!targets) return T(0);
  std::copy(targets, targets + N, targets_.begin());
  crossentropy_forward(losses, lse, logits_.data(), targets, N, V);
  double sum = 0;  // serial sum in double: deterministic and accurate
  for (int i = 0; i < N; i++) {
    sum += losses[i];
    n_targets_ += targets[i] != kIgnoreIndex;
  }
  normalizer_ = loss_normalizer > 0 ? loss_normalizer : (double)std::max<int64_t>(n_targets_, 1);
  return T(sum / normalizer_);
}

template <typename T>
void ModelT<T>::backward(const T* d_logits_override) {
  FW_CHECK(logits_valid_, kInvalidArgument, "backward() needs a forward() first (and only one backward per forward)");
  FW_CHECK(have_targets_ || d_logits_override, kInvalidArgument, "backward() after a forward() without targets");
  FW_CHECK(acts_recompute_ == recompute_, kInvalidArgument,
           "set_recompute() changed between forward() and backward(); run forward() again");
  const Config& c = cfg;
  int B = B_, T_ = Tlen_, N = B * T_, C = c.hidden_size, V = c.vocab_size, L = c.num_hidden_layers;
  T* lnf = final_.data();
  T* rstdf = lnf + (size_t)N * C;
  T* lse = rstdf + 2 * (size_t)N;
  const T* dlogits = d_logits_override;
  if (!dlogits) {
    // In place: logits_ becomes dlogits (N, V).
    crossentropy_backward(logits_.data(), logits_.data(), lse, targets_.data(), N, V, T(1.0 / normalizer_));
    dlogits = logits_.data();
  }
  logits_valid_ = false;
  bool tied = c.tie_word_embeddings;
  const char* lm_name = tied ? "model.embed_tokens.weight" : "lm_head.weight";
  T* dx = scratch_.data() + 3 * (size_t)N * c.intermediate_size;  // dln slot as temp for dlnf
  // dx here is a temporary (N, C); the residual gradient lives in dres, at
  // the end of scratch_ (after the per-layer arrays).
  T* dres = scratch_.data() + scratch_.size() - (size_t)N * C;
  std::fill(dres, dres + (size_t)N * C, T(0));
  linear_backward(dx, has_grads() ? grad(lm_name) : (T*)nullptr, (T*)nullptr, dlogits, lnf, param(lm_name), N, C,
                  V, false);
  rmsnorm_backward(dres, has_grads() ? grad("model.norm.weight") : (T*)nullptr, dx, resid(L),
                   param("model.norm.weight"), rstdf, N, C);
  for (int l = L - 1; l >= 0; l--) {
    // Recomputation reruns the identical forward (same inputs, same thread
    // count, same dropout keys) so the activations are bit-identical.
    if (recompute_) layer_forward(l, B, T_, slot(l));
    layer_backward(l, B, T_, dres, slot(l));
  }
  if (has_grads()) embedding_backward(grad("model.embed_tokens.weight"), dres, tokens_.data(), N, C);
}

template <typename T>
void ModelT<T>::forward_cached(const int32_t* tokens, int B, int T_, KVCacheT<T>& cache, T* logits_out,
                               bool all_logits) {
  const Config& c = cfg;
  int pos0 = cache.len;
  FW_CHECK(cache.L == c.num_hidden_layers && cache.KVH == c.num_key_value_heads && cache.HS == c.head_dim &&
               cache.B == B,
           kInvalidArgument, "KV cache shape does not match the model / batch (init it with this config and B)");
  FW_CHECK_HINT(pos0 + T_ <= cache.S, kInvalidArgument,
                "KV cache full: " << pos0 << " + " << T_ << " positions > capacity " << cache.S,
                "init the cache with a larger capacity");
  FW_CHECK(pos0 + T_ <= c.max_position_embeddings, kInvalidArgument,
           "position " << pos0 + T_ << " exceeds max_position_embeddings " << c.max_position_embeddings);
  check_tokens(tokens, nullptr, B, T_);
  int N = B * T_, C = c.hidden_size, I = c.intermediate_size, V = c.vocab_size, NH = c.num_attention_heads,
      KVH = c.num_key_value_heads, HS = c.head_dim, QD = NH * HS, KD = KVH * HS, G = NH / KVH, Tk = pos0 + T_;
  size_t n = N;
  dec_.resize(3 * n * C + n + 2 * n * QD + 2 * n * KD + 3 * n * I + (size_t)omp_get_max_threads() * T_ * Tk +
              (size_t)B * C);
  T* x = dec_.data();       // (N, C) residual
  T* h = x + n * C;         // (N, C) normed
  T* y = h + n * C;         // (N, C) block output
  T* rstd = y + n * C;      // (N)
  T* q = rstd + n;          // (N, QD)
  T* atty = q + n * QD;     // (N, QD)
  T* k = atty + n * QD;     // (N, KD)
  T* v = k + n * KD;        // (N, KD)
  T* gate = v + n * KD;     // (N, I)
  T* up = gate + n * I;     // (N, I)
  T* act = up + n * I;      // (N, I)
  T* P = act + n * I;       // (threads, T, Tk)
  T* last = P + (size_t)omp_get_max_threads() * T_ * Tk;  // (B, C)
  bool was_training = training_;
  training_ = false;  // no dropout while decoding
  embedding_forward(x, tokens, param("model.embed_tokens.weight"), N, C);
  for (int l = 0; l < c.num_hidden_layers; l++) {
    LayerParams<T> p = layer_params(l);
    rmsnorm_forward(h, rstd, x, p.ln1, N, C, c.rms_norm_eps);
    lin_forward(l, 0, q, h, p.wq, p.bq, N, C, QD);
    lin_forward(l, 1, k, h, p.wk, p.bk, N, C, KD);
    lin_forward(l, 2, v, h, p.wv, p.bv, N, C, KD);
    rope_forward(q, rope_cos_.data(), rope_sin_.data(), B, T_, NH, HS, pos0);
    rope_forward(k, rope_cos_.data(), rope_sin_.data(), B, T_, KVH, HS, pos0);
    // Append the new keys/values: cache (b, kvh) is (S, HS).
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T_; t++)
        for (int kh = 0; kh < KVH; kh++) {
          size_t src = ((size_t)b * T_ + t) * KD + (size_t)kh * HS;
          std::memcpy(cache.k_at(l, b, kh) + (size_t)(pos0 + t) * HS, k + src, sizeof(T) * HS);
          std::memcpy(cache.v_at(l, b, kh) + (size_t)(pos0 + t) * HS, v + src, sizeof(T) * HS);
        }
    // One head per iteration, each thread with its own (T, Tk) score buffer.
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
      for (int hd = 0; hd < NH; hd++) {
        size_t qo = (size_t)b * T_ * QD + (size_t)hd * HS;
        T* Pt = P + (size_t)omp_get_thread_num() * T_ * Tk;
        attention_head_forward(atty + qo, QD, Pt, q + qo, QD, cache.k_at(l, b, hd / G), HS, cache.v_at(l, b, hd / G),
                               HS, T_, Tk, HS, pos0);
      }
    lin_forward(l, 3, y, atty, p.wo, p.bo, N, QD, C);
    for (size_t i = 0; i < n * C; i++) x[i] += y[i];
    rmsnorm_forward(h, rstd, x, p.ln2, N, C, c.rms_norm_eps);
    lin_forward(l, 4, gate, h, p.wgate, nullptr, N, C, I);
    lin_forward(l, 5, up, h, p.wup, nullptr, N, C, I);
    swiglu_forward(act, gate, up, n * I);
    lin_forward(l, 6, y, act, p.wdown, nullptr, N, I, C);
    for (size_t i = 0; i < n * C; i++) x[i] += y[i];
  }
  training_ = was_training;
  const T* wlm = param(c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
  if (all_logits) {
    rmsnorm_forward(h, rstd, x, param("model.norm.weight"), N, C, c.rms_norm_eps);
    linear_forward(logits_out, h, wlm, (const T*)nullptr, N, C, V);
  } else {
    for (int b = 0; b < B; b++)
      std::memcpy(last + (size_t)b * C, x + ((size_t)b * T_ + T_ - 1) * C, sizeof(T) * C);
    rmsnorm_forward(h, rstd, last, param("model.norm.weight"), B, C, c.rms_norm_eps);
    linear_forward(logits_out, h, wlm, (const T*)nullptr, B, C, V);
  }
  cache.len += T_;
}

template <typename T>
void KVCacheT<T>::init(const Config& c, int batch, int capacity) {
  FW_CHECK(batch > 0 && capacity > 0, kInvalidArgument, "KV cache needs batch > 0 and capacity > 0");
  L = c.num_hidden_layers;
  B = batch;
  KVH = c.num_key_value_heads;
  S = capacity;
  HS = c.head_dim;
  len = 0;
  size_t n = (size_t)L * B * KVH * S * HS;
  k.assign(n, T(0));
  v.assign(n, T(0));
}

template class ModelT<float>;
template class ModelT<double>;
template struct KVCacheT<float>;
template struct KVCacheT<double>;

}  // namespace fw
