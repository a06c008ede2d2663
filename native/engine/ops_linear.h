// ops_linear.h: y = x W^T + b with W stored (out, in) as in Hugging Face.
#pragma once

namespace fw {

// out (N, OC) = inp (N, IC) @ w^T + bias; w (OC, IC), bias (OC) or nullptr.
template <typename T>
void linear_forward(T* out, const T* inp, const T* w, const T* bias, int N, int IC, int OC);

// dinp (N, IC) = dout @ w (overwritten, or added when accumulate_dinp);
// dw (OC, IC) += dout^T @ inp; dbias (OC) += column sums of dout.
// dinp / dw / dbias may be nullptr (not needed, or frozen weights).
template <typename T>
void linear_backward(T* dinp, T* dw, T* dbias, const T* dout, const T* inp, const T* w, int N, int IC,
                     int OC, bool accumulate_dinp);

}  // namespace fw
