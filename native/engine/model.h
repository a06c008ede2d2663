// model.h: a Llama-family decoder (llama, qwen2, mistral, smollm) on the CPU.
//
// The model is templated on its float type: ModelT<float> (alias Model) is what
// the worker trains and serves; ModelT<double> exists so the tests can check
// every gradient with finite differences in double precision. Both run the
// same code (the ops in ops_*.h are templates instantiated for float and double).
//
// Parameters. Every parameter is a named tensor with its Hugging Face name and
// shape, e.g. "model.layers.0.self_attn.q_proj.weight" (NH*HS, C): (out, in) as
// HF stores Linear weights. All of them live in ONE contiguous buffer
// (ModelT::params) in the order of ParamLayout::tensors; the gradients (grads)
// and the AdamW moments (optim.h) use the very same layout, so a checkpoint or
// a safetensors file can be read and written tensor by tensor by name:
//
//   const TensorInfo* t = model.layout.find("model.norm.weight");
//   float* w = model.params.data() + t->offset;    // t->numel floats, t->shape
//
// Dimension names used in shape comments everywhere in the engine:
//   B batch, T sequence (time), C hidden_size, I intermediate_size,
//   V vocab_size, L num_hidden_layers, NH attention heads, KVH key/value heads
//   (NH % KVH == 0; NH/KVH query heads share one kv head: GQA), HS head_dim.
//
// Forward/backward for training:
//   T loss = model.forward(tokens, targets, B, T);  // targets -100 = ignored
//   model.zero_grad(); model.backward();            // grads += d loss / d params
// backward() accumulates (+=) into grads so gradient accumulation is a loop;
// zero_grad() clears them. Loss is the mean cross-entropy over the targets that
// are not -100 (HF semantics); forward() with loss_normalizer > 0 divides the
// summed loss by that count instead (train.h uses it to make k micro-batches
// exactly equal one big batch).
//
// Incremental decode (for infer.cpp): forward_cached() runs T new tokens per
// sequence starting at absolute position pos0 against a caller-owned KVCacheT,
// appends their k/v to it and writes logits. Prefill = one call with pos0 = 0
// and the whole prompt, then one call per generated token with T = 1. It keeps
// no state for backward. The building blocks are public too (ops_*.h) for a
// decode path with quantised weights.
//
// Thread-safety: a ModelT owns scratch activations, so one thread per model at
// a time (forward_cached included).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "common.h"

namespace fw {

// The target index that marks a masked (prompt / padding) position.
constexpr int32_t kIgnoreIndex = -100;

// Architecture hyper-parameters, read from a Hugging Face config.json.
struct Config {
  std::string model_type = "llama";  // llama | qwen2 | mistral
  int vocab_size = 0;                // V
  int hidden_size = 0;               // C
  int intermediate_size = 0;         // I
  int num_hidden_layers = 0;         // L
  int num_attention_heads = 0;       // NH
  int num_key_value_heads = 0;       // KVH (defaults to NH when absent)
  int head_dim = 0;                  // HS (defaults to C / NH when absent)
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-6;
  int max_position_embeddings = 2048;
  bool tie_word_embeddings = false;  // lm_head shares model.embed_tokens.weight
  bool attention_bias = false;       // q/k/v projections have a bias
  bool o_proj_bias = false;          // o_proj has a bias (llama with attention_bias)
  int bos_token_id = -1;             // informational, -1 when absent
  int eos_token_id = -1;             // informational (first one if a list)
  int sliding_window = 0;            // mistral: positions must stay below it (0 = none)

  // Throws fw::Error(kInvalidArgument) on a bad value, kUnsupported on an
  // architecture or feature the engine does not implement (rope_scaling,
  // hidden_act other than silu, unknown model_type/architectures).
  void validate() const;
  // The config.json fields this engine understands (round-trips through parse).
  nlohmann::json to_json() const;
};

// Parse a HF config.json object / file. Accepted model_type: llama, qwen2,
// mistral (SmolLM checkpoints are model_type llama). qwen2 always has q/k/v
// biases and no o_proj bias; llama's attention_bias puts a bias on q,k,v and o.
Config config_from_json(const nlohmann::json& j);
Config config_from_file(const std::string& path);

// One named tensor inside a flat buffer.
struct TensorInfo {
  std::string name;            // HF name, e.g. "model.layers.3.mlp.up_proj.weight"
  std::vector<int64_t> shape;  // HF shape, row-major, e.g. {I, C}
  size_t offset = 0;           // in elements from the start of the buffer
  size_t numel = 0;
  bool decay = true;           // AdamW weight decay applies (false: norms, biases)
};

// Name -> tensor table for one flat buffer. Offsets are 16-element aligned
// (64 bytes for float) so every tensor starts on a cache line.
struct ParamLayout {
  std::vector<TensorInfo> tensors;                 // in buffer order
  std::unordered_map<std::string, size_t> index;   // name -> position in tensors
  size_t numel = 0;                                // buffer size in elements (with padding)

  void add(const std::string& name, std::vector<int64_t> shape, bool decay);
  const TensorInfo* find(const std::string& name) const;  // nullptr if absent
  const TensorInfo& at(const std::string& name) const;    // throws kInvalidArgument
  size_t count_params() const;                            // sum of numel, no padding
};

// The Llama parameter layout for a config, in this order: embed_tokens; per
// layer: input_layernorm, q/k/v/o_proj (+biases), post_attention_layernorm,
// gate/up/down_proj; model.norm; lm_head (unless tied).
ParamLayout llama_param_layout(const Config& cfg);

// Pointers to one layer's parameters (or gradients) inside a flat buffer.
// Bias pointers are nullptr when the config has no such bias.
template <typename T>
struct LayerParams {
  T* ln1;    // (C)            input_layernorm.weight
  T* wq;     // (NH*HS, C)     self_attn.q_proj.weight
  T* bq;     // (NH*HS)        self_attn.q_proj.bias
  T* wk;     // (KVH*HS, C)
  T* bk;     // (KVH*HS)
  T* wv;     // (KVH*HS, C)
  T* bv;     // (KVH*HS)
  T* wo;     // (C, NH*HS)     self_attn.o_proj.weight
  T* bo;     // (C)
  T* ln2;    // (C)            post_attention_layernorm.weight
  T* wgate;  // (I, C)         mlp.gate_proj.weight
  T* wup;    // (I, C)         mlp.up_proj.weight
  T* wdown;  // (C, I)         mlp.down_proj.weight
};

// Pointers to layer l's tensors inside a flat buffer laid out by `layout`
// (parameters or gradients, CPU or GPU memory); all nullptr when base is.
template <typename T>
LayerParams<T> layer_param_ptrs(const ParamLayout& layout, T* base, int l) {
  LayerParams<T> p{};
  if (!base) return p;
  const std::string pre = "model.layers." + std::to_string(l) + ".";
  auto at = [&](const char* n) { return base + layout.at(pre + n).offset; };
  auto opt = [&](const char* n) {
    const TensorInfo* t = layout.find(pre + n);
    return t ? base + t->offset : nullptr;
  };
  p.ln1 = at("input_layernorm.weight");
  p.wq = at("self_attn.q_proj.weight");
  p.bq = opt("self_attn.q_proj.bias");
  p.wk = at("self_attn.k_proj.weight");
  p.bk = opt("self_attn.k_proj.bias");
  p.wv = at("self_attn.v_proj.weight");
  p.bv = opt("self_attn.v_proj.bias");
  p.wo = at("self_attn.o_proj.weight");
  p.bo = opt("self_attn.o_proj.bias");
  p.ln2 = at("post_attention_layernorm.weight");
  p.wgate = at("mlp.gate_proj.weight");
  p.wup = at("mlp.up_proj.weight");
  p.wdown = at("mlp.down_proj.weight");
  return p;
}

// The checks forward() makes on a batch (tokens, targets: (B, T) host ids,
// targets may be nullptr): a positive shape, T within max_position_embeddings
// (kInvalidArgument) and the sliding window (kUnsupported), every id in
// [0, V) and every target in [0, V) or -100 (kInvalidArgument). Shared by
// the CPU and CUDA models.
void check_batch(const Config& cfg, const int32_t* tokens, const int32_t* targets, int B, int T);

// Caller-owned key/value cache for forward_cached(). k and v are
// (L, B, KVH, S, HS) with S = capacity (max positions); positions [0, len)
// are filled. Post-RoPE keys are stored.
template <typename T>
struct KVCacheT {
  int L = 0, B = 0, KVH = 0, S = 0, HS = 0;
  int len = 0;              // positions filled so far (same for every sequence)
  std::vector<T> k, v;      // (L, B, KVH, S, HS)
  void init(const Config& cfg, int batch, int capacity);
  void reset() { len = 0; }
  T* k_at(int l, int b, int h) { return k.data() + ((((size_t)l * B + b) * KVH + h) * S) * HS; }
  T* v_at(int l, int b, int h) { return v.data() + ((((size_t)l * B + b) * KVH + h) * S) * HS; }
};

template <typename T>
struct LoraT;  // lora.h

template <typename T>
class ModelT {
 public:
  // Allocates zeroed parameters; no gradients until enable_grads().
  explicit ModelT(const Config& cfg);

  Config cfg;
  ParamLayout layout;
  std::vector<T> params;  // (layout.numel)
  std::vector<T> grads;   // (layout.numel) when full fine-tuning, else empty (frozen base)

  // HF-style init: normal(0, init_std) for every matrix, 1 for norm weights,
  // 0 for biases; deterministic for a seed (train_rng.h).
  void init_random(uint64_t seed, double init_std = 0.02);
  // Allocate (zeroed) grads: the base weights are trained. Without it, backward
  // still propagates through the base weights (for LoRA) but stores no dW.
  void enable_grads();
  bool has_grads() const { return !grads.empty(); }
  void zero_grad();

  // Attach LoRA adapters (nullptr detaches). The model does not own them.
  void set_lora(LoraT<T>* lora) { lora_ = lora; }
  LoraT<T>* lora() const { return lora_; }

  // Activation recomputation (gradient checkpointing per layer): forward keeps
  // only each layer's input; backward recomputes one layer at a time.
  void set_recompute(bool on) { recompute_ = on; }
  bool recompute() const { return recompute_; }
  // Step counter used to key LoRA dropout masks (train.h advances it).
  void set_dropout_step(uint64_t step) { dropout_step_ = step; }
  // Training mode: LoRA dropout active. Off for eval / decode.
  void set_training(bool on) { training_ = on; }

  LayerParams<T> layer_params(int l) { return layer_ptrs(params.data(), l); }
  LayerParams<T> layer_grads(int l) { return layer_ptrs(grads.data(), l); }
  T* param(const std::string& name) { return params.data() + layout.at(name).offset; }
  T* grad(const std::string& name) { return grads.data() + layout.at(name).offset; }

  // tokens, targets: (B, T) row-major, targets may be nullptr (no loss).
  // Returns the loss (0 when targets == nullptr). Token ids are checked
  // against V (kInvalidArgument); T <= max_position_embeddings.
  // loss_normalizer: divide the summed token losses by this (>0) instead of
  // this batch's count of non-ignored targets.
  T forward(const int32_t* tokens, const int32_t* targets, int B, int T_, double loss_normalizer = 0);
  // d loss / d everything for the last forward() (which must have had
  // targets). Accumulates into grads (if enabled) and the LoRA grads.
  // d_logits_override: when non-null, (B, T, V) gradient of the loss w.r.t.
  // the logits supplied by the caller (distill.h) instead of the CE one.
  void backward(const T* d_logits_override = nullptr);

  // (B, T, V) logits of the last forward(). Invalidated by backward() (the
  // buffer is reused for dlogits).
  const T* logits() const { return logits_.data(); }
  // Number of non-ignored targets in the last forward().
  int64_t last_target_count() const { return n_targets_; }

  // Incremental decode: tokens (B, T) at positions pos0..pos0+T-1, requires
  // pos0 == cache.len and pos0 + T <= cache.S. Writes logits (B, T, V) when
  // all_logits else (B, V) for the last position; advances cache.len by T.
  void forward_cached(const int32_t* tokens, int B, int T_, KVCacheT<T>& cache, T* logits_out,
                      bool all_logits = false);

  // Bytes of activation memory the last forward() allocated (recompute saves).
  size_t activation_bytes() const;

 private:
  LayerParams<T> layer_ptrs(T* base, int l);
  void ensure_acts(int B, int T_);
  T* slot(int l);      // activation slot of layer l (slot 0 for all when recomputing)
  T* resid(int l);     // (B, T, C) input of layer l; resid(L) = last layer's output
  void layer_forward(int l, int B, int T_, T* slot);
  void layer_backward(int l, int B, int T_, T* dx, T* slot);
  void lin_forward(int l, int m, T* out, const T* inp, const T* w, const T* b, int N, int IC, int OC);
  void lin_backward(int l, int m, T* dinp, T* dw, T* db, const T* dout, const T* inp, const T* w, int N, int IC,
                    int OC, bool accumulate);
  uint64_t dropout_key() const;
  void check_tokens(const int32_t* tokens, const int32_t* targets, int B, int T_) const;

  LoraT<T>* lora_ = nullptr;
  bool recompute_ = false;
  bool training_ = true;
  uint64_t dropout_step_ = 0;
  int B_ = 0, Tlen_ = 0;       // shape (B, T) of the allocated activations
  bool acts_recompute_ = false;  // recompute_ when the activations were sized
  int64_t n_targets_ = 0;
  double normalizer_ = 1.0;
  bool have_targets_ = false;
  bool logits_valid_ = false;
  size_t slot_size_ = 0;                   // elements in one layer's activation slot
  std::vector<int32_t> tokens_, targets_;  // (B, T) copies of the last batch
  std::vector<T> logits_;                  // (B, T, V), then dlogits in backward
  std::vector<T> resid_;                   // (L+1, B, T, C) layer inputs + final output
  std::vector<T> slots_;                   // (L or 1, slot_size_) per-layer activations
  std::vector<T> final_;                   // lnf (B, T, C), rstdf (B, T), losses (B, T), lse (B, T)
  std::vector<T> scratch_;                 // backward scratch for one layer
  std::vector<T> dec_;                     // forward_cached scratch
  std::vector<T> rope_cos_, rope_sin_;     // (max_position_embeddings, HS/2)
};

using Model = ModelT<float>;
using KVCache = KVCacheT<float>;

}  // namespace fw
