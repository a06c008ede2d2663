// ops_swiglu.h: the gated MLP nonlinearity, h = silu(gate) * up.
#pragma once

#include <cstddef>

namespace fw {

// out, gate, up: (N) elements (N = B*T*I).
template <typename T>
void swiglu_forward(T* out, const T* gate, const T* up, size_t N);

// dgate, dup (N) = gradients (overwritten) from dout (N).
template <typename T>
void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, size_t N);

}  // namespace fw
