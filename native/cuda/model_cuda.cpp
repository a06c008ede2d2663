// model_cuda.cpp: CudaModel (forward, backward, KV-cache decode) and
// CudaTrainer (the optimizer step) on the GPU. The layer code follows
// engine/model.cpp line for line, with two GPU-side changes:
//  - residual adds are folded into the output projections: the residual is
//    copied into the output and the GEMM accumulates onto it (beta = 1), so
//    there is no separate add kernel and the sum is rounded once;
//  - attention keeps only lse (B, NH, T) per layer, never the (T, T) scores.
// Host C++ against the CUDA runtime only (cuBLAS stays behind gemm_cublas.h),
// so this file compiles wherever nvcc's headers are, like the kernels.
#include "model_cuda.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "cast.cuh"
#include "collective_nccl.h"
#include "cuda_check.h"
#include "decode.cuh"
#include "embedding_plan.h"
#include "gemv.cuh"
#include "quant.cuh"
#include "quant.h"
#include "nccl_shim.h"
#include "ops_attention.cuh"
#include "ops_embedding.cuh"
#include "ops_linear.cuh"
#include "ops_loss.cuh"
#include "ops_rmsnorm.cuh"
#include "ops_rope.cuh"
#include "ops_swiglu.cuh"
#include "optim.cuh"

namespace fw {
namespace cuda {

// Profiling marks (op_profiler.h): nothing unless a profiler is attached.
// A layer's forward rerun by backward (recomputation) counts as one op.
#define FW_OP(name)                                                             \
  do {                                                                          \
    if (prof_) prof_->mark(recomputing_ ? "recompute (forward again)" : name, stream_); \
  } while (0)

namespace {

// 16-bit storage (bf16 or fp16): the trainer keeps an fp32 master copy.
template <typename T>
constexpr bool has_master() {
  return !std::is_same<T, float>::value;
}
template <typename T>
constexpr int nccl_type() {
  return std::is_same<T, bf16>::value ? NcclType::kBfloat16
         : std::is_same<T, f16>::value ? NcclType::kFloat16
                                       : NcclType::kFloat32;
}

// 16-bit storage -> fp32 on the device (the master weights' start).
void to_f32_buffer(float* dst, const bf16* src, size_t n, cudaStream_t s) { cast_bf16_to_f32(dst, src, n, s); }
void to_f32_buffer(float* dst, const f16* src, size_t n, cudaStream_t s) { cast_f16_to_f32(dst, src, n, s); }

// Carves consecutive 256-byte aligned arrays out of one allocation; a first
// pass with base == nullptr measures the size.
class Carver {
 public:
  explicit Carver(void* base) : base_(static_cast<char*>(base)) {}
  template <typename U>
  U* take(size_t n) {
    U* p = base_ ? reinterpret_cast<U*>(base_ + off_) : nullptr;
    off_ += (n * sizeof(U) + 255) / 256 * 256;
    return p;
  }
  size_t bytes() const { return off_; }

 private:
  char* base_;
  size_t off_ = 0;
};

// One layer's saved activations within its slot.
template <typename T>
struct LayerActs {
  T *ln1, *q, *k, *v, *atty, *xmid, *ln2, *gate, *up, *h;
  float *rstd1, *rstd2, *lse;
};

}  // namespace

// ---------------------------------------------------------------- KV cache

template <typename T>
CudaKVCache<T>::CudaKVCache(const Config& cfg, int batch, int capacity)
    : L(cfg.num_hidden_layers), B(batch), KVH(cfg.num_key_value_heads), S(capacity), HS(cfg.head_dim) {
  FW_CHECK(batch > 0 && capacity > 0, kInvalidArgument, "KV cache needs batch > 0 and capacity > 0");
  FW_CHECK(capacity <= cfg.max_position_embeddings, kInvalidArgument,
           "KV cache capacity " << capacity << " exceeds max_position_embeddings " << cfg.max_position_embeddings);
  FW_CUDA_CHECK(cudaMalloc(&k, bytes() / 2));
  FW_CUDA_CHECK(cudaMalloc(&v, bytes() / 2));
  FW_CUDA_CHECK(cudaMemset(k, 0, bytes() / 2));
  FW_CUDA_CHECK(cudaMemset(v, 0, bytes() / 2));
  FW_CUDA_CHECK(cudaMalloc(&d_len, sizeof(int)));
  FW_CUDA_CHECK(cudaMemset(d_len, 0, sizeof(int)));
  // the memsets run on the legacy stream: done before a non-blocking stream reads the cache
  FW_CUDA_CHECK(cudaDeviceSynchronize());
}

template <typename T>
CudaKVCache<T>::~CudaKVCache() {
  cudaFree(k);
  cudaFree(v);
  cudaFree(d_len);
}

template <typename T>
void CudaKVCache<T>::reset() {
  len = 0;
  if (d_len) {
    FW_CUDA_CHECK(cudaMemset(d_len, 0, sizeof(int)));
    FW_CUDA_CHECK(cudaDeviceSynchronize());  // ordered before work on any stream
  }
}

CudaDecodeGraph::~CudaDecodeGraph() {
  if (exec) cudaGraphExecDestroy(exec);
}

template <typename TC>
void CudaDecodeGraph::launch(CudaKVCache<TC>& cache, cudaStream_t stream) {
  FW_CHECK(exec, kInvalidArgument, "no captured decode step");
  FW_CHECK(!scratch_gen || *scratch_gen == gen, kInvalidArgument,
           "the model's decode buffers were reallocated since this step was captured (a larger batch shape, or "
           "set_int8_decode): capture it again");
  FW_CHECK(cache.len + T <= cache.S, kInvalidArgument,
           "decode past the KV cache capacity: " << cache.len << " + " << T << " > " << cache.S);
  FW_CUDA_CHECK(cudaGraphLaunch(exec, stream));
  cache.len += T;
}
template void CudaDecodeGraph::launch<float>(CudaKVCache<float>&, cudaStream_t);
template void CudaDecodeGraph::launch<bf16>(CudaKVCache<bf16>&, cudaStream_t);
template void CudaDecodeGraph::launch<f16>(CudaKVCache<f16>&, cudaStream_t);

// ---------------------------------------------------------------- model

template <typename T>
CudaModel<T>::CudaModel(const Config& c, Blas& blas, cudaStream_t stream) : cfg(c), blas_(blas), stream_(stream) {
  cfg.validate();
  FW_CHECK(cfg.head_dim <= kAttentionMaxHS, kUnsupported,
           "head_dim " << cfg.head_dim << " exceeds the CUDA attention's limit " << kAttentionMaxHS);
  FW_CHECK(cfg.sliding_window <= 0, kUnsupported, "sliding-window attention is not implemented on CUDA");
  layout = llama_param_layout(cfg);
  const size_t n = layout.numel + kShardSlack;
  FW_CUDA_CHECK(cudaMalloc(&params_, n * sizeof(T)));
  FW_CUDA_CHECK(cudaMemsetAsync(params_, 0, n * sizeof(T), stream_));
  const size_t half = (size_t)cfg.max_position_embeddings * (cfg.head_dim / 2);
  FW_CUDA_CHECK(cudaMalloc(&rope_cos_, half * sizeof(float)));
  FW_CUDA_CHECK(cudaMalloc(&rope_sin_, half * sizeof(float)));
  rope_tables(rope_cos_, rope_sin_, cfg.max_position_embeddings, cfg.head_dim, cfg.rope_theta, stream_);
  lp_.resize(cfg.num_hidden_layers);
  lg_.assign(cfg.num_hidden_layers, LayerParams<T>{});
  for (int l = 0; l < cfg.num_hidden_layers; l++) lp_[l] = layer_ptrs(params_, l);
  FW_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

template <typename T>
CudaModel<T>::~CudaModel() {
  free_acts();
  cudaFree(q8_block_);
  cudaFree(dec_block_);
  cudaFree(dec_counters_);
  cudaFree(params_);
  cudaFree(grads_);
  cudaFree(rope_cos_);
  cudaFree(rope_sin_);
}

template <typename T>
void CudaModel<T>::set_int8_decode(bool on) {
  FW_CUDA_CHECK(cudaStreamSynchronize(stream_));
  cudaFree(q8_block_);
  q8_block_ = nullptr;
  q8_.clear();
  scratch_gen_++;  // graphs captured with the old weights are stale
  if (!on) return;
  // Quantise on the host from the fp32 values of the parameters, exactly as
  // InferEngine does from its Model, then upload into one allocation.
  std::vector<float> host(layout.numel);
  download_params(host.data());
  const Config& c = cfg;
  const int C = c.hidden_size, I = c.intermediate_size, QD = c.num_attention_heads * c.head_dim,
            KD = c.num_key_value_heads * c.head_dim;
  std::vector<QuantMatrix> mats;
  for (int l = 0; l < c.num_hidden_layers; l++) {
    const LayerParams<float> p = layer_param_ptrs(layout, host.data(), l);
    mats.push_back(quantize_q8(p.wq, QD, C));
    mats.push_back(quantize_q8(p.wk, KD, C));
    mats.push_back(quantize_q8(p.wv, KD, C));
    mats.push_back(quantize_q8(p.wo, C, QD));
    mats.push_back(quantize_q8(p.wgate, I, C));
    mats.push_back(quantize_q8(p.wup, I, C));
    mats.push_back(quantize_q8(p.wdown, C, I));
  }
  const char* lm = c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  mats.push_back(quantize_q8(host.data() + layout.at(lm).offset, c.vocab_size, C));
  size_t bytes = 0;
  for (const QuantMatrix& m : mats) bytes += (m.q.size() + 255) / 256 * 256 + (m.scale.size() * 4 + 255) / 256 * 256;
  FW_CUDA_CHECK(cudaMalloc(&q8_block_, bytes));
  char* at = static_cast<char*>(q8_block_);
  for (const QuantMatrix& m : mats) {
    Q8 d;
    d.oc = m.OC;
    d.ic = m.IC;
    d.q = reinterpret_cast<int8_t*>(at);
    FW_CUDA_CHECK(cudaMemcpyAsync(d.q, m.q.data(), m.q.size(), cudaMemcpyHostToDevice, stream_));
    at += (m.q.size() + 255) / 256 * 256;
    d.scale = reinterpret_cast<float*>(at);
    FW_CUDA_CHECK(cudaMemcpyAsync(d.scale, m.scale.data(), m.scale.size() * 4, cudaMemcpyHostToDevice, stream_));
    at += (m.scale.size() * 4 + 255) / 256 * 256;
    q8_.push_back(d);
  }
  FW_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the host matrices go out of scope
}

template <typename T>
LayerParams<T> CudaModel<T>::layer_ptrs(T* base, int l) const {
  return layer_param_ptrs(layout, base, l);
}

template <typename T>
void CudaModel<T>::load_params(const float* host) {
  upload_f32(params_, host, layout.numel, stream_);
}

template <typename T>
void CudaModel<T>::download_params(float* host) const {
  download_f32(host, params_, layout.numel, stream_);
}

template <typename T>
void CudaModel<T>::download_grads(float* host) const {
  FW_CHECK(grads_, kInvalidArgument, "the model has no gradients (enable_grads)");
  download_f32(host, grads_, layout.numel, stream_);
}

template <typename T>
void CudaModel<T>::enable_grads() {
  if (grads_) return;
  const size_t n = layout.numel + kShardSlack;
  FW_CUDA_CHECK(cudaMalloc(&grads_, n * sizeof(T)));
  FW_CUDA_CHECK(cudaMemsetAsync(grads_, 0, n * sizeof(T), stream_));
  for (int l = 0; l < cfg.num_hidden_layers; l++) lg_[l] = layer_ptrs(grads_, l);
}

template <typename T>
void CudaModel<T>::zero_grad() {
  if (grads_) FW_CUDA_CHECK(cudaMemsetAsync(grads_, 0, (layout.numel + kShardSlack) * sizeof(T), stream_));
  if (lora_) lora_->zero_grad();  // as ModelT::zero_grad: the adapter's too
}

template <typename T>
void CudaModel<T>::free_acts() {
  cudaFree(act_block_);
  act_block_ = nullptr;
  act_bytes_ = 0;
  B_ = T_ = 0;
}

// Per-layer slot: ln1, q, k, v, atty, xmid, ln2, gate, up, h (T), then
// rstd1, rstd2 (N) and lse (NH*N) fp32.
template <typename T>
static LayerActs<T> carve_layer(const Config& c, size_t N, void* base, size_t* bytes) {
  const size_t C = c.hidden_size, I = c.intermediate_size, QD = (size_t)c.num_attention_heads * c.head_dim,
               KD = (size_t)c.num_key_value_heads * c.head_dim;
  Carver cv(base);
  LayerActs<T> a;
  a.ln1 = cv.take<T>(N * C);
  a.q = cv.take<T>(N * QD);
  a.k = cv.take<T>(N * KD);
  a.v = cv.take<T>(N * KD);
  a.atty = cv.take<T>(N * QD);
  a.xmid = cv.take<T>(N * C);
  a.ln2 = cv.take<T>(N * C);
  a.gate = cv.take<T>(N * I);
  a.up = cv.take<T>(N * I);
  a.h = cv.take<T>(N * I);
  a.rstd1 = cv.take<float>(N);
  a.rstd2 = cv.take<float>(N);
  a.lse = cv.take<float>(N * c.num_attention_heads);
  if (bytes) *bytes = cv.bytes();
  return a;
}

template <typename T>
void CudaModel<T>::ensure_acts(int B, int T_len) {
  if (B == B_ && T_len == T_ && act_block_ && acts_recompute_ == recompute_) return;
  free_acts();
  const Config& c = cfg;
  const size_t N = (size_t)B * T_len, C = c.hidden_size, I = c.intermediate_size, V = c.vocab_size,
               L = c.num_hidden_layers, QD = (size_t)c.num_attention_heads * c.head_dim,
               KD = (size_t)c.num_key_value_heads * c.head_dim;
  carve_layer<T>(c, N, nullptr, &slot_bytes_);
  auto carve_all = [&](void* base) {
    Carver cv(base);
    resid_ = cv.take<T>((L + 1) * N * C);
    acts_ = reinterpret_cast<T*>(cv.take<char>((recompute_ ? 1 : L) * slot_bytes_));
    lnf_ = cv.take<T>(N * C);
    rstdf_ = cv.take<float>(N);
    logits_ = cv.take<T>(N * V);
    losses_ = cv.take<float>(N);
    lse_ = cv.take<float>(N);
    // backward scratch: dh, dgate, dup (N, I); dln (N, C); datty, dq (N, QD); dk, dv (N, KD); dres (N, C)
    scratch_ = cv.take<T>(3 * N * I + N * C + 2 * N * QD + 2 * N * KD + N * C);
    att_scratch_ = cv.take<float>(N * c.num_attention_heads);
    rms_scratch_ = cv.take<float>(rmsnorm_backward_scratch_floats((int)N, (int)C));
    tokens_ = cv.take<int32_t>(N);
    targets_ = cv.take<int32_t>(N);
    emb_plan_dev_ = cv.take<int32_t>(3 * N + 1);  // the EmbeddingPlan: ids (<= N), offsets (<= N + 1), positions (N)
    return cv.bytes();
  };
  const size_t bytes = carve_all(nullptr);
  FW_CUDA_CHECK(cudaMalloc(&act_block_, bytes));
  carve_all(act_block_);
  act_bytes_ = bytes;
  B_ = B;
  T_ = T_len;
  acts_recompute_ = recompute_;
}

template <typename T>
char* CudaModel<T>::slot(int l) const {
  return reinterpret_cast<char*>(acts_) + (acts_recompute_ ? 0 : (size_t)l * slot_bytes_);
}

template <typename T>
uint64_t CudaModel<T>::dropout_key() const {
  return lora_ && training_ ? lora_step_dropout_key(lora_->cfg, dropout_step_) : 0;
}

template <typename T>
void CudaModel<T>::lora_forward_at(int l, int m, T* out, const T* inp, int N, int IN, int OUT) {
  if (lora_ && lora_->targets(l, m)) lora_->forward(blas_, l, m, out, inp, N, IN, OUT, dropout_key(), stream_);
}

template <typename T>
void CudaModel<T>::lora_backward_at(int l, int m, T* dinp, const T* dout, const T* inp, int N, int IN, int OUT) {
  if (lora_ && lora_->targets(l, m))
    lora_->backward(blas_, l, m, dinp, dout, inp, N, IN, OUT, dropout_key(), stream_);
}

template <typename T>
void CudaModel<T>::check_tokens(const int32_t* tokens, const int32_t* targets, int B, int T_len) const {
  check_batch(cfg, tokens, targets, B, T_len);
}

// q/k/v (and gate/up) as one batched GEMM: the weights back to back in the
// parameter buffer (no bias between them) and the three outputs back to back
// in the activations, all of one size (no GQA). Otherwise one GEMM each.
template <typename T>
bool CudaModel<T>::qkv_grouped(const LayerParams<T>& p, const T* q, const T* k, const T* v, int N) const {
  const size_t C = cfg.hidden_size, QD = (size_t)cfg.num_attention_heads * cfg.head_dim,
               KD = (size_t)cfg.num_key_value_heads * cfg.head_dim;
  return QD == KD && p.wk == p.wq + QD * C && p.wv == p.wk + KD * C && k == q + (size_t)N * QD &&
         v == k + (size_t)N * KD;
}

template <typename T>
bool CudaModel<T>::gate_up_grouped(const LayerParams<T>& p, const T* gate, const T* up, int N) const {
  const size_t C = cfg.hidden_size, I = cfg.intermediate_size;
  return p.wup == p.wgate + I * C && up == gate + (size_t)N * I;
}

template <typename T>
void CudaModel<T>::layer_forward(int l, int B, int T_len) {
  const Config& c = cfg;
  const int N = B * T_len, C = c.hidden_size, I = c.intermediate_size, NH = c.num_attention_heads,
            KVH = c.num_key_value_heads, HS = c.head_dim, QD = NH * HS, KD = KVH * HS;
  LayerActs<T> a = carve_layer<T>(c, N, slot(l), nullptr);
  const LayerParams<T>& p = lp_[l];
  const T* x = resid_ + (size_t)l * N * C;
  T* out = resid_ + (size_t)(l + 1) * N * C;
  cudaStream_t s = stream_;
  FW_OP("rmsnorm");
  rmsnorm_forward(a.ln1, a.rstd1, x, p.ln1, N, C, c.rms_norm_eps, s);
  FW_OP("gemm q/k/v");
  if (qkv_grouped(p, a.q, a.k, a.v, N)) {  // one batched GEMM, then the biases
    linear_forward_group(blas_, a.q, a.ln1, p.wq, 3, N, C, QD, s);
    if (p.bq) bias_add_forward(a.q, p.bq, N, QD, s);
    if (p.bk) bias_add_forward(a.k, p.bk, N, KD, s);
    if (p.bv) bias_add_forward(a.v, p.bv, N, KD, s);
  } else {
    linear_forward(blas_, a.q, a.ln1, p.wq, p.bq, N, C, QD, s);
    linear_forward(blas_, a.k, a.ln1, p.wk, p.bk, N, C, KD, s);
    linear_forward(blas_, a.v, a.ln1, p.wv, p.bv, N, C, KD, s);
  }
  if (lora_) {
    FW_OP("lora q/k/v");
    lora_forward_at(l, 0, a.q, a.ln1, N, C, QD);
    lora_forward_at(l, 1, a.k, a.ln1, N, C, KD);
    lora_forward_at(l, 2, a.v, a.ln1, N, C, KD);
  }
  FW_OP("rope");
  rope_forward(a.q, rope_cos_, rope_sin_, B, T_len, NH, HS, 0, s);
  rope_forward(a.k, rope_cos_, rope_sin_, B, T_len, KVH, HS, 0, s);
  FW_OP("attention");
  attention_forward(a.atty, a.lse, a.q, a.k, a.v, B, T_len, NH, KVH, HS, s);
  // xmid = x + atty @ wo^T (+ bo)
  FW_OP("residual copy");
  FW_CUDA_CHECK(cudaMemcpyAsync(a.xmid, x, (size_t)N * C * sizeof(T), cudaMemcpyDeviceToDevice, s));
  FW_OP("gemm o");
  gemm(blas_, false, true, N, C, QD, 1.0f, a.atty, QD, p.wo, QD, 1.0f, a.xmid, C, s);
  if (p.bo) bias_add_forward(a.xmid, p.bo, N, C, s);
  if (lora_) {
    FW_OP("lora o");
    lora_forward_at(l, 3, a.xmid, a.atty, N, QD, C);
  }
  FW_OP("rmsnorm");
  rmsnorm_forward(a.ln2, a.rstd2, a.xmid, p.ln2, N, C, c.rms_norm_eps, s);
  FW_OP("gemm gate/up");
  if (gate_up_grouped(p, a.gate, a.up, N)) {
    linear_forward_group(blas_, a.gate, a.ln2, p.wgate, 2, N, C, I, s);
  } else {
    linear_forward(blas_, a.gate, a.ln2, p.wgate, (const T*)nullptr, N, C, I, s);
    linear_forward(blas_, a.up, a.ln2, p.wup, (const T*)nullptr, N, C, I, s);
  }
  if (lora_) {
    FW_OP("lora gate/up");
    lora_forward_at(l, 4, a.gate, a.ln2, N, C, I);
    lora_forward_at(l, 5, a.up, a.ln2, N, C, I);
  }
  FW_OP("swiglu");
  swiglu_forward(a.h, a.gate, a.up, (size_t)N * I, s);
  // out = xmid + h @ wdown^T
  FW_OP("residual copy");
  FW_CUDA_CHECK(cudaMemcpyAsync(out, a.xmid, (size_t)N * C * sizeof(T), cudaMemcpyDeviceToDevice, s));
  FW_OP("gemm down");
  gemm(blas_, false, true, N, C, I, 1.0f, a.h, I, p.wdown, I, 1.0f, out, C, s);
  if (lora_) {
    FW_OP("lora down");
    lora_forward_at(l, 6, out, a.h, N, I, C);
  }
}

template <typename T>
float CudaModel<T>::forward(const int32_t* tokens, const int32_t* targets, int B, int T_len, double loss_normalizer) {
  check_tokens(tokens, targets, B, T_len);
  ensure_acts(B, T_len);
  const Config& c = cfg;
  const int N = B * T_len, C = c.hidden_size, V = c.vocab_size, L = c.num_hidden_layers;
  cudaStream_t s = stream_;
  FW_OP("tokens to device");
  FW_CUDA_CHECK(cudaMemcpyAsync(tokens_, tokens, (size_t)N * sizeof(int32_t), cudaMemcpyHostToDevice, s));
  FW_OP("embedding");
  embedding_forward(resid_, tokens_, params_ + layout.at("model.embed_tokens.weight").offset, N, C, s);
  for (int l = 0; l < L; l++) layer_forward(l, B, T_len);
  FW_OP("rmsnorm");
  rmsnorm_forward(lnf_, rstdf_, resid_ + (size_t)L * N * C, params_ + layout.at("model.norm.weight").offset, N, C,
                  c.rms_norm_eps, s);
  const T* wlm = params_ + layout.at(c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight").offset;
  FW_OP("gemm lm_head");
  linear_forward(blas_, logits_, lnf_, wlm, (const T*)nullptr, N, C, V, s);
  have_targets_ = targets != nullptr;
  if (!targets) {
    if (prof_) prof_->stop(s);
    FW_CUDA_CHECK(cudaStreamSynchronize(s));
    return 0.0f;
  }
  int64_t count = 0;
  for (int i = 0; i < N; i++) count += targets[i] != kIgnoreIndex;
  normalizer_ = loss_normalizer > 0 ? loss_normalizer : (double)std::max<int64_t>(count, 1);
  FW_OP("targets to device");
  FW_CUDA_CHECK(cudaMemcpyAsync(targets_, targets, (size_t)N * sizeof(int32_t), cudaMemcpyHostToDevice, s));
  FW_OP("cross-entropy");
  if (fused_loss_) {
    // losses and dlogits in one pass; logits are gone after this
    crossentropy_forward_backward(logits_, losses_, lse_, targets_, N, V, (float)(loss_scale_ / normalizer_), s);
    dlogits_ready_ = true;
  } else {
    crossentropy_forward(losses_, lse_, logits_, targets_, N, V, s);
    dlogits_ready_ = false;
  }
  std::vector<float> losses(N);
  emb_plan_ready_ = grads_ != nullptr;
  if (grads_) {
    // The embedding backward's plan, built on the host while the GPU runs
    // the forward, uploaded in one copy: ids, offsets, positions.
    embedding_plan(tokens, N, emb_plan_);
    const int U = emb_plan_.distinct();
    emb_plan_host_.resize(3 * (size_t)N + 1);
    std::copy(emb_plan_.ids.begin(), emb_plan_.ids.end(), emb_plan_host_.begin());
    std::copy(emb_plan_.offsets.begin(), emb_plan_.offsets.end(), emb_plan_host_.begin() + U);
    std::copy(emb_plan_.positions.begin(), emb_plan_.positions.end(), emb_plan_host_.begin() + 2 * U + 1);
    FW_OP("embedding plan to device");
    FW_CUDA_CHECK(cudaMemcpyAsync(emb_plan_dev_, emb_plan_host_.data(), (2 * (size_t)U + 1 + N) * sizeof(int32_t),
                                  cudaMemcpyHostToDevice, s));
  }
  FW_OP("losses to host");
  FW_CUDA_CHECK(cudaMemcpyAsync(losses.data(), losses_, (size_t)N * sizeof(float), cudaMemcpyDeviceToHost, s));
  if (prof_) prof_->stop(s);  // the host sync below is not GPU work
  FW_CUDA_CHECK(cudaStreamSynchronize(s));
  double sum = 0;  // serial sum in double, as the CPU model does
  for (int i = 0; i < N; i++) sum += losses[i];
  return (float)(sum / normalizer_);
}

template <typename T>
void CudaModel<T>::layer_backward(int l, int B, int T_len, T* dx) {
  const Config& c = cfg;
  const int N = B * T_len, C = c.hidden_size, I = c.intermediate_size, NH = c.num_attention_heads,
            KVH = c.num_key_value_heads, HS = c.head_dim, QD = NH * HS, KD = KVH * HS;
  LayerActs<T> a = carve_layer<T>(c, N, slot(l), nullptr);
  const LayerParams<T>& p = lp_[l];
  const LayerParams<T>& g = lg_[l];
  const T* x = resid_ + (size_t)l * N * C;
  const size_t n = N;
  T* dh = scratch_;
  T* dgate = dh + n * I;
  T* dup = dgate + n * I;
  T* dln = dup + n * I;
  T* datty = dln + n * C;
  T* dq = datty + n * QD;
  T* dk = dq + n * QD;
  T* dv = dk + n * KD;
  cudaStream_t s = stream_;
  FW_OP("gemm down bwd");
  linear_backward(blas_, dh, g.wdown, (T*)nullptr, dx, a.h, p.wdown, N, I, C, false, s);
  if (lora_) {
    FW_OP("lora down bwd");
    lora_backward_at(l, 6, dh, dx, a.h, N, I, C);
  }
  FW_OP("swiglu bwd");
  swiglu_backward(dgate, dup, dh, a.gate, a.up, n * I, s);
  FW_OP("gemm gate/up bwd");
  // weight gradients of both in one batched GEMM when they lie back to back
  const bool gu_dw = g.wgate && g.wup == g.wgate + (size_t)I * C && gate_up_grouped(p, dgate, dup, N);
  linear_backward(blas_, dln, gu_dw ? nullptr : g.wgate, (T*)nullptr, dgate, a.ln2, p.wgate, N, C, I, false, s);
  if (lora_) lora_backward_at(l, 4, dln, dgate, a.ln2, N, C, I);
  linear_backward(blas_, dln, gu_dw ? nullptr : g.wup, (T*)nullptr, dup, a.ln2, p.wup, N, C, I, true, s);
  if (lora_) lora_backward_at(l, 5, dln, dup, a.ln2, N, C, I);
  if (gu_dw) linear_backward_dw_group(blas_, g.wgate, dgate, a.ln2, 2, N, C, I, s);
  FW_OP("rmsnorm bwd");
  rmsnorm_backward(dx, g.ln2, dln, a.xmid, p.ln2, a.rstd2, N, C, rms_scratch_, s);  // dx is now d xmid
  FW_OP("gemm o bwd");
  linear_backward(blas_, datty, g.wo, g.bo, dx, a.atty, p.wo, N, QD, C, false, s);
  if (lora_) lora_backward_at(l, 3, datty, dx, a.atty, N, QD, C);
  FW_OP("attention bwd");
  attention_backward(dq, dk, dv, att_scratch_, datty, a.atty, a.lse, a.q, a.k, a.v, B, T_len, NH, KVH, HS, s);
  FW_OP("rope bwd");
  rope_backward(dq, rope_cos_, rope_sin_, B, T_len, NH, HS, 0, s);
  rope_backward(dk, rope_cos_, rope_sin_, B, T_len, KVH, HS, 0, s);
  FW_OP("gemm q/k/v bwd");
  const bool qkv_dw = g.wq && g.wk == g.wq + (size_t)QD * C && g.wv == g.wk + (size_t)KD * C &&
                      qkv_grouped(p, dq, dk, dv, N);
  linear_backward(blas_, dln, qkv_dw ? nullptr : g.wq, g.bq, dq, a.ln1, p.wq, N, C, QD, false, s);
  if (lora_) lora_backward_at(l, 0, dln, dq, a.ln1, N, C, QD);
  linear_backward(blas_, dln, qkv_dw ? nullptr : g.wk, g.bk, dk, a.ln1, p.wk, N, C, KD, true, s);
  if (lora_) lora_backward_at(l, 1, dln, dk, a.ln1, N, C, KD);
  linear_backward(blas_, dln, qkv_dw ? nullptr : g.wv, g.bv, dv, a.ln1, p.wv, N, C, KD, true, s);
  if (lora_) lora_backward_at(l, 2, dln, dv, a.ln1, N, C, KD);
  if (qkv_dw) linear_backward_dw_group(blas_, g.wq, dq, a.ln1, 3, N, C, QD, s);
  FW_OP("rmsnorm bwd");
  rmsnorm_backward(dx, g.ln1, dln, x, p.ln1, a.rstd1, N, C, rms_scratch_, s);  // dx is now d x
}

template <typename T>
void CudaModel<T>::backward() {
  FW_CHECK(have_targets_ && act_block_, kInvalidArgument, "backward() needs a forward() with targets first");
  FW_CHECK(acts_recompute_ == recompute_, kInvalidArgument,
           "set_recompute() changed between forward() and backward(); run forward() again");
  const Config& c = cfg;
  const int B = B_, T_len = T_, N = B * T_len, C = c.hidden_size, V = c.vocab_size, L = c.num_hidden_layers,
            I = c.intermediate_size, QD = c.num_attention_heads * c.head_dim,
            KD = c.num_key_value_heads * c.head_dim;
  cudaStream_t s = stream_;
  T* dres = scratch_ + 3 * (size_t)N * I + (size_t)N * C + 2 * (size_t)N * QD + 2 * (size_t)N * KD;
  T* dlnf = scratch_ + 3 * (size_t)N * I;  // dln's space, free until the first layer
  auto grad_of = [&](const char* name) -> T* { return grads_ ? grads_ + layout.at(name).offset : nullptr; };
  const char* lm_name = c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  const T* wlm = params_ + layout.at(lm_name).offset;
  // dlogits over logits, in place
  FW_OP("cross-entropy bwd");
  if (!dlogits_ready_)
    crossentropy_backward(logits_, logits_, lse_, targets_, N, V, (float)(loss_scale_ / normalizer_), s);
  dlogits_ready_ = false;
  FW_OP("gemm lm_head bwd");
  linear_backward(blas_, dlnf, grad_of(lm_name), (T*)nullptr, logits_, lnf_, wlm, N, C, V, false, s);
  FW_OP("memset");
  FW_CUDA_CHECK(cudaMemsetAsync(dres, 0, (size_t)N * C * sizeof(T), s));
  FW_OP("rmsnorm bwd");
  rmsnorm_backward(dres, grad_of("model.norm.weight"), dlnf, resid_ + (size_t)L * N * C,
                   params_ + layout.at("model.norm.weight").offset, rstdf_, N, C, rms_scratch_, s);
  if (on_grads_ready) on_grads_ready(layout.at("model.norm.weight").offset);
  for (int l = L - 1; l >= 0; l--) {
    // Recomputation reruns the layer's forward (same kernels, same dropout
    // keys) into the shared slot; it rewrites resid l+1 with the same values.
    if (acts_recompute_) {
      recomputing_ = true;
      layer_forward(l, B, T_len);
      recomputing_ = false;
    }
    layer_backward(l, B, T_len, dres);
    if (on_grads_ready && l > 0)
      on_grads_ready(layout.at("model.layers." + std::to_string(l) + ".input_layernorm.weight").offset);
  }
  FW_OP("embedding bwd");
  if (grads_) {
    FW_CHECK(emb_plan_ready_, kInvalidArgument, "backward() needs gradients enabled before the forward()");
    const int U = emb_plan_.distinct();
    embedding_backward(grad_of("model.embed_tokens.weight"), dres, emb_plan_dev_, emb_plan_dev_ + U,
                       emb_plan_dev_ + 2 * U + 1, U, C, s);
  }
  if (prof_) prof_->stop(s);
  if (on_grads_ready) on_grads_ready(0);
  have_targets_ = false;  // logits now hold dlogits
  emb_plan_ready_ = false;
  FW_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
std::vector<float> CudaModel<T>::logits_host() const {
  FW_CHECK(act_block_, kInvalidArgument, "no forward() yet");
  std::vector<float> out((size_t)B_ * T_ * cfg.vocab_size);
  download_f32(out.data(), logits_, out.size(), stream_);
  return out;
}

template <typename T>
DistillLoss CudaModel<T>::distill(const T* teacher_logits, double alpha, double temperature) {
  FW_CHECK(have_targets_ && act_block_ && !dlogits_ready_, kInvalidArgument,
           "distill() needs a forward() with targets and the fused loss off");
  FW_CHECK(alpha >= 0 && alpha <= 1, kInvalidArgument, "distillation alpha must be in [0, 1], got " << alpha);
  FW_CHECK(temperature > 0, kInvalidArgument, "distillation temperature must be > 0, got " << temperature);
  const int N = B_ * T_, V = cfg.vocab_size;
  cudaStream_t s = stream_;
  // losses_ and lse_ take the per-row ce and kl: the cross-entropy backward,
  // their only other reader, does not run once dlogits are ready.
  FW_OP("distillation");
  distill_forward_backward(logits_, losses_, lse_, teacher_logits, targets_, N, V, (float)alpha, (float)temperature,
                           (float)(loss_scale_ / normalizer_), s);
  std::vector<float> ce(N), kl(N);
  FW_OP("losses to host");
  FW_CUDA_CHECK(cudaMemcpyAsync(ce.data(), losses_, (size_t)N * sizeof(float), cudaMemcpyDeviceToHost, s));
  FW_CUDA_CHECK(cudaMemcpyAsync(kl.data(), lse_, (size_t)N * sizeof(float), cudaMemcpyDeviceToHost, s));
  if (prof_) prof_->stop(s);
  FW_CUDA_CHECK(cudaStreamSynchronize(s));
  dlogits_ready_ = true;
  DistillLoss out;
  for (int n = 0; n < N; n++) {  // in row order, as distill_loss on the CPU
    out.ce += ce[n];
    out.kl += kl[n];
  }
  out.ce /= normalizer_;
  out.kl /= normalizer_;
  out.total = (1 - alpha) * out.ce + alpha * temperature * temperature * out.kl;
  return out;
}

// ---------------------------------------------------------------- decode

// Decode scratch for (B, T) tokens against caches of capacity S, carved in
// this order by ensure_decode and forward_cached_device.
template <typename T>
struct DecodeBufs {
  T *x, *ln, *q, *k, *v, *atty, *gate, *up, *last;
  float *rstd, *lse, *ws;
  int32_t* tokens;
};

template <typename T>
static DecodeBufs<T> carve_decode(const Config& c, int B, int T_len, int S, void* base, size_t* bytes) {
  const size_t N = (size_t)B * T_len, C = c.hidden_size, I = c.intermediate_size,
               QD = (size_t)c.num_attention_heads * c.head_dim, KD = (size_t)c.num_key_value_heads * c.head_dim;
  Carver cv(base);
  DecodeBufs<T> d;
  d.x = cv.take<T>(N * C);
  d.ln = cv.take<T>(N * C);
  d.q = cv.take<T>(N * QD);
  d.k = cv.take<T>(N * KD);
  d.v = cv.take<T>(N * KD);
  d.atty = cv.take<T>(N * QD);
  d.gate = cv.take<T>(N * I);
  d.up = cv.take<T>(N * I);
  d.last = cv.take<T>((size_t)B * C);
  d.rstd = cv.take<float>(N);
  d.lse = cv.take<float>(N * c.num_attention_heads);
  d.ws = cv.take<float>(attention_decode_workspace_floats(B, T_len, c.num_attention_heads, S, c.head_dim));
  d.tokens = cv.take<int32_t>(N);
  if (bytes) *bytes = cv.bytes();
  return d;
}

template <typename T>
void CudaModel<T>::ensure_decode(int B, int T_len, int S) {
  // The scratch holds nothing from one step to the next, so any shape that
  // fits reuses it; it only grows. A captured graph stays valid until then.
  size_t bytes = 0;
  carve_decode<T>(cfg, B, T_len, S, nullptr, &bytes);
  const size_t counters = attention_decode_counters(B, T_len, cfg.num_attention_heads);
  if (dec_block_ && bytes <= dec_bytes_ && counters <= dec_counters_n_) return;
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  FW_CUDA_CHECK(cudaStreamIsCapturing(stream_, &cs));
  FW_CHECK(cs == cudaStreamCaptureStatusNone, kInvalidArgument,
           "decode scratch for a new shape cannot be allocated during graph capture (run one step first)");
  FW_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the old scratch may still be in use
  if (!dec_block_ || bytes > dec_bytes_) {
    cudaFree(dec_block_);
    dec_block_ = nullptr;
    dec_bytes_ = 0;
    FW_CUDA_CHECK(cudaMalloc(&dec_block_, bytes));
    dec_bytes_ = bytes;
  }
  if (counters > dec_counters_n_) {
    cudaFree(dec_counters_);
    dec_counters_ = nullptr;
    dec_counters_n_ = 0;
    FW_CUDA_CHECK(cudaMalloc(&dec_counters_, counters * sizeof(int)));
    FW_CUDA_CHECK(cudaMemsetAsync(dec_counters_, 0, counters * sizeof(int), stream_));
    FW_CUDA_CHECK(cudaStreamSynchronize(stream_));  // zero before a graph replays on any stream
    dec_counters_n_ = counters;
  }
  scratch_gen_++;
}

template <typename T>
void CudaModel<T>::forward_cached(const int32_t* tokens, int B, int T_len, CudaKVCache<T>& cache, T* logits_out,
                                  bool all_logits) {
  check_tokens(tokens, nullptr, B, T_len);
  ensure_decode(B, T_len, cache.S);
  DecodeBufs<T> d = carve_decode<T>(cfg, B, T_len, cache.S, dec_block_, nullptr);
  FW_CUDA_CHECK(cudaMemcpyAsync(d.tokens, tokens, (size_t)B * T_len * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
  forward_cached_device(d.tokens, B, T_len, cache, logits_out, all_logits);
}

template <typename T>
void CudaModel<T>::forward_cached_device(const int32_t* d_tokens, int B, int T_len, CudaKVCache<T>& cache,
                                         T* logits_out, bool all_logits) {
  const Config& c = cfg;
  FW_CHECK_HINT(!lora_, kUnsupported, "KV-cache decode with an attached LoRA adapter",
                "merge the adapter into the weights (LoraT::merge_into) and load those");
  FW_CHECK(cache.L == c.num_hidden_layers && cache.B == B && cache.KVH == c.num_key_value_heads &&
               cache.HS == c.head_dim,
           kInvalidArgument, "KV cache shape does not match the model and batch");
  const int pos0 = cache.len;
  FW_CHECK(T_len > 0 && pos0 + T_len <= cache.S, kInvalidArgument,
           "decode past the KV cache capacity: " << pos0 << " + " << T_len << " > " << cache.S);
  ensure_decode(B, T_len, cache.S);
  DecodeBufs<T> d = carve_decode<T>(cfg, B, T_len, cache.S, dec_block_, nullptr);
  const int N = B * T_len, C = c.hidden_size, I = c.intermediate_size, NH = c.num_attention_heads,
            KVH = c.num_key_value_heads, HS = c.head_dim, QD = NH * HS, KD = KVH * HS, V = c.vocab_size;
  // A prompt into an empty cache is ordinary causal attention over the
  // chunk itself; everything else reads the cache at the device position.
  const bool prefill = pos0 == 0 && T_len > 1;
  // Up to kGemvMaxRows rows (decode at small batch): the projections run as
  // warp-per-channel GEMVs (gemv.cuh), q/k/v in one launch (past a prefill
  // with RoPE and the cache append folded in), gate/up fused with SwiGLU, o
  // and down added into x in place; cuBLAS otherwise.
  const bool gv = gemv_fits<T>(N, C) && gemv_fits<T>(N, QD) && gemv_fits<T>(N, I);
  const bool q8 = !q8_.empty();  // INT8 weights (set_int8_decode) take precedence
  auto q8mm = [&](T* out, const T* in, int l, int w, const T* bias) {
    const Q8& m = q8_[(size_t)l * 7 + w];
    matmul_q8<T>(out, in, m.q, m.scale, bias, N, m.oc, m.ic, stream_);
  };
  // On the GEMV path the RMSNorms fold into the projections after them
  // (gemv_rmsnorm: the same bits, one launch fewer each).
  const bool fold_norm = gv && !q8;
  const float eps = (float)c.rms_norm_eps;
  T* x = d.x;
  cudaStream_t s = stream_;
  // Profiling marks (op_profiler.h) for the plain steps only: events inside
  // a graph being captured cannot be timed.
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  if (prof_) FW_CUDA_CHECK(cudaStreamIsCapturing(s, &capture));
  OpProfiler* const dprof = capture == cudaStreamCaptureStatusNone ? prof_ : nullptr;
  auto dop = [&](const char* name) {
    if (dprof) dprof->mark(name, s);
  };
  dop("decode embedding");
  embedding_forward(x, d_tokens, params_ + layout.at("model.embed_tokens.weight").offset, N, C, s);
  for (int l = 0; l < c.num_hidden_layers; l++) {
    const LayerParams<T>& p = lp_[l];
    dop("decode q/k/v");
    if (!fold_norm) rmsnorm_forward(d.ln, d.rstd, x, p.ln1, N, C, c.rms_norm_eps, s);
    if (q8) {
      q8mm(d.q, d.ln, l, 0, p.bq);
      q8mm(d.k, d.ln, l, 1, p.bk);
      q8mm(d.v, d.ln, l, 2, p.bv);
    } else if (gv && !prefill) {
      // q/k/v, RoPE and the cache append in one launch (rope_append_dpos's bits)
      QkvRope<T> a;
      a.wq = p.wq, a.bq = p.bq, a.wk = p.wk, a.bk = p.bk, a.wv = p.wv, a.bv = p.bv;
      a.q = d.q, a.k = d.k, a.v = d.v;
      a.k_cache = cache.k_layer(l), a.v_cache = cache.v_layer(l);
      a.cos_t = rope_cos_, a.sin_t = rope_sin_, a.d_pos = cache.d_len;
      a.NH = NH, a.KVH = KVH, a.HS = HS, a.Tq = T_len, a.S = cache.S;
      gemv_rmsnorm_qkv_rope(x, p.ln1, eps, N, C, a, s);
    } else if (gv) {
      const GemvOut<T> qkv[3] = {{p.wq, p.bq, d.q, QD}, {p.wk, p.bk, d.k, KD}, {p.wv, p.bv, d.v, KD}};
      gemv_rmsnorm(x, p.ln1, eps, N, C, qkv, 3, s);
    } else {
      linear_forward(blas_, d.q, d.ln, p.wq, p.bq, N, C, QD, s);
      linear_forward(blas_, d.k, d.ln, p.wk, p.bk, N, C, KD, s);
      linear_forward(blas_, d.v, d.ln, p.wv, p.bv, N, C, KD, s);
    }
    if (prefill) {
      dop("decode attention");
      rope_forward(d.q, rope_cos_, rope_sin_, B, T_len, NH, HS, 0, s);
      rope_forward(d.k, rope_cos_, rope_sin_, B, T_len, KVH, HS, 0, s);
      kv_cache_append(cache.k_layer(l), cache.v_layer(l), d.k, d.v, B, T_len, KVH, cache.S, HS, 0, s);
      attention_forward(d.atty, d.lse, d.q, d.k, d.v, B, T_len, NH, KVH, HS, s);
    } else {
      if (!gv || q8) {  // else done by gemv_rmsnorm_qkv_rope
        dop("decode rope + cache append");
        rope_append_dpos(d.q, d.k, d.v, cache.k_layer(l), cache.v_layer(l), rope_cos_, rope_sin_, B, T_len, NH, KVH,
                         cache.S, HS, cache.d_len, s);
      }
      dop("decode attention");
      attention_decode_dpos(d.atty, d.q, cache.k_layer(l), cache.v_layer(l), B, T_len, NH, KVH, cache.S, HS,
                            cache.d_len, d.ws, dec_counters_, s);
    }
    dop("decode o");
    if (q8) {
      q8mm(d.ln, d.atty, l, 3, p.bo);  // d.ln is free until the next norm
      add_inplace(x, d.ln, (size_t)N * C, s);
    } else if (gv) {
      const GemvOut<T> o = {p.wo, p.bo, x, C};
      gemv(d.atty, N, QD, &o, 1, true, s);  // x += o_proj (+ bo)
    } else {
      gemm(blas_, false, true, N, C, QD, 1.0f, d.atty, QD, p.wo, QD, 1.0f, x, C, s);  // x += o_proj
      if (p.bo) bias_add_forward(x, p.bo, N, C, s);
    }
    dop("decode gate/up");
    if (!fold_norm) rmsnorm_forward(d.ln, d.rstd, x, p.ln2, N, C, c.rms_norm_eps, s);
    if (q8) {
      q8mm(d.gate, d.ln, l, 4, nullptr);
      q8mm(d.up, d.ln, l, 5, nullptr);
      swiglu_forward(d.gate, d.gate, d.up, (size_t)N * I, s);
      dop("decode down");
      q8mm(d.ln, d.gate, l, 6, nullptr);
      add_inplace(x, d.ln, (size_t)N * C, s);
    } else if (gv) {
      gemv_swiglu_rmsnorm(d.gate, x, p.ln2, eps, p.wgate, p.wup, N, C, I, s);
      dop("decode down");
      const GemvOut<T> down = {p.wdown, nullptr, x, C};
      gemv(d.gate, N, I, &down, 1, true, s);  // x += down
    } else {
      linear_forward(blas_, d.gate, d.ln, p.wgate, (const T*)nullptr, N, C, I, s);
      linear_forward(blas_, d.up, d.ln, p.wup, (const T*)nullptr, N, C, I, s);
      swiglu_forward(d.gate, d.gate, d.up, (size_t)N * I, s);  // elementwise: in place is safe
      dop("decode down");
      gemm(blas_, false, true, N, C, I, 1.0f, d.gate, I, p.wdown, I, 1.0f, x, C, s);  // x += down
    }
  }
  const T* wnorm = params_ + layout.at("model.norm.weight").offset;
  const T* wlm = params_ + layout.at(c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight").offset;
  dop("decode final norm + lm_head");
  if (all_logits || T_len == 1) {
    const int rows = all_logits ? N : B;  // = N: every position, or one per sequence
    if (q8) {
      rmsnorm_forward(d.ln, d.rstd, x, wnorm, N, C, c.rms_norm_eps, s);
      const Q8& m = q8_.back();
      matmul_q8<T>(logits_out, d.ln, m.q, m.scale, (const T*)nullptr, rows, m.oc, m.ic, s);
    } else if (gemv_fits<T>(rows, C)) {
      // the final norm folded in too: the GEMV's grid is one wave of blocks
      // that loop over the vocabulary, so each block computes 1/rms once
      const GemvOut<T> lm = {wlm, nullptr, logits_out, V};
      gemv_rmsnorm(x, wnorm, eps, rows, C, &lm, 1, s);
    } else {
      rmsnorm_forward(d.ln, d.rstd, x, wnorm, N, C, c.rms_norm_eps, s);
      linear_forward(blas_, logits_out, d.ln, wlm, (const T*)nullptr, rows, C, V, s);
    }
  } else {
    // the last position of each sequence: rows t = T-1 of (B, T, C)
    FW_CUDA_CHECK(cudaMemcpy2DAsync(d.last, C * sizeof(T), x + (size_t)(T_len - 1) * C,
                                    (size_t)T_len * C * sizeof(T), C * sizeof(T), B, cudaMemcpyDeviceToDevice, s));
    rmsnorm_forward(d.ln, d.rstd, d.last, wnorm, B, C, c.rms_norm_eps, s);
    if (q8) {
      const Q8& m = q8_.back();
      matmul_q8<T>(logits_out, d.ln, m.q, m.scale, (const T*)nullptr, B, m.oc, m.ic, s);
    } else {
      linear_forward(blas_, logits_out, d.ln, wlm, (const T*)nullptr, B, C, V, s);
    }
  }
  dop("decode position");
  add_device_int(cache.d_len, T_len, s);
  if (dprof) dprof->stop(s);
  cache.len += T_len;
}

template <typename T>
CudaDecodeGraph CudaModel<T>::capture_decode(const int32_t* d_tokens, int B, int T_len, CudaKVCache<T>& cache,
                                             T* logits_out, const std::function<void(cudaStream_t)>& after) {
  FW_CHECK(stream_ != nullptr, kInvalidArgument, "graph capture needs a model on a non-default stream");
  ensure_decode(B, T_len, cache.S);  // no allocation may happen inside the capture
  const int saved = cache.len;
  // Host-side bookkeeping only (the graph reads cache.d_len): 1 keeps a
  // multi-token step off the prefill path, whose positions are fixed.
  const int probe = T_len == 1 ? 0 : 1;
  FW_CHECK(probe + T_len <= cache.S, kInvalidArgument,
           "a " << T_len << "-token decode step does not fit a KV cache of " << cache.S);
  cache.len = probe;
  cudaGraph_t g = nullptr;
  FW_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  try {
    forward_cached_device(d_tokens, B, T_len, cache, logits_out, false);
    if (after) after(stream_);
  } catch (...) {
    cudaStreamEndCapture(stream_, &g);
    if (g) cudaGraphDestroy(g);
    cache.len = saved;
    throw;
  }
  cache.len = saved;
  FW_CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
  CudaDecodeGraph out;
  out.T = T_len;
  out.scratch_gen = &scratch_gen_;
  out.gen = scratch_gen_;
  const cudaError_t e = cudaGraphInstantiate(&out.exec, g, 0);
  cudaGraphDestroy(g);
  FW_CUDA_CHECK(e);
  return out;
}

// ---------------------------------------------------------------- trainer

template <typename T>
CudaTrainer<T>::CudaTrainer(CudaModel<T>& model, const TrainConfig& cfg, NcclCollective* coll, bool zero1,
                            size_t bucket_bytes, CudaLora<T>* lora, CudaModel<T>* teacher)
    : model_(model), lora_(lora), teacher_(teacher), cfg_(cfg), coll_(coll), zero1_(zero1), bucket_bytes_(bucket_bytes) {
  check_train_config(cfg);
  if (lora_) {
    FW_CHECK_HINT(!model_.has_grads(), kInvalidArgument, "LoRA training needs a frozen base model",
                  "do not call enable_grads() on the base model");
    FW_CHECK(lora_->mcfg.num_hidden_layers == model_.cfg.num_hidden_layers &&
                 lora_->mcfg.hidden_size == model_.cfg.hidden_size,
             kInvalidArgument, "the LoRA adapter does not match the model's shape");
    FW_CHECK(lora_->stream() == model_.stream(), kInvalidArgument,
             "the LoRA adapter and the model must be on the same stream");
    model_.set_lora(lora_);
  } else {
    model_.set_lora(nullptr);
    model_.enable_grads();
  }
  if (teacher_) {
    FW_CHECK(teacher_->cfg.vocab_size == model_.cfg.vocab_size, kInvalidArgument,
             "teacher vocab " << teacher_->cfg.vocab_size << " != student vocab " << model_.cfg.vocab_size);
    teacher_->set_recompute(true);  // forward only: one layer of activations
    teacher_->set_training(false);
  }
  model_.set_recompute(cfg.recompute);
  // The distillation loss needs the student's logits after the forward.
  model_.set_fused_loss(teacher_ == nullptr);
  sched_ = lr_schedule(cfg);
  const int world = coll_ ? coll_->world_size() : 1;
  const size_t n = tnumel();
  FW_CHECK(!zero1_ || (size_t)world <= kShardSlack, kUnsupported, "ZeRO-1 supports at most 1024 ranks");
  if (zero1_) {
    const size_t count = (n + world - 1) / world;
    numel_ = count * world;
    const int r = coll_ ? coll_->rank() : 0;
    shard_begin_ = count * r;
    shard_end_ = count * (r + 1);
    FW_CUDA_CHECK(cudaMalloc(&grad_shard_, count * sizeof(T)));
  } else {
    numel_ = n;
    shard_begin_ = 0;
    shard_end_ = n;
  }
  const size_t shard = shard_end_ - shard_begin_;
  // moments (and the 16-bit modes' master) cover this rank's shard only
  FW_CUDA_CHECK(cudaMalloc(&m_, shard * sizeof(float)));
  FW_CUDA_CHECK(cudaMalloc(&v_, shard * sizeof(float)));
  FW_CUDA_CHECK(cudaMemsetAsync(m_, 0, shard * sizeof(float), model_.stream()));
  FW_CUDA_CHECK(cudaMemsetAsync(v_, 0, shard * sizeof(float), model_.stream()));
  opt_bytes_ = 2 * shard * sizeof(float);
  if constexpr (has_master<T>()) {
    FW_CUDA_CHECK(cudaMalloc(&master_, shard * sizeof(float)));
    to_f32_buffer(master_, tparams() + shard_begin_, shard, model_.stream());
    opt_bytes_ += shard * sizeof(float);
  }
  if constexpr (kLossScaling) FW_CUDA_CHECK(cudaMalloc(&found_inf_, sizeof(int)));
  FW_CUDA_CHECK(cudaMalloc(&norm_, sizeof(float)));
  FW_CUDA_CHECK(cudaMalloc(&norm_scratch_, global_norm_scratch_floats() * sizeof(float)));
  FW_CUDA_CHECK(cudaStreamSynchronize(model_.stream()));
}

template <typename T>
CudaTrainer<T>::~CudaTrainer() {
  model_.on_grads_ready = nullptr;
  model_.set_fused_loss(false);
  model_.set_loss_scale(1.0f);
  cudaFree(master_);
  cudaFree(found_inf_);
  cudaFree(m_);
  cudaFree(v_);
  cudaFree(norm_);
  cudaFree(norm_scratch_);
  cudaFree(grad_shard_);
}

template <typename T>
void CudaTrainer<T>::load_master(const float* host) {
  const size_t shard = shard_end_ - shard_begin_;
  const size_t n = std::min(shard, tnumel() - std::min(tnumel(), shard_begin_));
  if (has_master<T>()) {
    FW_CUDA_CHECK(cudaMemcpyAsync(master_, host + shard_begin_, n * sizeof(float), cudaMemcpyHostToDevice,
                                  model_.stream()));
    FW_CUDA_CHECK(cudaStreamSynchronize(model_.stream()));
  }
  if (lora_)
    lora_->load_params(host);
  else
    model_.load_params(host);
}

template <typename T>
void CudaTrainer<T>::download_master(float* host) const {
  const size_t n = tnumel();
  // the working copy (gathered with ZeRO-1), then this rank's shard from the master
  if (lora_)
    lora_->download_params(host);
  else
    model_.download_params(host);
  if (!has_master<T>()) return;
  const size_t m = std::min(shard_end_, n) - std::min(shard_begin_, n);
  FW_CUDA_CHECK(cudaMemcpyAsync(host + shard_begin_, master_, m * sizeof(float), cudaMemcpyDeviceToHost,
                                model_.stream()));
  FW_CUDA_CHECK(cudaStreamSynchronize(model_.stream()));
}

template <typename T>
void CudaTrainer<T>::download_moments(float* m, float* v) const {
  const size_t n = std::min(shard_end_, tnumel()) - std::min(shard_begin_, tnumel());
  cudaStream_t s = model_.stream();
  FW_CUDA_CHECK(cudaMemcpyAsync(m + shard_begin_, m_, n * sizeof(float), cudaMemcpyDeviceToHost, s));
  FW_CUDA_CHECK(cudaMemcpyAsync(v + shard_begin_, v_, n * sizeof(float), cudaMemcpyDeviceToHost, s));
  FW_CUDA_CHECK(cudaStreamSynchronize(s));
}

template <typename T>
void CudaTrainer<T>::load_moments(const float* m, const float* v) {
  const size_t n = std::min(shard_end_, tnumel()) - std::min(shard_begin_, tnumel());
  cudaStream_t s = model_.stream();
  FW_CUDA_CHECK(cudaMemcpyAsync(m_, m + shard_begin_, n * sizeof(float), cudaMemcpyHostToDevice, s));
  FW_CUDA_CHECK(cudaMemcpyAsync(v_, v + shard_begin_, n * sizeof(float), cudaMemcpyHostToDevice, s));
  FW_CUDA_CHECK(cudaStreamSynchronize(s));
}

// AdamW over this rank's shard [shard_begin_, shard_end_) of the flat
// trainable buffer, tensor by tensor (weight decay differs between tensors).
// The gradient is the trainable grads (or grad_shard_ with ZeRO-1), the fp32
// master is the parameters themselves in fp32 mode.
template <typename T>
void CudaTrainer<T>::adamw(double lr, double clip) {
  cudaStream_t s = model_.stream();
  const size_t b = shard_begin_, e = shard_end_;
  T* params = tparams();
  T* grads = tgrads();
  for (const TensorInfo& ti : trainable_layout().tensors) {
    const size_t lo = std::max(b, ti.offset), hi = std::min(e, ti.offset + ti.numel);
    if (lo >= hi) continue;
    AdamWStep st;
    st.lr = (float)lr;
    st.beta1 = (float)cfg_.beta1;
    st.beta2 = (float)cfg_.beta2;
    st.eps = (float)cfg_.eps;
    st.weight_decay = (ti.decay || cfg_.decay_norms_and_biases) ? (float)cfg_.weight_decay : 0.0f;
    st.grad_scale = (float)clip;
    st.t = step_ + 1;
    const T* g = zero1_ ? grad_shard_ + (lo - b) : grads + lo;
    if constexpr (has_master<T>()) {
      adamw_update<T>(master_ + (lo - b), params + lo, m_ + (lo - b), v_ + (lo - b), g, hi - lo, st, s);
    } else {
      adamw_update<T>(params + lo, (bf16*)nullptr, m_ + (lo - b), v_ + (lo - b), g, hi - lo, st, s);
    }
  }
}

template <typename T>
StepResult CudaTrainer<T>::step(const int32_t* tokens, const int32_t* targets, int B, int T_len) {
  StepResult r;
  r.tokens = check_step_batch(cfg_, targets, B, T_len);
  const int k = cfg_.grad_accum, mb = B / k;
  const size_t mbn = (size_t)mb * T_len;
  cudaStream_t s = model_.stream();
  const bool dp = coll_ && coll_->world_size() > 1;
  const int dtype = nccl_type<T>();
  if (dp) {
    double count = (double)r.tokens;
    coll_->allreduce_sum(&count, 1);
    r.tokens = (int64_t)count;
  }
  const double norm = (double)std::max<int64_t>(r.tokens, 1);
  // fp16: backward runs on the loss times the scale (LossScaler), so small
  // gradients survive fp16's range; the norm and AdamW divide it out.
  const float step_scale = kLossScaling ? scaler_.scale : 1.0f;
  model_.set_loss_scale(step_scale);
  model_.set_training(true);
  model_.set_dropout_step((uint64_t)step_);
  OpProfiler* prof = model_.profiler();
  if (prof) prof->mark("zero grads", s);
  if (lora_)
    lora_->zero_grad();
  else
    model_.zero_grad();
  last_buckets_ = 0;
  last_distill_ = DistillLoss{};
  T* grads = tgrads();
  const size_t numel = tnumel();
  size_t sent_until = numel;
  // The overlap callback below captures this call's locals: it must not
  // outlive the call, also when a collective throws during backward.
  struct ClearCallback {
    CudaModel<T>& m;
    ~ClearCallback() { m.on_grads_ready = nullptr; }
  } clear_callback{model_};
  for (int i = 0; i < k; i++) {
    // Overlap: during the last micro-batch's backward, each stretch of the
    // model's gradient buffer that is final and at least a bucket long starts
    // its all-reduce on NCCL's stream while backward goes on. (A LoRA
    // adapter's gradients are small and reduced in one piece after.)
    if (dp && !zero1_ && !lora_ && i == k - 1) {
      model_.on_grads_ready = [&](size_t ready_from) {
        const size_t len = sent_until - ready_from;
        if (len * sizeof(T) < bucket_bytes_ && ready_from > 0) return;
        if (len == 0) return;
        coll_->allreduce_async(grads + ready_from, len, dtype, s);
        sent_until = ready_from;
        last_buckets_++;
      };
    } else {
      model_.on_grads_ready = nullptr;
    }
    const int32_t* tok = tokens + i * mbn;
    const int32_t* tgt = targets + i * mbn;
    if (!teacher_) {
      r.loss += (double)model_.forward(tok, tgt, mb, T_len, norm);
    } else {
      model_.forward(tok, tgt, mb, T_len, norm);
      teacher_->forward(tok, nullptr, mb, T_len);  // synchronises: its logits are ready
      const DistillLoss d = model_.distill(teacher_->logits(), cfg_.distill_alpha, cfg_.distill_temperature);
      last_distill_ += d;
      r.loss += d.total;
    }
    model_.backward();
  }
  model_.on_grads_ready = nullptr;
  if (prof) prof->mark("gradient all-reduce wait", s);
  if (dp) {
    if (zero1_) {
      const size_t count = shard_end_ - shard_begin_;
      coll_->reduce_scatter_async(grads, grad_shard_, count, dtype, s);
    } else if (lora_) {
      coll_->allreduce_async(grads, numel, dtype, s);
    }
    coll_->wait_all(s);
    allreduce_loss_parts(*coll_, r.loss, last_distill_);
  } else if (zero1_) {
    FW_CUDA_CHECK(cudaMemcpyAsync(grad_shard_, grads, (shard_end_ - shard_begin_) * sizeof(T),
                                  cudaMemcpyDeviceToDevice, s));
  }
  if constexpr (kLossScaling) {
    // An inf or NaN anywhere (in any rank's shard) skips the step and lowers
    // the scale; the gradients stay scaled (AdamW unscales them in fp32).
    if (prof) prof->mark("overflow check", s);
    FW_CUDA_CHECK(cudaMemsetAsync(found_inf_, 0, sizeof(int), s));
    if (zero1_)
      grad_unscale_check<T>(grad_shard_, shard_end_ - shard_begin_, 1.0f, found_inf_, s);
    else
      grad_unscale_check<T>(grads, numel, 1.0f, found_inf_, s);
    int found = 0;
    FW_CUDA_CHECK(cudaMemcpyAsync(&found, found_inf_, sizeof(int), cudaMemcpyDeviceToHost, s));
    if (prof) prof->stop(s);
    FW_CUDA_CHECK(cudaStreamSynchronize(s));
    double any = found;
    if (dp) coll_->allreduce_sum(&any, 1);
    if (!scaler_.update(any > 0)) {
      r.skipped = true;
      r.grad_norm = INFINITY;
      r.lr = sched_.at(step_);
      return r;
    }
  }
  // global gradient norm (fp32 sum of squares; the shards' sums add up with ZeRO-1)
  if (prof) prof->mark("grad norm", s);
  if (zero1_)
    grad_sumsq<T>(norm_, norm_scratch_, grad_shard_, shard_end_ - shard_begin_, s);
  else
    grad_sumsq<T>(norm_, norm_scratch_, grads, numel, s);
  float sumsq = 0;
  FW_CUDA_CHECK(cudaMemcpyAsync(&sumsq, norm_, sizeof(float), cudaMemcpyDeviceToHost, s));
  if (prof) prof->stop(s);
  FW_CUDA_CHECK(cudaStreamSynchronize(s));
  double total = sumsq;
  if (dp && zero1_) coll_->allreduce_sum(&total, 1);
  r.grad_norm = std::sqrt(total) / step_scale;
  r.lr = sched_.at(step_);
  if (!std::isfinite(r.grad_norm)) {
    r.skipped = true;
    return r;
  }
  if (prof) prof->mark("adamw", s);
  adamw(r.lr, clip_scale(cfg_.grad_clip, r.grad_norm) / step_scale);
  if (dp && zero1_) {
    // every rank's updated shard to every rank
    const size_t count = shard_end_ - shard_begin_;
    if (prof) prof->mark("zero1 all-gather", s);
    coll_->all_gather_async(tparams() + shard_begin_, tparams(), count, dtype, s);
    coll_->wait_all(s);
  }
  if (prof) prof->stop(s);
  FW_CUDA_CHECK(cudaStreamSynchronize(s));
  step_++;
  return r;
}

template <typename T>
double CudaTrainer<T>::eval_loss(const int32_t* tokens, const int32_t* targets, int B, int T_len) {
  // cross-entropy only, no dropout, as TrainerT::eval_loss
  model_.set_fused_loss(false);
  model_.set_training(false);
  const double loss = (double)model_.forward(tokens, targets, B, T_len);
  model_.set_training(true);
  model_.set_fused_loss(teacher_ == nullptr);
  return loss;
}

template struct CudaKVCache<float>;
template struct CudaKVCache<bf16>;
template struct CudaKVCache<f16>;
template class CudaModel<float>;
template class CudaModel<bf16>;
template class CudaModel<f16>;
template class CudaTrainer<float>;
template class CudaTrainer<bf16>;
template class CudaTrainer<f16>;

}  // namespace cuda
}  // namespace fw
