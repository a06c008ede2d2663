// optim.cuh: AdamW on the GPU with fp32 master weights (engine/optim.h), and
// the deterministic global gradient norm used for clipping.
#pragma once

#include <cmath>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace fw {
namespace cuda {

// Extra zeroed elements after every flat parameter / gradient buffer a
// trainer updates (the model's, a LoRA adapter's), so that ZeRO-1 can split
// it into world_size equal shards (world_size <= kShardSlack).
constexpr size_t kShardSlack = 1024;

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
// The same for fp16 training: params_f16 the fp16 copy, grads fp16.
template <typename TG>
void adamw_update(float* master, __half* params_f16, float* m, float* v, const TG* grads, size_t n,
                  const AdamWStep& s, cudaStream_t stream);

// sum of squares of grads (n) into *out (one fp32 on the device), by a
// two-pass reduction with a fixed order: bit-identical run to run.
// scratch: at least global_norm_scratch_floats() floats.
template <typename TG>
void grad_sumsq(float* out, float* scratch, const TG* grads, size_t n, cudaStream_t stream);
size_t global_norm_scratch_floats();

// Dynamic loss scaling for fp16 training (the loss is multiplied by scale
// before backward so small gradients survive fp16's range):
//   grads *= inv_scale over n elements, and *found_inf (one int on the
//   device, zeroed by the caller once per step) is set to 1 if any element
//   is inf or NaN. TG: float, bf16 or fp16 (__half).
template <typename TG>
void grad_unscale_check(TG* grads, size_t n, float inv_scale, int* found_inf, cudaStream_t stream);

// The scale's policy (host side, as torch.cuda.amp.GradScaler): on overflow
// skip the step and multiply the scale by backoff; after growth_interval
// steps in a row without overflow multiply it by growth.
struct LossScaler {
  float scale = 65536.0f;
  float growth = 2.0f;
  float backoff = 0.5f;
  int growth_interval = 2000;
  int good_steps = 0;  // steps since the last overflow or growth
  // Call once per step with the step's found_inf; returns true when the
  // optimizer step should be applied (no overflow).
  bool update(bool found_inf) {
    if (found_inf) {
      scale *= backoff;
      if (scale < 1.0f) scale = 1.0f;
      good_steps = 0;
      return false;
    }
    if (++good_steps >= growth_interval) {
      // never to a non-finite scale (every later step would overflow)
      if (std::isfinite(scale * growth)) scale *= growth;
      good_steps = 0;
    }
    return true;
  }
};

}  // namespace cuda
}  // namespace fw
