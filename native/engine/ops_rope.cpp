// ops_rope.cpp: RoPE is an orthogonal rotation, so backward rotates by -a.
#include "ops_rope.h"

#include <cmath>

namespace fw {

template <typename T>
void rope_tables(T* cos_t, T* sin_t, int S, int HS, double theta) {
  int h = HS / 2;
  for (int p = 0; p < S; p++) {
    for (int i = 0; i < h; i++) {
      double inv_freq = std::pow(theta, -2.0 * i / HS);
      double a = p * inv_freq;
      cos_t[(size_t)p * h + i] = (T)std::cos(a);
      sin_t[(size_t)p * h + i] = (T)std::sin(a);
    }
  }
}

// sign = +1 forward, -1 backward (rotation by -a).
template <typename T>
static void rope_apply(T* x, const T* cos_t, const T* sin_t, int B, int T_, int H, int HS, int pos0, T sign) {
  int h = HS / 2;
  #pragma omp parallel for collapse(2)
  for (int b = 0; b < B; b++) {
    for (int t = 0; t < T_; t++) {
      const T* c = cos_t + (size_t)(pos0 + t) * h;
      const T* s = sin_t + (size_t)(pos0 + t) * h;
      for (int hd = 0; hd < H; hd++) {
        T* v = x + (((size_t)b * T_ + t) * H + hd) * HS;
        for (int i = 0; i < h; i++) {
          T x0 = v[i], x1 = v[i + h], si = sign * s[i];
          v[i] = x0 * c[i] - x1 * si;
          v[i + h] = x1 * c[i] + x0 * si;
        }
      }
    }
  }
}

template <typename T>
void rope_forward(T* x, const T* cos_t, const T* sin_t, int B, int T_, int H, int HS, int pos0) {
  rope_apply(x, cos_t, sin_t, B, T_, H, HS, pos0, T(1));
}
template <typename T>
void rope_backward(T* dx, const T* cos_t, const T* sin_t, int B, int T_, int H, int HS, int pos0) {
  rope_apply(dx, cos_t, sin_t, B, T_, H, HS, pos0, T(-1));
}

template void rope_tables<float>(float*, float*, int, int, double);
template void rope_tables<double>(double*, double*, int, int, double);
template void rope_forward<float>(float*, const float*, const float*, int, int, int, int, int);
template void rope_forward<double>(double*, const double*, const double*, int, int, int, int, int);
template void rope_backward<float>(float*, const float*, const float*, int, int, int, int, int);
template void rope_backward<double>(double*, const double*, const double*, int, int, int, int, int);

}  // namespace fw
