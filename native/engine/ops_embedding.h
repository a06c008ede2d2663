// ops_embedding.h: token embedding lookup (model.embed_tokens.weight).
#pragma once

#include <cstdint>

namespace fw {

// out (N, C) = wte (V, C) rows picked by tokens (N); ids must be in [0, V)
// (checked by the caller, ModelT::forward).
template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, int N, int C);

// dwte (V, C) += dout (N, C) scattered to the rows of tokens. Rows are added
// in token order, so repeated ids accumulate deterministically.
template <typename T>
void embedding_backward(T* dwte, const T* dout, const int32_t* tokens, int N, int C);

}  // namespace fw
