// optim.cuh: AdamW on the GPU with fp32 master weights (engine/optim.h), and
// the deterministic global gradient norm used for clipping.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace fw {
namespace cuda {

// Hyper-parameters of one AdamW update of one tensor (or a run of tensors
// sharing the same weight decay).
struct AdamWStep {
  float lr = 3e-4f;
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
  float weight_decay = 0.0f;  // 0 for tensors without decay (norms, biases)
  float grad_scale = 1.0f;    // gradients are multiplied by this first (clipping, 1/loss-scale)
  int64_t t = 1;              // 1-based step for the bias corrections
};

// One fused AdamW update over n elements:
//   master (n) fp32 updated in place, m, v (n) fp32 moments in place,
//   params_bf16 (n) = bf16 copy of the new master (nullptr: fp32 training),
//   grads (n) T (float or bf16).
// Same formula and operation order as AdamWT::step on the CPU.
template <typename TG>
void adamw_update(float* master, __nv_bfloat16* params_bf16, float* m, float* v, const TG* grads, size_t n,
                  const AdamWStep& s, cudaStream_t stream);

// sum of squares of grads (n) into *out (one fp32 on the device), by a
// two-pass reduction with a fixed order: bit-identical run to run.
// scratch: at least global_norm_scratch_floats() floats.
template <typename TG>
void grad_sumsq(float* out, float* scratch, const TG* grads, size_t n, cudaStream_t stream);
size_t global_norm_scratch_floats();

}  // namespace cuda
}  // namespace fw
