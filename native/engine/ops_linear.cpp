// ops_linear.cpp: the projections of the model; all the FLOPs are in GEMMs.
#include "ops_linear.h"

#include <cstddef>

#include "ops_gemm.h"

namespace fw {

template <typename T>
void linear_forward(T* out, const T* inp, const T* w, const T* bias, int N, int IC, int OC) {
  if (bias) {
    // Pre-fill with the bias so the GEMM can accumulate onto it (beta = 1).
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
      T* o = out + (size_t)n * OC;
      for (int j = 0; j < OC; j++) o[j] = bias[j];
    }
  }
  // out (N, OC) = inp (N, IC) @ w^T (IC, OC)
  gemm(false, true, N, OC, IC, T(1), inp, IC, w, IC, bias ? T(1) : T(0), out, OC);
}

template <typename T>
void linear_backward(T* dinp, T* dw, T* dbias, const T* dout, const T* inp, const T* w, int N, int IC,
                     int OC, bool accumulate_dinp) {
  // dinp (N, IC) = dout (N, OC) @ w (OC, IC)
  if (dinp) gemm(false, false, N, IC, OC, T(1), dout, OC, w, IC, accumulate_dinp ? T(1) : T(0), dinp, IC);
  // dw (OC, IC) += dout^T (OC, N) @ inp (N, IC)
  if (dw) gemm(true, false, OC, IC, N, T(1), dout, OC, inp, IC, T(1), dw, IC);
  if (dbias) {
    // Column sums; each thread owns a slice of columns and walks the rows in
    // order, so the result does not depend on the thread count.
    #pragma omp parallel for
    for (int j = 0; j < OC; j++) {
      T s = 0;
      for (int n = 0; n < N; n++) s += dout[(size_t)n * OC + j];
      dbias[j] += s;
    }
  }
}

template void linear_forward<float>(float*, const float*, const float*, const float*, int, int, int);
template void linear_forward<double>(double*, const double*, const double*, const double*, int, int, int);
template void linear_backward<float>(float*, float*, float*, const float*, const float*, const float*, int,
                                     int, int, bool);
template void linear_backward<double>(double*, double*, double*, const double*, const double*, const double*,
                                      int, int, int, bool);

}  // namespace fw
