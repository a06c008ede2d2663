// ops_gemm.cpp: M-split OpenMP driver around single-threaded OpenBLAS calls.
#include "ops_gemm.h"

#include <cblas.h>
#include <omp.h>

namespace fw {

namespace {

void blas_single_threaded() {
  // Thread-safe one-time init (C++11 static init).
  static const bool once = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)once;
}

inline void blas(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                 int ldb, float beta, float* C, int ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda,
              B, ldb, beta, C, ldc);
}
inline void blas(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda, const double* B,
                 int ldb, double beta, double* C, int ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda,
              B, ldb, beta, C, ldc);
}

template <typename T>
void gemm_impl(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb, T beta,
               T* C, int ldc) {
  blas_single_threaded();
  int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  // Small products are not worth a fork; slabs of at least 32 rows.
  long work = (long)M * N * K;
  if (nt > 1 && M >= 64 && work >= (1L << 18)) {
    int slabs = nt;
    while (slabs > 1 && M / slabs < 32) slabs--;
    #pragma omp parallel for num_threads(slabs) schedule(static, 1)
    for (int s = 0; s < slabs; s++) {
      // Slab boundaries on multiples of 16 rows (cache-line aligned C rows).
      int m0 = (int)((long)M * s / slabs) / 16 * 16, m1 = s == slabs - 1 ? M : (int)((long)M * (s + 1) / slabs) / 16 * 16;
      if (m1 <= m0) continue;
      // Row m of op(A) is row m of A (no trans) or column m (trans).
      const T* As = ta ? A + m0 : A + (size_t)m0 * lda;
      blas(ta, tb, m1 - m0, N, K, alpha, As, lda, B, ldb, beta, C + (size_t)m0 * ldc, ldc);
    }
    return;
  }
  blas(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace

void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
          float beta, float* C, int ldc) {
  gemm_impl(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void gemm(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda, const double* B, int ldb,
          double beta, double* C, int ldc) {
  gemm_impl(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace fw
