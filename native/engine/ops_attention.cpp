// ops_attention.cpp: attention as two GEMMs per head around a masked softmax.
//
// Heads are spread over OpenMP threads; inside a head the GEMMs are
// single-threaded BLAS calls (ops_gemm.h) and the softmax a plain loop.
// The full T x T score matrix is computed and the upper triangle masked: the
// wasted half costs less than many small triangular calls.
// Backward, per head with S = scale q k^T, P = softmax(S), O = P v:
//   dP = dO v^T,  dS = P * (dP - rowsum(dP * P)),
//   dq = scale dS k,  dk += scale dS^T q,  dv += P^T dO
// GQA heads sharing a kv head add into the same dk/dv in a fixed order: the
// backward parallelises over (b, kv head) so no two threads share a dk/dv.
#include "ops_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops_gemm.h"
#include "ops_math.h"

namespace fw {

// Row-wise causal softmax of P (Tq, Tk) in place; row t keeps columns
// 0..offset+t.
template <typename T>
static void causal_softmax(T* P, int Tq, int Tk, int offset) {
  for (int t = 0; t < Tq; t++) {
    T* row = P + (size_t)t * Tk;
    int n = std::min(Tk, offset + t + 1);
    T mx = row[0];
    for (int s = 1; s < n; s++) mx = row[s] > mx ? row[s] : mx;
    T sum = 0;
    #pragma omp simd reduction(+ : sum)
    for (int s = 0; s < n; s++) {
      row[s] = fast_exp(row[s] - mx);
      sum += row[s];
    }
    T inv = T(1) / sum;
    for (int s = 0; s < n; s++) row[s] *= inv;
    for (int s = n; s < Tk; s++) row[s] = 0;
  }
}

template <typename T>
void attention_head_forward(T* o, int ldo, T* P, const T* q, int ldq, const T* k, int ldk, const T* v, int ldv,
                            int Tq, int Tk, int HS, int offset) {
  T scale = T(1) / std::sqrt(T(HS));
  gemm(false, true, Tq, Tk, HS, scale, q, ldq, k, ldk, T(0), P, Tk);  // (Tq, Tk)
  causal_softmax(P, Tq, Tk, offset);
  gemm(false, false, Tq, HS, Tk, T(1), P, Tk, v, ldv, T(0), o, ldo);  // (Tq, HS)
}

template <typename T>
void attention_forward(T* out, T* att, const T* q, const T* k, const T* v, int B, int T_, int NH, int KVH,
                       int HS) {
  int G = NH / KVH;  // query heads per kv head
  int ldq = NH * HS, ldk = KVH * HS;
  #pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < NH; h++) {
      int kh = h / G;
      size_t qo = (size_t)b * T_ * ldq + (size_t)h * HS;
      size_t ko = (size_t)b * T_ * ldk + (size_t)kh * HS;
      T* P = att + ((size_t)b * NH + h) * T_ * T_;
      attention_head_forward(out + qo, ldq, P, q + qo, ldq, k + ko, ldk, v + ko, ldk, T_, T_, HS, 0);
    }
  }
}

template <typename T>
void attention_backward(T* dq, T* dk, T* dv, T* scratch, const T* dout, const T* att, const T* q, const T* k,
                        const T* v, int B, int T_, int NH, int KVH, int HS) {
  int G = NH / KVH;
  int ldq = NH * HS, ldk = KVH * HS;
  T scale = T(1) / std::sqrt(T(HS));
  std::memset(dk, 0, sizeof(T) * (size_t)B * T_ * ldk);
  std::memset(dv, 0, sizeof(T) * (size_t)B * T_ * ldk);
  (void)scratch;  // each thread uses its own dP (T, T), see below
  #pragma omp parallel
  {
    std::vector<T> dPbuf((size_t)T_ * T_);
    T* dP = dPbuf.data();
    #pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
      for (int kh = 0; kh < KVH; kh++) {
        size_t ko = (size_t)b * T_ * ldk + (size_t)kh * HS;
        for (int h = kh * G; h < (kh + 1) * G; h++) {  // the query heads of this kv head, in order
          size_t qo = (size_t)b * T_ * ldq + (size_t)h * HS;
          const T* P = att + ((size_t)b * NH + h) * T_ * T_;
          gemm(false, true, T_, T_, HS, T(1), dout + qo, ldq, v + ko, ldk, T(0), dP, T_);  // dP = dO v^T
          // dS = P * (dP - sum_s dP*P), folded with the score scale; the
          // masked entries have P = 0 so they come out 0.
          for (int t = 0; t < T_; t++) {
            const T* p = P + (size_t)t * T_;
            T* d = dP + (size_t)t * T_;
            T dot = 0;
            for (int s = 0; s <= t; s++) dot += p[s] * d[s];
            for (int s = 0; s <= t; s++) d[s] = p[s] * (d[s] - dot) * scale;
            for (int s = t + 1; s < T_; s++) d[s] = 0;
          }
          gemm(false, false, T_, HS, T_, T(1), dP, T_, k + ko, ldk, T(0), dq + qo, ldq);   // dq = dS k
          gemm(true, false, T_, HS, T_, T(1), dP, T_, q + qo, ldq, T(1), dk + ko, ldk);    // dk += dS^T q
          gemm(true, false, T_, HS, T_, T(1), P, T_, dout + qo, ldq, T(1), dv + ko, ldk);  // dv += P^T dO
        }
      }
    }
  }
}

template void attention_forward<float>(float*, float*, const float*, const float*, const float*, int, int, int,
                                       int, int);
template void attention_forward<double>(double*, double*, const double*, const double*, const double*, int,
                                        int, int, int, int);
template void attention_backward<float>(float*, float*, float*, float*, const float*, const float*,
                                        const float*, const float*, const float*, int, int, int, int, int);
template void attention_backward<double>(double*, double*, double*, double*, const double*, const double*,
                                         const double*, const double*, const double*, int, int, int, int, int);
template void attention_head_forward<float>(float*, int, float*, const float*, int, const float*, int,
                                            const float*, int, int, int, int, int);
template void attention_head_forward<double>(double*, int, double*, const double*, int, const double*, int,
                                             const double*, int, int, int, int, int);

}  // namespace fw
