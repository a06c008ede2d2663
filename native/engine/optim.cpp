// optim.cpp: the optimizer runs on flat buffers, one tensor at a time (the
// decay flag is per tensor), each tensor's elements spread over threads.
#include "optim.h"

#include <algorithm>
#include <cmath>

namespace fw {

template <typename T>
void AdamWT<T>::init(const AdamWConfig& c, const ParamLayout& layout) {
  FW_CHECK(c.beta1 >= 0 && c.beta1 < 1 && c.beta2 >= 0 && c.beta2 < 1 && c.eps > 0 && c.weight_decay >= 0,
           kInvalidArgument, "AdamW: need 0 <= beta1, beta2 < 1, eps > 0, weight_decay >= 0");
  cfg = c;
  m.assign(layout.numel, T(0));
  v.assign(layout.numel, T(0));
}

template <typename T>
void AdamWT<T>::step(T* params, const T* grads, const ParamLayout& layout, double lr, int64_t t, double grad_scale) {
  FW_CHECK(m.size() == layout.numel, kInvalidArgument, "AdamW state not initialised for this layout");
  const T b1 = T(cfg.beta1), b2 = T(cfg.beta2), eps = T(cfg.eps), gs = T(grad_scale);
  const T c1 = T(1.0 / (1.0 - std::pow(cfg.beta1, (double)t)));  // bias corrections
  const T c2 = T(1.0 / (1.0 - std::pow(cfg.beta2, (double)t)));
  for (const TensorInfo& ti : layout.tensors) {
    const T wd = (ti.decay || cfg.decay_norms_and_biases) ? T(cfg.weight_decay) : T(0);
    T* p = params + ti.offset;
    const T* g = grads + ti.offset;
    T* mm = m.data() + ti.offset;
    T* vv = v.data() + ti.offset;
    const T lr_t = T(lr);
    #pragma omp parallel for if (ti.numel > 4096)
    for (long i = 0; i < (long)ti.numel; i++) {
      T gi = g[i] * gs;
      T mi = b1 * mm[i] + (T(1) - b1) * gi;
      T vi = b2 * vv[i] + (T(1) - b2) * gi * gi;
      mm[i] = mi;
      vv[i] = vi;
      p[i] -= lr_t * ((mi * c1) / (std::sqrt(vi * c2) + eps) + wd * p[i]);
    }
  }
}

template <typename T>
double grad_global_norm(const T* grads, size_t n) {
  const size_t chunk = 1 << 16;
  size_t nchunks = (n + chunk - 1) / chunk;
  std::vector<double> partial(nchunks, 0.0);
  #pragma omp parallel for schedule(static)
  for (long c = 0; c < (long)nchunks; c++) {
    size_t e = std::min(n, (size_t)(c + 1) * chunk);
    double s = 0;
    for (size_t i = (size_t)c * chunk; i < e; i++) s += (double)grads[i] * grads[i];
    partial[c] = s;
  }
  double s = 0;
  for (double p : partial) s += p;
  return std::sqrt(s);
}

template <typename T>
void grad_scale(T* grads, size_t n, T s) {
  #pragma omp parallel for
  for (long i = 0; i < (long)n; i++) grads[i] *= s;
}

double LrSchedule::at(int64_t step) const {
  if (warmup > 0 && step < warmup) return lr * (double)(step + 1) / (double)warmup;
  int64_t span = std::max<int64_t>(1, total - warmup);
  double progress = std::min(1.0, (double)(step - warmup) / (double)span);
  return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

template struct AdamWT<float>;
template struct AdamWT<double>;
template double grad_global_norm<float>(const float*, size_t);
template double grad_global_norm<double>(const double*, size_t);
template void grad_scale<float>(float*, size_t, float);
template void grad_scale<double>(double*, size_t, double);

}  // namespace fw
