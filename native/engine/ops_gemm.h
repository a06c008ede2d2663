// ops_gemm.h: row-major GEMM on OpenBLAS for float and double.
//
// Every matrix product in the engine goes through gemm<T>() so that the float
// model (cblas_sgemm) and the double-precision test model (cblas_dgemm) share
// one code path. OpenBLAS parallelises each call itself; never call it from
// inside an OpenMP parallel region (the pthread build of OpenBLAS serialises
// such calls and warns).
#pragma once

#include <cblas.h>

namespace fw {

// C (M, N) = alpha * op(A) (M, K) @ op(B) (K, N) + beta * C, row-major,
// op(X) = X^T when the trans flag is set. lda/ldb/ldc are row strides.
inline void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K,
              alpha, A, lda, B, ldb, beta, C, ldc);
}
inline void gemm(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda,
                 const double* B, int ldb, double beta, double* C, int ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K,
              alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace fw
