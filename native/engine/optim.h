// optim.h: AdamW, global-norm gradient clipping and the learning-rate schedule.
//
// AdamW (Loshchilov & Hutter) with decoupled weight decay:
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   p -= lr * (m / (1-b1^t) / (sqrt(v / (1-b2^t)) + eps) + wd * p)
// Weight decay applies only to tensors whose TensorInfo::decay is true: by
// default every matrix (embeddings, projections, lm_head, LoRA A/B) but no
// norm weight and no bias (decay_norms_and_biases = true decays all).
// The moments m, v use the same flat layout as the parameters they update, so
// a checkpoint saves them by the parameters' names.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "model.h"

namespace fw {

struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  bool decay_norms_and_biases = false;
};

template <typename T>
struct AdamWT {
  AdamWConfig cfg;
  std::vector<T> m;  // (layout.numel) first moment
  std::vector<T> v;  // (layout.numel) second moment

  void init(const AdamWConfig& c, const ParamLayout& layout);
  // One update of params (layout.numel) with grads * grad_scale (gradient
  // clipping folded into the update, saving a pass over the gradients); t is
  // the 1-based step number (bias correction).
  void step(T* params, const T* grads, const ParamLayout& layout, double lr, int64_t t, double grad_scale = 1.0);
};

// sqrt(sum g^2) over n elements, accumulated in double over fixed chunks then
// summed in order: the result does not depend on the thread count.
template <typename T>
double grad_global_norm(const T* grads, size_t n);

// grads *= s.
template <typename T>
void grad_scale(T* grads, size_t n, T s);

// Linear warmup from lr/warmup to lr over `warmup` steps, then cosine decay
// to min_lr at `total` steps, constant min_lr after. step is 0-based.
struct LrSchedule {
  double lr = 3e-4;
  double min_lr = 0.0;
  int64_t warmup = 0;
  int64_t total = 1000;
  double at(int64_t step) const;
};

using AdamW = AdamWT<float>;

}  // namespace fw
