// lora.cpp: low-rank adapters; the frozen base GEMMs stay in ops_linear.
//
// Forward for projection (l, m), xd = drop(x) (N, IN):
//   u = xd A^T (N, r) (saved), out += scale * u B^T
// Backward:
//   dB += scale * dout^T u,  du = scale * dout B (N, r),
//   dA += du^T xd,           dx += drop'(du A)
#include "lora.h"

#include <algorithm>
#include <cmath>

#include "ops_gemm.h"
#include "train_rng.h"

namespace fw {

const char* const kLoraModuleNames[kLoraModules] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                    "gate_proj", "up_proj", "down_proj"};

// "self_attn.q_proj" etc.: the HF module path of projection m inside a layer.
static std::string module_path(int m) {
  return std::string(m < 4 ? "self_attn." : "mlp.") + kLoraModuleNames[m];
}

uint64_t lora_step_dropout_key(const LoraConfig& cfg, uint64_t step) {
  if (cfg.dropout <= 0) return 0;
  return rng_mix(cfg.seed * 0x9E3779B97F4A7C15ull + step) | 1;
}

template <typename T>
LoraT<T>::LoraT(const Config& model_cfg, const LoraConfig& c) : mcfg(model_cfg), cfg(c) {
  FW_CHECK(c.rank >= 1, kInvalidArgument, "LoRA rank must be >= 1, got " << c.rank);
  FW_CHECK(c.alpha > 0, kInvalidArgument, "LoRA alpha must be > 0, got " << c.alpha);
  FW_CHECK(c.dropout >= 0 && c.dropout < 1, kInvalidArgument, "LoRA dropout must be in [0, 1), got " << c.dropout);
  FW_CHECK(!c.target_modules.empty(), kInvalidArgument, "LoRA needs at least one target module");
  bool on[kLoraModules] = {};
  for (const std::string& t : c.target_modules) {
    int found = -1;
    for (int m = 0; m < kLoraModules; m++)
      if (t == kLoraModuleNames[m]) found = m;
    FW_CHECK_HINT(found >= 0, kInvalidArgument, "unknown LoRA target module \"" << t << "\"",
                  "use q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj");
    on[found] = true;
  }
  scale = c.alpha / c.rank;
  int L = mcfg.num_hidden_layers;
  int64_t C = mcfg.hidden_size, I = mcfg.intermediate_size, r = c.rank;
  int64_t QD = (int64_t)mcfg.num_attention_heads * mcfg.head_dim, KD = (int64_t)mcfg.num_key_value_heads * mcfg.head_dim;
  // (in, out) of each projection.
  int64_t dims[kLoraModules][2] = {{C, QD}, {C, KD}, {C, KD}, {QD, C}, {C, I}, {C, I}, {I, C}};
  a_index.assign((size_t)L * kLoraModules, -1);
  b_index.assign((size_t)L * kLoraModules, -1);
  for (int l = 0; l < L; l++)
    for (int m = 0; m < kLoraModules; m++) {
      if (!on[m]) continue;
      std::string pre = "base_model.model.model.layers." + std::to_string(l) + "." + module_path(m);
      a_index[(size_t)l * kLoraModules + m] = (int)layout.tensors.size();
      layout.add(pre + ".lora_A.weight", {r, dims[m][0]}, true);
      b_index[(size_t)l * kLoraModules + m] = (int)layout.tensors.size();
      layout.add(pre + ".lora_B.weight", {dims[m][1], r}, true);
    }
  params.assign(layout.numel, T(0));
  grads.assign(layout.numel, T(0));
}

template <typename T>
void LoraT<T>::init(uint64_t seed) {
  Rng rng(seed);
  std::fill(params.begin(), params.end(), T(0));
  for (size_t i = 0; i < a_index.size(); i++) {
    if (a_index[i] < 0) continue;
    const TensorInfo& a = layout.tensors[a_index[i]];
    double bound = 1.0 / std::sqrt((double)a.shape[1]);  // kaiming_uniform(a=sqrt(5)) as PEFT
    T* p = params.data() + a.offset;
    for (size_t j = 0; j < a.numel; j++) p[j] = T((2 * rng.uniform() - 1) * bound);
    // B stays 0: the adapter starts as the identity.
  }
}

template <typename T>
void LoraT<T>::zero_grad() {
  std::fill(grads.begin(), grads.end(), T(0));
}

template <typename T>
T* LoraT<T>::saved_u(int l, int m, int N) {
  if (N != saved_n_) {
    saved.assign((size_t)mcfg.num_hidden_layers * kLoraModules * N * cfg.rank, T(0));
    saved_n_ = N;
  }
  return saved.data() + ((size_t)l * kLoraModules + m) * N * cfg.rank;
}

// drop(x): x itself without dropout, else x * mask / (1 - p) in xd_. The
// mask bit of element e is a pure function of (drop_key, l, m, e).
template <typename T>
const T* LoraT<T>::dropped_input(int l, int m, const T* inp, int N, int IN, uint64_t drop_key) {
  if (!drop_key || cfg.dropout <= 0) return inp;
  size_t n = (size_t)N * IN;
  if (xd_.size() < n) xd_.resize(n);
  uint64_t key = rng_mix(drop_key + (uint64_t)(l * kLoraModules + m + 1) * 0xD1B54A32D192ED03ull);
  T keep_scale = T(1.0 / (1.0 - cfg.dropout));
  double p = cfg.dropout;
  #pragma omp parallel for
  for (long e = 0; e < (long)n; e++) xd_[e] = rng_u01(rng_at(key, (uint64_t)e)) < p ? T(0) : inp[e] * keep_scale;
  return xd_.data();
}

template <typename T>
void LoraT<T>::forward(int l, int m, T* out, const T* inp, int N, int IN, int OUT, uint64_t drop_key) {
  int r = cfg.rank;
  const T* xd = dropped_input(l, m, inp, N, IN, drop_key);
  T* u = saved_u(l, m, N);
  gemm(false, true, N, r, IN, T(1), xd, IN, A(l, m), IN, T(0), u, r);           // u (N, r) = xd A^T
  gemm(false, true, N, OUT, r, T(scale), u, r, Bm(l, m), r, T(1), out, OUT);   // out += scale u B^T
}

template <typename T>
void LoraT<T>::backward(int l, int m, T* dinp, const T* dout, const T* inp, int N, int IN, int OUT,
                        uint64_t drop_key) {
  int r = cfg.rank;
  const T* xd = dropped_input(l, m, inp, N, IN, drop_key);
  T* u = saved_u(l, m, N);
  if (du_.size() < (size_t)N * r) du_.resize((size_t)N * r);
  T* du = du_.data();
  gemm(true, false, OUT, r, N, T(scale), dout, OUT, u, r, T(1), dB(l, m), r);    // dB += scale dout^T u
  gemm(false, false, N, r, OUT, T(scale), dout, OUT, Bm(l, m), r, T(0), du, r);  // du = scale dout B
  gemm(true, false, r, IN, N, T(1), du, r, xd, IN, T(1), dA(l, m), IN);          // dA += du^T xd
  if (!dinp) return;
  if (xd == inp) {
    gemm(false, false, N, IN, r, T(1), du, r, A(l, m), IN, T(1), dinp, IN);  // dx += du A
    return;
  }
  // With dropout: dx += (du A) * mask / (1-p). xd_ (no longer needed) takes
  // du A; the mask is where xd was zeroed, recomputed from the same key.
  size_t n = (size_t)N * IN;
  std::vector<T> tmp(n);
  gemm(false, false, N, IN, r, T(1), du, r, A(l, m), IN, T(0), tmp.data(), IN);
  uint64_t key = rng_mix(drop_key + (uint64_t)(l * kLoraModules + m + 1) * 0xD1B54A32D192ED03ull);
  T keep_scale = T(1.0 / (1.0 - cfg.dropout));
  double p = cfg.dropout;
  #pragma omp parallel for
  for (long e = 0; e < (long)n; e++)
    if (!(rng_u01(rng_at(key, (uint64_t)e)) < p)) dinp[e] += tmp[e] * keep_scale;
}

template <typename T>
void LoraT<T>::merge_into(ModelT<T>& model) {
  FW_CHECK(model.cfg.num_hidden_layers == mcfg.num_hidden_layers && model.cfg.hidden_size == mcfg.hidden_size,
           kInvalidArgument, "LoRA adapter does not match the model's shape");
  int r = cfg.rank;
  for (int l = 0; l < mcfg.num_hidden_layers; l++)
    for (int m = 0; m < kLoraModules; m++) {
      if (!targets(l, m)) continue;
      const TensorInfo& b = layout.tensors[b_index[(size_t)l * kLoraModules + m]];
      const TensorInfo& a = layout.tensors[a_index[(size_t)l * kLoraModules + m]];
      int OUT = (int)b.shape[0], IN = (int)a.shape[1];
      T* W = model.param("model.layers." + std::to_string(l) + "." + module_path(m) + ".weight");  // (OUT, IN)
      gemm(false, false, OUT, IN, r, T(scale), Bm(l, m), r, A(l, m), IN, T(1), W, IN);
    }
}

template struct LoraT<float>;
template struct LoraT<double>;

}  // namespace fw
