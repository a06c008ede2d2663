// ops_rmsnorm.cpp: RMSNorm forward/backward, one row per loop iteration.
//
// With xhat = x * rstd and g = w * dy, the row gradient is
//   dx = rstd * (g - xhat * mean(g * xhat)),   dw += sum_rows dy * xhat.
#include "ops_rmsnorm.h"

#include <cmath>

namespace fw {

template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* weight, int N, int C, double eps) {
  #pragma omp parallel for
  for (int n = 0; n < N; n++) {
    const T* x = inp + (size_t)n * C;
    T* o = out + (size_t)n * C;
    T ss = 0;
    for (int i = 0; i < C; i++) ss += x[i] * x[i];
    T r = T(1) / std::sqrt(ss / C + T(eps));
    rstd[n] = r;
    for (int i = 0; i < C; i++) o[i] = x[i] * r * weight[i];
  }
}

template <typename T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, const T* rstd, int N,
                      int C) {
  #pragma omp parallel for
  for (int n = 0; n < N; n++) {
    const T* x = inp + (size_t)n * C;
    const T* dy = dout + (size_t)n * C;
    T* dx = dinp + (size_t)n * C;
    T r = rstd[n];
    T dot = 0;  // sum_i g_i * xhat_i
    for (int i = 0; i < C; i++) dot += weight[i] * dy[i] * x[i] * r;
    dot /= C;
    for (int i = 0; i < C; i++) dx[i] += r * (weight[i] * dy[i] - x[i] * r * dot);
  }
  if (dweight) {
    // Columns split across threads, rows in order: deterministic.
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c += 32) {
      int c1 = c + 32 < C ? c + 32 : C;
      for (int n = 0; n < N; n++) {
        const T* x = inp + (size_t)n * C;
        const T* dy = dout + (size_t)n * C;
        T r = rstd[n];
        for (int i = c; i < c1; i++) dweight[i] += dy[i] * x[i] * r;
      }
    }
  }
}

template void rmsnorm_forward<float>(float*, float*, const float*, const float*, int, int, double);
template void rmsnorm_forward<double>(double*, double*, const double*, const double*, int, int, double);
template void rmsnorm_backward<float>(float*, float*, const float*, const float*, const float*, const float*,
                                      int, int);
template void rmsnorm_backward<double>(double*, double*, const double*, const double*, const double*,
                                       const double*, int, int);

}  // namespace fw
