// model_cuda.h: the Llama-family decoder (engine/model.h) on the GPU, its
// training step (engine/train.h) and KV-cache decode.
//
// Same architecture, parameter layout and semantics as fw::ModelT on the CPU,
// so a checkpoint moves between backends tensor by tensor:
//
//   fw::Model cpu(cfg); cpu.init_random(seed);           // or load safetensors
//   fw::cuda::Blas blas;
//   fw::cuda::CudaModel<bf16> gpu(cfg, blas);            // or <float>
//   gpu.load_params(cpu.params.data());                  // fp32 host -> device T
//   fw::cuda::CudaTrainer<bf16> tr(gpu, tcfg);           // fp32 master + AdamW
//   fw::StepResult r = tr.step(tokens, targets, B, T);   // host int32 (B, T)
//
// Storage type T is float (fp32 training: parity with the CPU at 1e-4), bf16
// (mixed precision: bf16 weights, activations and gradients, fp32 master
// weights and AdamW moments, fp32 statistics and loss) or f16 (the same in
// fp16, with dynamic loss scaling in CudaTrainer; attention runs on the
// CUDA-core kernels, the tensor-core ones being bf16 only). GEMMs run on
// cuBLAS with fp32 accumulation; the rest are the fused kernels of
// native/cuda.
//
// Memory: parameters and gradients (T) in one flat buffer each, with the CPU's
// ParamLayout offsets; per-layer saved activations (T) plus fp32 statistics;
// one logits buffer (B, T, V) reused for dlogits; backward scratch for one
// layer. Everything is allocated on the first forward of a shape and kept.
//
// Threading: one host thread per model; all work is queued on `stream`.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <type_traits>
#include <utility>
#include <vector>

#include "distill.h"
#include "embedding_plan.h"
#include "gemm_cublas.h"
#include "lora_cuda.h"
#include "model.h"
#include "op_profiler.h"
#include "optim.cuh"
#include "train.h"

namespace fw {
namespace cuda {

using bf16 = __nv_bfloat16;
using f16 = __half;
class NcclCollective;  // collective_nccl.h

// Caller-owned device KV cache: k, v (L, B, KVH, S, HS) of T, post-RoPE keys.
template <typename T>
struct CudaKVCache {
  int L = 0, B = 0, KVH = 0, S = 0, HS = 0;
  int len = 0;  // positions filled (same for every sequence)
  T* k = nullptr;
  T* v = nullptr;
  int* d_len = nullptr;  // len mirrored in device memory: what the decode kernels read
  CudaKVCache() = default;
  CudaKVCache(const Config& cfg, int batch, int capacity);
  ~CudaKVCache();
  CudaKVCache(const CudaKVCache&) = delete;
  CudaKVCache& operator=(const CudaKVCache&) = delete;
  size_t layer_elems() const { return (size_t)B * KVH * S * HS; }
  T* k_layer(int l) const { return k + (size_t)l * layer_elems(); }
  T* v_layer(int l) const { return v + (size_t)l * layer_elems(); }
  size_t bytes() const { return 2 * (size_t)L * layer_elems() * sizeof(T); }
  void reset();  // len = 0 (host and device)
};

// One decode step captured as a CUDA graph (CudaModel::capture_decode):
// replaying it runs every layer's ~20 launches as one, and the positions
// come from the cache's device-side length, so the same graph serves every
// step. launch() checks the capacity on the host and advances cache.len.
struct CudaDecodeGraph {
  cudaGraphExec_t exec = nullptr;
  int T = 1;
  // The model's decode-buffer generation at capture: launch() refuses a
  // graph whose buffers the model has since reallocated or re-quantised
  // (the graph must not outlive the model either).
  const uint64_t* scratch_gen = nullptr;
  uint64_t gen = 0;
  CudaDecodeGraph() = default;
  ~CudaDecodeGraph();
  CudaDecodeGraph(const CudaDecodeGraph&) = delete;
  CudaDecodeGraph& operator=(const CudaDecodeGraph&) = delete;
  CudaDecodeGraph(CudaDecodeGraph&& o) noexcept : exec(o.exec), T(o.T), scratch_gen(o.scratch_gen), gen(o.gen) {
    o.exec = nullptr;
  }
  CudaDecodeGraph& operator=(CudaDecodeGraph&& o) noexcept {
    std::swap(exec, o.exec);
    std::swap(T, o.T);
    std::swap(scratch_gen, o.scratch_gen);
    std::swap(gen, o.gen);
    return *this;
  }
  template <typename TC>
  void launch(CudaKVCache<TC>& cache, cudaStream_t stream);
};

template <typename T>
class CudaModel {
 public:
  CudaModel(const Config& cfg, Blas& blas, cudaStream_t stream = nullptr);
  ~CudaModel();
  CudaModel(const CudaModel&) = delete;
  CudaModel& operator=(const CudaModel&) = delete;

  Config cfg;
  ParamLayout layout;  // llama_param_layout(cfg): the CPU model's layout

  // Parameters from / to fp32 host memory in layout order (layout.numel
  // elements, e.g. fw::Model::params), converted to / from T.
  void load_params(const float* host);
  void download_params(float* host) const;
  // Gradients (layout.numel) to fp32 host memory. Needs enable_grads().
  void download_grads(float* host) const;

  T* params() { return params_; }
  T* grads() { return grads_; }
  void enable_grads();  // allocate zeroed gradients
  bool has_grads() const { return grads_ != nullptr; }
  void zero_grad();

  // tokens, targets: host (B, T) int32 (targets may be nullptr: no loss).
  // Same contract as ModelT::forward: ids are checked (kInvalidArgument),
  // loss is the mean over non-ignored targets, or the sum divided by
  // loss_normalizer when that is > 0. Returns the loss (synchronises).
  float forward(const int32_t* tokens, const int32_t* targets, int B, int T_, double loss_normalizer = 0);
  // d loss / d params for the last forward (which had targets), accumulated
  // (+=) into grads. Invalidates logits (the buffer becomes dlogits).
  // on_grads_ready, when set, is called as backward proceeds: with the
  // element offset from which the gradient buffer is final (every element
  // at or after it gets no more contributions in this backward), so a
  // caller can start reducing those gradients while backward goes on.
  void backward();
  std::function<void(size_t ready_from)> on_grads_ready;

  // Training: forward computes the loss and dlogits in one pass over the
  // logits (they are not kept), so backward starts from dlogits. The
  // trainer switches it on; logits_host() is then meaningless.
  void set_fused_loss(bool on) { fused_loss_ = on; }
  // Gradients of backward are of loss * scale (fp16 loss scaling; the
  // trainer sets it). The returned loss is unscaled.
  void set_loss_scale(float scale) { loss_scale_ = scale; }

  // Logits of the last forward (B, T, V), as fp32 on the host.
  std::vector<float> logits_host() const;
  const T* logits() const { return logits_; }

  // Incremental decode: tokens (B, T) host int32 at positions cache.len ..
  // cache.len + T - 1; writes the last position's logits (B, V) into the
  // device buffer logits_out (or all (B, T, V) when all_logits), advances
  // cache.len. No backward state is kept.
  void forward_cached(const int32_t* tokens, int B, int T_, CudaKVCache<T>& cache, T* logits_out,
                      bool all_logits = false);
  // The same from device-resident tokens (B, T) without a host copy or sync
  // (used by the decode loop and CUDA-graph capture); token ids are not
  // checked. A prefill (cache empty, T > 1) runs the training attention
  // (flash, tensor cores in bf16); later chunks and single tokens run the
  // split-K decode attention at the cache's device-side position.
  void forward_cached_device(const int32_t* d_tokens, int B, int T_, CudaKVCache<T>& cache, T* logits_out,
                             bool all_logits = false);
  // Capture one step (T new tokens per sequence from d_tokens, last-position
  // logits into logits_out, then `after` on the stream, e.g. an argmax that
  // writes the next tokens into d_tokens) as a CUDA graph. Nothing runs
  // during capture; cache.len is unchanged.
  CudaDecodeGraph capture_decode(const int32_t* d_tokens, int B, int T_, CudaKVCache<T>& cache, T* logits_out,
                                 const std::function<void(cudaStream_t)>& after = nullptr);

  // INT8 weight-only decode, as fw::InferEngine with int8: q/k/v/o,
  // gate/up/down and the lm_head quantised per output channel (quant.h,
  // from the current parameters); forward_cached / forward_cached_device then
  // run them through matmul_q8 (4x fewer weight bytes per token). forward()
  // and training are unaffected. Call again after the parameters change.
  void set_int8_decode(bool on);
  bool int8_decode() const { return !q8_.empty(); }
  size_t int8_bytes() const {  // int8 weights plus fp32 scales, as QuantMatrix::bytes
    size_t b = 0;
    for (const Q8& m : q8_) b += (size_t)m.oc * m.ic + (size_t)m.oc * sizeof(float);
    return b;
  }

  // LoRA (lora_cuda.h): the targeted projections add the adapter's output
  // and backward fills the adapter's gradients; the base model is frozen
  // (do not enable_grads()). Not owned; nullptr detaches. Decode refuses an
  // attached adapter (merge it into the weights for serving).
  void set_lora(CudaLora<T>* lora) {
    FW_CHECK(!lora || (lora->stream() == stream_ && lora->mcfg.num_hidden_layers == cfg.num_hidden_layers &&
                       lora->mcfg.hidden_size == cfg.hidden_size &&
                       lora->mcfg.intermediate_size == cfg.intermediate_size &&
                       lora->mcfg.num_attention_heads == cfg.num_attention_heads &&
                       lora->mcfg.num_key_value_heads == cfg.num_key_value_heads &&
                       lora->mcfg.head_dim == cfg.head_dim),
             kInvalidArgument, "set_lora: the adapter is for another model shape or on another stream");
    lora_ = lora;
  }
  CudaLora<T>* lora() const { return lora_; }
  // Training mode (the default): LoRA dropout is active, keyed by the step
  // (set_dropout_step, as ModelT). Off for evaluation.
  void set_training(bool on) { training_ = on; }
  void set_dropout_step(uint64_t step) { dropout_step_ = step; }
  // Activation recomputation: forward keeps one layer's activations (plus
  // every layer's input) and backward reruns each layer's forward before its
  // backward, with the same kernels and dropout keys, so the gradients are
  // those of the plain path. Takes effect at the next forward.
  void set_recompute(bool on) { recompute_ = on; }
  bool recompute() const { return recompute_; }

  // Distillation (engine/distill.h) against teacher logits (B, T, V) on the
  // device for the last forward, which had targets and the fused loss off:
  // the logits become the gradient of the mixed loss (times the loss scale),
  // so backward() starts from it. Returns the loss parts, each summed over
  // the rows in order and divided by the forward's normalizer. Synchronises.
  DistillLoss distill(const T* teacher_logits, double alpha, double temperature);

  // Per-op GPU times of forward, backward and CudaTrainer::step go to `p`
  // while it is attached (nullptr detaches); see op_profiler.h.
  void set_profiler(OpProfiler* p) { prof_ = p; }
  OpProfiler* profiler() const { return prof_; }

  // Device bytes held by activations (not parameters, grads or optimizer).
  size_t activation_bytes() const { return act_bytes_; }
  cudaStream_t stream() const { return stream_; }
  Blas& blas() { return blas_; }

 private:
  struct Acts;
  void ensure_acts(int B, int T_);
  void free_acts();
  void check_tokens(const int32_t* tokens, const int32_t* targets, int B, int T_) const;
  void layer_forward(int l, int B, int T_);
  char* slot(int l) const;  // layer l's saved activations (one shared slot with recompute)
  uint64_t dropout_key() const;
  // A projection's forward / backward plus the LoRA adapter's, when it targets (l, m).
  void lora_forward_at(int l, int m, T* out, const T* inp, int N, int IN, int OUT);
  bool qkv_grouped(const LayerParams<T>& p, const T* q, const T* k, const T* v, int N) const;
  bool gate_up_grouped(const LayerParams<T>& p, const T* gate, const T* up, int N) const;
  void lora_backward_at(int l, int m, T* dinp, const T* dout, const T* inp, int N, int IN, int OUT);
  void layer_backward(int l, int B, int T_, T* dx);
  LayerParams<T> layer_ptrs(T* base, int l) const;
  void ensure_decode(int B, int T_, int S);

  Blas& blas_;
  cudaStream_t stream_;
  OpProfiler* prof_ = nullptr;
  CudaLora<T>* lora_ = nullptr;
  bool training_ = true;
  uint64_t dropout_step_ = 0;
  bool recompute_ = false;
  bool acts_recompute_ = false;  // recompute_ when the activations were sized
  bool recomputing_ = false;     // backward is rerunning a layer's forward (profiler label)
  T* params_ = nullptr;
  T* grads_ = nullptr;
  float* rope_cos_ = nullptr;  // (max_position_embeddings, HS/2)
  float* rope_sin_ = nullptr;
  std::vector<LayerParams<T>> lp_;  // device pointers per layer into params_
  std::vector<LayerParams<T>> lg_;  // ... into grads_ (all nullptr without grads)

  // activations for (B_, T_)
  int B_ = 0, T_ = 0;
  size_t act_bytes_ = 0;
  void* act_block_ = nullptr;  // one allocation, carved
  T* resid_ = nullptr;         // (L+1, N, C)
  T* acts_ = nullptr;          // (L or 1, slot) per-layer activations and their fp32 statistics
  T* lnf_ = nullptr;           // (N, C)
  float* rstdf_ = nullptr;     // (N)
  T* logits_ = nullptr;        // (N, V), dlogits in backward
  float* losses_ = nullptr;    // (N)
  float* lse_ = nullptr;       // (N)
  T* scratch_ = nullptr;       // one layer's backward scratch
  float* att_scratch_ = nullptr;  // (N * NH)
  float* rms_scratch_ = nullptr;  // rmsnorm_backward's dweight partial sums
  int32_t* tokens_ = nullptr;  // (N) device
  int32_t* targets_ = nullptr; // (N) device
  int32_t* emb_plan_dev_ = nullptr;      // (3N + 1) device: the embedding backward's plan
  EmbeddingPlan emb_plan_;               // ... built on the host by forward (with grads)
  std::vector<int32_t> emb_plan_host_;   // ... packed for the upload
  bool emb_plan_ready_ = false;          // ... for the last forward
  size_t slot_bytes_ = 0;  // one layer's slot (carve_layer)
  bool have_targets_ = false;
  bool fused_loss_ = false;
  bool dlogits_ready_ = false;
  double normalizer_ = 1.0;
  double loss_scale_ = 1.0;

  // INT8 decode weights: per layer q, k, v, o, gate, up, down, then lm_head
  struct Q8 {
    int8_t* q = nullptr;
    float* scale = nullptr;
    int oc = 0, ic = 0;
  };
  std::vector<Q8> q8_;
  void* q8_block_ = nullptr;

  // decode scratch
  size_t dec_bytes_ = 0;      // capacity of dec_block_ (it only grows)
  void* dec_block_ = nullptr;
  // attention_decode_dpos's counters: zeroed when allocated, left zero by
  // every call, so kept apart from dec_block_ (whose carving moves with the
  // shape); grow-only as well
  int* dec_counters_ = nullptr;
  size_t dec_counters_n_ = 0;
  uint64_t scratch_gen_ = 0;  // bumped when dec_block_ or the INT8 weights are replaced
};

// One optimizer step on the GPU (train.h's TrainerT): micro-batches ->
// grads -> (all-reduce) -> global norm -> clip -> AdamW with fp32 master
// weights and moments. Full fine-tuning, or with `lora` only the adapter is
// trained (the model stays frozen: it must have no gradients); with a
// `teacher` (same vocabulary, forward only, switched to recomputation) the
// loss is distill.h's mix of cross-entropy and KL to the teacher's logits.
// TrainConfig::recompute switches the model to activation recomputation. In bf16 mode the update writes the
// bf16 working copy the next forward reads; in fp32 mode the parameters are
// the master. A non-finite gradient norm skips the update (StepResult.skipped).
//
// Data parallel (world_size > 1 NcclCollective): every rank calls step()
// with its own shard; gradients are summed on NCCL's stream while backward
// still runs (the last micro-batch's backward hands over the final
// gradients, layer by layer from the end, in buckets of at least
// bucket_bytes: a bucket goes out once it has grown past that size), or, with
// zero1, reduce-scattered so that each rank keeps AdamW state for 1/world of
// the parameters only and all-gathers the updated parameters.
template <typename T>
class CudaTrainer {
 public:
  CudaTrainer(CudaModel<T>& model, const TrainConfig& cfg, NcclCollective* coll = nullptr, bool zero1 = false,
              size_t bucket_bytes = 25u << 20, CudaLora<T>* lora = nullptr, CudaModel<T>* teacher = nullptr);
  ~CudaTrainer();
  CudaTrainer(const CudaTrainer&) = delete;
  CudaTrainer& operator=(const CudaTrainer&) = delete;

  StepResult step(const int32_t* tokens, const int32_t* targets, int B, int T_);
  double eval_loss(const int32_t* tokens, const int32_t* targets, int B, int T_);

  int64_t step_count() const { return step_; }
  void set_step_count(int64_t s) { step_ = s; }
  // What the optimizer updates: the model's layout, or the adapter's.
  const ParamLayout& trainable_layout() const { return lora_ ? lora_->layout : model_.layout; }
  // Last step's loss parts when distilling (summed over ranks).
  const DistillLoss& last_distill() const { return last_distill_; }
  // Set the fp32 master weights (and the working copy: the model's, or the
  // adapter's) from fp32 host values (trainable_layout().numel), e.g. when
  // resuming from a checkpoint; in 16-bit modes the constructor otherwise
  // starts the master from the 16-bit parameters.
  void load_master(const float* host);
  // fp32 master weights and AdamW moments to host buffers of
  // trainable_layout().numel in layout order (with zero1 only this rank's
  // shard_range() of the moments is written, and only that range of the
  // master is current).
  void download_master(float* host) const;
  void download_moments(float* m, float* v) const;
  // Set this rank's AdamW moments from host fp32 buffers in layout order
  // (trainable_layout().numel each; with zero1 only shard_range() is read), e.g. from a
  // checkpoint together with load_master and set_step_count.
  void load_moments(const float* m, const float* v);
  // Elements [first, last) of the flat buffer this rank updates.
  std::pair<size_t, size_t> shard_range() const { return {shard_begin_, shard_end_}; }
  size_t optimizer_bytes() const { return opt_bytes_; }
  // Number of all-reduce buckets the last step enqueued during backward.
  int last_overlapped_buckets() const { return last_buckets_; }
  // fp16 (T = __half) only: the dynamic loss scale's state (optim.cuh). A
  // step whose gradients overflow is skipped (StepResult.skipped, grad_norm
  // inf, step count unchanged) and the scale backs off; checkpoints keep it.
  LossScaler& loss_scaler() { return scaler_; }
  static constexpr bool kLossScaling = std::is_same<T, f16>::value;
  bool loss_scaling() const { return kLossScaling; }

 private:
  void adamw(double lr, double clip);
  T* tparams() { return lora_ ? lora_->params() : model_.params(); }
  T* tgrads() { return lora_ ? lora_->grads() : model_.grads(); }
  size_t tnumel() const { return trainable_layout().numel; }

  CudaModel<T>& model_;
  CudaLora<T>* lora_;
  CudaModel<T>* teacher_;
  DistillLoss last_distill_;
  TrainConfig cfg_;
  NcclCollective* coll_;
  bool zero1_;
  size_t bucket_bytes_;
  LrSchedule sched_;
  int64_t step_ = 0;
  size_t numel_ = 0;         // layout.numel, padded to a multiple of world size
  size_t shard_begin_ = 0, shard_end_ = 0;
  float* master_ = nullptr;  // fp32 master (bf16 mode); shard-sized base with zero1
  float* m_ = nullptr;
  float* v_ = nullptr;
  float* norm_ = nullptr;     // (1) device sum of squares
  float* norm_scratch_ = nullptr;
  T* grad_shard_ = nullptr;   // zero1: this rank's reduced gradient shard
  size_t opt_bytes_ = 0;
  int last_buckets_ = 0;
  LossScaler scaler_;
  int* found_inf_ = nullptr;  // (1) device: an overflow in this step's gradients
};

}  // namespace cuda
}  // namespace fw
