// ops_rope.h: rotary position embedding, Hugging Face "rotate_half" layout.
//
// For head vector x (HS) at position p, with h = HS/2 and
// inv_freq[i] = theta^(-2i/HS), a = p * inv_freq[i]:
//   y[i]   = x[i]   * cos a - x[i+h] * sin a
//   y[i+h] = x[i+h] * cos a + x[i]   * sin a
// (pairs are (i, i+h), not adjacent elements as in the original paper).
#pragma once

namespace fw {

// cos, sin (S, HS/2) tables for positions 0..S-1, computed in double.
template <typename T>
void rope_tables(T* cos_t, T* sin_t, int S, int HS, double theta);

// x (B, T, H, HS) rotated in place; token t of every sequence has position
// pos0 + t. Tables must cover pos0 + T positions.
template <typename T>
void rope_forward(T* x, const T* cos_t, const T* sin_t, int B, int T_, int H, int HS, int pos0);

// dx (B, T, H, HS) in place: the transpose (inverse) rotation.
template <typename T>
void rope_backward(T* dx, const T* cos_t, const T* sin_t, int B, int T_, int H, int HS, int pos0);

}  // namespace fw
