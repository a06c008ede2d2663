// ops_gemm.h: row-major GEMM for float and double on OpenBLAS, threaded by OpenMP.
//
// Every matrix product in the engine goes through gemm() so that the float
// model (sgemm) and the double-precision test model (dgemm) share one code
// path. Threading: the engine uses ONE thread pool, OpenMP's. The first
// gemm() call sets OpenBLAS to 1 thread (openblas_set_num_threads(1)); a
// call made outside a parallel region then splits the rows of C into one
// slab per OpenMP thread, each an independent single-threaded BLAS call; a
// call made inside a parallel region (per-head attention) runs on the calling
// thread. Two pools (OpenBLAS's pthreads + OpenMP) spin-waiting against each
// other on few cores cost up to several times the runtime, hence this.
// NOTE for other engine code: call fw::gemm rather than cblas_* directly, or
// your BLAS calls run single-threaded.
// The slabs are fixed by M and the thread count, so results are
// bit-identical run to run for a fixed OMP_NUM_THREADS.
#pragma once

namespace fw {

// C (M, N) = alpha * op(A) (M, K) @ op(B) (K, N) + beta * C, row-major,
// op(X) = X^T when the trans flag is set. lda/ldb/ldc are row strides.
void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
          float beta, float* C, int ldc);
void gemm(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda, const double* B, int ldb,
          double beta, double* C, int ldc);

}  // namespace fw
