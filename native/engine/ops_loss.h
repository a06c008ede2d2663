// ops_loss.h: softmax cross-entropy over the vocabulary with an ignore index.
#pragma once

#include <cstdint>

namespace fw {

// losses (N): -log softmax(logits)[target] per row, 0 where target == -100;
// lse (N): log-sum-exp of each row (kept for backward). logits (N, V).
// Targets outside [0, V) other than -100 are the caller's to reject.
template <typename T>
void crossentropy_forward(T* losses, T* lse, const T* logits, const int32_t* targets, int N, int V);

// dlogits (N, V) = scale * (softmax(logits) - onehot(target)), rows with
// target -100 set to 0. dlogits may alias logits (each element is read
// before it is written).
template <typename T>
void crossentropy_backward(T* dlogits, const T* logits, const T* lse, const int32_t* targets, int N, int V,
                           T scale);

// Row-wise log-softmax of logits / temp into out (N, V) (may alias).
template <typename T>
void log_softmax_forward(T* out, const T* logits, int N, int V, double temp);

}  // namespace fw
