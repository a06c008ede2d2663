// ops_swiglu.cpp: silu(g) = g * sigmoid(g); silu'(g) = s * (1 + g * (1 - s)).
#include "ops_swiglu.h"

#include <cmath>

#include "ops_math.h"

namespace fw {

template <typename T>
void swiglu_forward(T* out, const T* gate, const T* up, size_t N) {
  #pragma omp parallel for simd
  for (long i = 0; i < (long)N; i++) {
    T g = gate[i];
    T s = T(1) / (T(1) + fast_exp(-g));
    out[i] = g * s * up[i];
  }
}

template <typename T>
void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, size_t N) {
  #pragma omp parallel for simd
  for (long i = 0; i < (long)N; i++) {
    T g = gate[i], d = dout[i];
    T s = T(1) / (T(1) + fast_exp(-g));
    dup[i] = d * g * s;
    dgate[i] = d * up[i] * s * (T(1) + g * (T(1) - s));
  }
}

template void swiglu_forward<float>(float*, const float*, const float*, size_t);
template void swiglu_forward<double>(double*, const double*, const double*, size_t);
template void swiglu_backward<float>(float*, float*, const float*, const float*, const float*, size_t);
template void swiglu_backward<double>(double*, double*, const double*, const double*, const double*, size_t);

}  // namespace fw
