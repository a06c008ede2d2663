// ops_loss.cpp: numerically stable (max-subtracted) softmax per row; rows are
// independent so OpenMP over rows is deterministic.
#include "ops_loss.h"

#include <cmath>

#include "ops_math.h"

namespace fw {

// log(sum_i exp(x_i * inv_temp)) of one row: a max pass, then an exp-sum
// pass; both vectorised (omp simd reductions use a fixed lane order, so the
// result is deterministic for a given machine). The float overloads are the
// same loops compiled per ISA (FW_TARGET_CLONES).
#define FW_ROW_LSE_BODY                                                   \
  T mx = x[0] * inv_temp;                                                 \
  _Pragma("omp simd reduction(max : mx)")                                 \
  for (int i = 1; i < V; i++) mx = x[i] * inv_temp > mx ? x[i] * inv_temp : mx; \
  T sum = 0;                                                              \
  _Pragma("omp simd reduction(+ : sum)")                                  \
  for (int i = 0; i < V; i++) sum += fast_exp(x[i] * inv_temp - mx);      \
  return mx + std::log(sum);

// d = scale * exp(x - l): softmax times the loss scale.
#define FW_SOFTMAX_SCALED_BODY \
  _Pragma("omp simd")          \
  for (int i = 0; i < V; i++) d[i] = scale * fast_exp(x[i] - l);

template <typename T>
static T row_lse(const T* x, int V, T inv_temp) {
  FW_ROW_LSE_BODY
}
FW_TARGET_CLONES static float row_lse(const float* x, int V, float inv_temp) {
  using T = float;
  FW_ROW_LSE_BODY
}
template <typename T>
static void softmax_scaled(T* d, const T* x, int V, T l, T scale) {
  FW_SOFTMAX_SCALED_BODY
}
FW_TARGET_CLONES static void softmax_scaled(float* d, const float* x, int V, float l, float scale) {
  FW_SOFTMAX_SCALED_BODY
}

template <typename T>
void crossentropy_forward(T* losses, T* lse, const T* logits, const int32_t* targets, int N, int V) {
  #pragma omp parallel for
  for (int n = 0; n < N; n++) {
    const T* x = logits + (size_t)n * V;
    T l = row_lse(x, V, T(1));
    lse[n] = l;
    int32_t t = targets[n];
    losses[n] = t == -100 ? T(0) : l - x[t];
  }
}

template <typename T>
void crossentropy_backward(T* dlogits, const T* logits, const T* lse, const int32_t* targets, int N, int V,
                           T scale) {
  #pragma omp parallel for
  for (int n = 0; n < N; n++) {
    const T* x = logits + (size_t)n * V;
    T* d = dlogits + (size_t)n * V;
    int32_t t = targets[n];
    if (t == -100) {
      for (int i = 0; i < V; i++) d[i] = 0;
      continue;
    }
    softmax_scaled(d, x, V, lse[n], scale);
    d[t] -= scale;
  }
}

template <typename T>
void log_softmax_forward(T* out, const T* logits, int N, int V, double temp) {
  T inv = T(1.0 / temp);
  #pragma omp parallel for
  for (int n = 0; n < N; n++) {
    const T* x = logits + (size_t)n * V;
    T* o = out + (size_t)n * V;
    T l = row_lse(x, V, inv);
    for (int i = 0; i < V; i++) o[i] = x[i] * inv - l;
  }
}

template void crossentropy_forward<float>(float*, float*, const float*, const int32_t*, int, int);
template void crossentropy_forward<double>(double*, double*, const double*, const int32_t*, int, int);
template void crossentropy_backward<float>(float*, const float*, const float*, const int32_t*, int, int, float);
template void crossentropy_backward<double>(double*, const double*, const double*, const int32_t*, int, int,
                                            double);
template void log_softmax_forward<float>(float*, const float*, int, int, double);
template void log_softmax_forward<double>(double*, const double*, int, int, double);

}  // namespace fw
