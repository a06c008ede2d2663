// ops_embedding.cpp: gather forward, scatter-add backward.
#include "ops_embedding.h"

#include <cstring>

namespace fw {

template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, int N, int C) {
  #pragma omp parallel for
  for (int n = 0; n < N; n++) std::memcpy(out + (size_t)n * C, wte + (size_t)tokens[n] * C, sizeof(T) * C);
}

template <typename T>
void embedding_backward(T* dwte, const T* dout, const int32_t* tokens, int N, int C) {
  // Parallel over channel slices: each thread owns columns [c0, c1) of every
  // row, and visits the tokens in order (no races, fixed summation order).
  #pragma omp parallel
  {
    #pragma omp for schedule(static)
    for (int c = 0; c < C; c += 64) {
      int c1 = c + 64 < C ? c + 64 : C;
      for (int n = 0; n < N; n++) {
        T* d = dwte + (size_t)tokens[n] * C;
        const T* g = dout + (size_t)n * C;
        for (int i = c; i < c1; i++) d[i] += g[i];
      }
    }
  }
}

template void embedding_forward<float>(float*, const int32_t*, const float*, int, int);
template void embedding_forward<double>(double*, const int32_t*, const double*, int, int);
template void embedding_backward<float>(float*, const float*, const int32_t*, int, int);
template void embedding_backward<double>(double*, const double*, const int32_t*, int, int);

}  // namespace fw
