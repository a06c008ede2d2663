// lora_cuda.h: a LoRA adapter on the GPU for CudaModel (engine/lora.h's
// LoraT, same layout, PEFT names and math). The base model stays frozen; the
// trainer updates only these tensors.
//
//   fw::Lora host(cfg, lcfg); host.init(seed);              // or adapter_load
//   fw::cuda::CudaLora<bf16> lora(host, model.stream());    // layout + params uploaded
//   model.set_lora(&lora);                                  // no enable_grads() on model
//   fw::cuda::CudaTrainer<bf16> tr(model, tcfg, nullptr, false, 25u << 20, &lora);
//   ...
//   lora.download_params(host.params.data());               // then adapter_save(host, ...)
//
// Each targeted projection y = x W^T gets + scale * drop(x) A^T B^T through
// lora_cublas.h, with the CPU's dropout mask (a pure function of the LoRA
// seed, the step, the layer, the projection and the element), so a GPU step
// and a CPU step drop the same elements.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "gemm_cublas.h"
#include "lora.h"
#include "lora_cublas.h"

namespace fw {
namespace cuda {

template <typename T>
class CudaLora {
 public:
  // The adapter `host` describes (config, layout, targets), with its current
  // parameters uploaded and zeroed gradients.
  CudaLora(const Lora& host, cudaStream_t stream = nullptr);
  ~CudaLora();
  CudaLora(const CudaLora&) = delete;
  CudaLora& operator=(const CudaLora&) = delete;

  Config mcfg;
  LoraConfig cfg;
  float scale = 0;       // alpha / r
  ParamLayout layout;    // the host adapter's (PEFT names)

  bool targets(int l, int m) const { return a_index_[(size_t)l * kLoraModules + m] >= 0; }
  // Parameters / gradients in layout order from / to fp32 host memory.
  void load_params(const float* host);
  void download_params(float* host) const;
  void download_grads(float* host) const;
  void zero_grad();
  // Flat device buffers of layout.numel (plus zeroed slack for ZeRO-1 shards).
  T* params() { return params_; }
  T* grads() { return grads_; }

  // CudaModel's calls for projection m of layer l: out (N, OUT) += the
  // adapter's output of inp (N, IN), saving what backward needs; backward
  // adds into dA, dB and (dinp != nullptr) dinp. drop_key: the step's key
  // (lora_step_dropout_key), 0 without dropout.
  void forward(Blas& blas, int l, int m, T* out, const T* inp, int N, int IN, int OUT, uint64_t drop_key,
               cudaStream_t stream);
  void backward(Blas& blas, int l, int m, T* dinp, const T* dout, const T* inp, int N, int IN, int OUT,
                uint64_t drop_key, cudaStream_t stream);

  cudaStream_t stream() const { return stream_; }  // the model's: buffers are (re)sized on it
  // Device bytes held (parameters, gradients, saved activations, scratch).
  size_t bytes() const;

 private:
  void ensure(int N);  // saved u and scratch for N rows
  LoraDims dims(int l, int m, int N, int IN, int OUT, uint64_t drop_key) const;
  T* A(int l, int m) { return params_ + layout.tensors[a_index_[(size_t)l * kLoraModules + m]].offset; }
  T* B(int l, int m) { return params_ + layout.tensors[b_index_[(size_t)l * kLoraModules + m]].offset; }
  T* dA(int l, int m) { return grads_ + layout.tensors[a_index_[(size_t)l * kLoraModules + m]].offset; }
  T* dB(int l, int m) { return grads_ + layout.tensors[b_index_[(size_t)l * kLoraModules + m]].offset; }
  T* saved_u(int l, int m) { return saved_ + ((size_t)l * kLoraModules + m) * n_ * cfg.rank; }

  cudaStream_t stream_;
  std::vector<int> a_index_, b_index_;
  size_t alloc_ = 0;         // elements of params_ / grads_
  T* params_ = nullptr;
  T* grads_ = nullptr;
  int n_ = 0;                // rows the buffers below are sized for
  size_t max_in_ = 0;        // widest adapter input
  T* saved_ = nullptr;       // (L, 7, N, r) u = drop(x) A^T
  T* xd_ = nullptr;          // (N, max_in) dropout scratch
  T* du_ = nullptr;          // (N, r)
};

}  // namespace cuda
}  // namespace fw
