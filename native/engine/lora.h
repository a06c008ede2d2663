// lora.h: Low-Rank Adaptation on the Llama projections, PEFT-compatible.
//
// A targeted Linear W (out, in) gets y = x W^T + b + (alpha/r) * drop(x) A^T B^T
// with A (r, in) and B (out, r). The base model is frozen: with LoRA, ModelT
// has no grads (do not call enable_grads), only these adapters are trained.
//
// The adapter tensors live in one flat buffer with PEFT names, so the PEFT
// adapter save/load code can use the same name -> tensor table as for models:
//   base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight  (r, in)
//   base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight  (out, r)
// (PEFT's adapter_config.json: r, lora_alpha, lora_dropout, target_modules.)
//
// Init as PEFT: A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform, a=sqrt(5)),
// B = 0, so a fresh adapter leaves the model unchanged.
// Dropout (p = dropout) is applied to the adapter's input only; its mask is a
// pure function of (seed, step, layer, module, element) so recomputation and
// backward regenerate it exactly.
#pragma once

#include <string>
#include <vector>

#include "model.h"

namespace fw {

// The 7 projections of a Llama layer, in this order.
constexpr int kLoraModules = 7;
extern const char* const kLoraModuleNames[kLoraModules];  // q_proj .. down_proj

struct LoraConfig {
  int rank = 8;                 // r
  double alpha = 16.0;          // scale = alpha / r
  double dropout = 0.0;         // probability of zeroing an input element
  std::vector<std::string> target_modules = {"q_proj", "v_proj"};
  uint64_t seed = 0;            // init and dropout
};

// The dropout key of a training step (ModelT and the CUDA model pass it to
// forward/backward as drop_key): a pure function of (seed, step), never 0;
// 0 (no dropout) when cfg.dropout is 0.
uint64_t lora_step_dropout_key(const LoraConfig& cfg, uint64_t step);

template <typename T>
struct LoraT {
  // Validates (rank >= 1, 0 <= dropout < 1, known module names: q_proj,
  // k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj) and allocates
  // params + grads (zeroed; call init()).
  LoraT(const Config& model_cfg, const LoraConfig& cfg);

  Config mcfg;
  LoraConfig cfg;
  double scale = 0;          // alpha / r
  ParamLayout layout;        // PEFT names; AdamW decay flag true for A and B
  std::vector<T> params;     // (layout.numel)
  std::vector<T> grads;      // (layout.numel)
  std::vector<int> a_index;  // (L * 7): position in layout.tensors of A, -1 if not targeted
  std::vector<int> b_index;  // (L * 7)
  std::vector<T> saved;      // forward activations u = drop(x) A^T, see lora.cpp

  void init(uint64_t seed);
  void zero_grad();
  bool targets(int l, int m) const { return a_index[(size_t)l * kLoraModules + m] >= 0; }
  // Trainable parameter count (sum of all A and B elements).
  size_t trainable_params() const { return layout.count_params(); }
  T* A(int l, int m) { return params.data() + layout.tensors[a_index[(size_t)l * kLoraModules + m]].offset; }
  T* Bm(int l, int m) { return params.data() + layout.tensors[b_index[(size_t)l * kLoraModules + m]].offset; }
  T* dA(int l, int m) { return grads.data() + layout.tensors[a_index[(size_t)l * kLoraModules + m]].offset; }
  T* dB(int l, int m) { return grads.data() + layout.tensors[b_index[(size_t)l * kLoraModules + m]].offset; }

  // W += scale * B @ A for every targeted projection of model (the adapter
  // can then be detached: model.set_lora(nullptr)).
  void merge_into(ModelT<T>& model);

  // Used by ModelT: out (N, OUT) += scale * drop(x) A^T B^T for projection m
  // of layer l; inp (N, IN). drop_key = 0 disables dropout (eval).
  void forward(int l, int m, T* out, const T* inp, int N, int IN, int OUT, uint64_t drop_key);
  // dA, dB += ...; dinp (N, IN) += the adapter's contribution.
  void backward(int l, int m, T* dinp, const T* dout, const T* inp, int N, int IN, int OUT, uint64_t drop_key);

 private:
  T* saved_u(int l, int m, int N);
  const T* dropped_input(int l, int m, const T* inp, int N, int IN, uint64_t drop_key);
  int saved_n_ = 0;         // rows N the saved activations are sized for
  std::vector<T> xd_, du_;  // scratch: drop(x) (N, IN), du (N, r)
};

using Lora = LoraT<float>;

}  // namespace fw
