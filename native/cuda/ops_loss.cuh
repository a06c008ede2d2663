// ops_loss.cuh: softmax cross-entropy over the vocabulary with ignore index
// -100, on the GPU (engine/ops_loss.h), and the distillation loss
// (engine/distill.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace fw {
namespace cuda {

// losses (N) fp32: -log softmax(logits)[target], 0 where target == -100;
// lse (N) fp32 log-sum-exp per row. logits (N, V). Targets outside [0, V)
// other than -100 are the caller's to reject (on the host).
template <typename T>
void crossentropy_forward(float* losses, float* lse, const T* logits, const int32_t* targets, int N, int V,
                          cudaStream_t stream);

// dlogits (N, V) = scale * (softmax(logits) - onehot(target)), zero rows where
// target == -100. dlogits may alias logits.
template <typename T>
void crossentropy_backward(T* dlogits, const T* logits, const float* lse, const int32_t* targets, int N, int V,
                           float scale, cudaStream_t stream);

// Both in one launch: losses (N), then dlogits (N, V) written over logits
// (in place), each row read twice instead of three times and the (N, V)
// softmax never stored separately. lse may be nullptr.
template <typename T>
void crossentropy_forward_backward(T* logits_dlogits, float* losses, float* lse, const int32_t* targets, int N,
                                   int V, float scale, cudaStream_t stream);

// Knowledge distillation, distill_loss (engine/distill.h) per row: for each
// row n whose target is not -100,
//   ce (n) = lse(z) - z[y],  kl (n) = KL(softmax(t / tau) || softmax(z / tau))
// and the row of z (student logits, in place) becomes the gradient
//   scale * ((1 - alpha) (softmax(z) - onehot(y)) + alpha tau (softmax(z/tau) - softmax(t/tau)))
// with scale = loss scale / normalizer. Ignored rows: zero gradient, ce = kl
// = 0. teacher (N, V) is only read. The caller sums ce and kl (in row order,
// as the CPU does) and forms (1 - alpha) ce + alpha tau^2 kl.
template <typename T>
void distill_forward_backward(T* student_dlogits, float* ce, float* kl, const T* teacher, const int32_t* targets,
                              int N, int V, float alpha, float temperature, float scale, cudaStream_t stream);

}  // namespace cuda
}  // namespace fw
