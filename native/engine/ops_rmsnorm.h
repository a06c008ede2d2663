// ops_rmsnorm.h: RMSNorm as in HF LlamaRMSNorm: y = x / sqrt(mean(x^2) + eps) * w.
#pragma once

namespace fw {

// out (N, C), rstd (N) = 1/sqrt(mean(x^2)+eps) saved for backward,
// inp (N, C), weight (C). out may not alias inp.
template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* weight, int N, int C, double eps);

// dinp (N, C) += d/dinp; dweight (C) += d/dweight (nullptr: frozen).
template <typename T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, const T* rstd, int N,
                      int C);

}  // namespace fw
