// emu_cuda_test.cpp: the emulated CUDA runtime (emu_cuda.h) keeps the rules
// the GPU tests lean on when they run on it: work runs only when waited
// for, streams are ordered as CUDA orders them (and no more), cudaMalloc
// returns NaN, a pointer is freed once, a capture records and forbids what CUDA's does,
// launches and copies are checked, and cuBLAS's GEMM is the column-major
// product with its transposes, strides and beta. Each rule is checked from
// the side where breaking it would let a GPU bug pass.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "emu_simt.h"

namespace {

__global__ void fill_kernel(float* p, float v, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) p[i] = v;
}
__global__ void add_kernel(float* dst, const float* src, int n) {  // dst += src
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) dst[i] += src[i];
}
__global__ void smem_kernel(float* p) {
  float* s = emu_dyn_smem<float>();  // extern __shared__ float s[], as ops_emu.py writes it
  s[threadIdx.x] = 1.0f;
  __syncthreads();
  p[threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x];
}

void fill(float* p, float v, int n, cudaStream_t s) {
  emu_check_args("fill_kernel", p, v, n);
  emu_launch(dim3((n + 63) / 64), dim3(64), [=] { fill_kernel(p, v, n); }, 0, s, emu_fn_id(fill_kernel),
             "fill_kernel");
}
void add(float* dst, const float* src, int n, cudaStream_t s) {
  emu_check_args("add_kernel", dst, src, n);
  emu_launch(dim3((n + 63) / 64), dim3(64), [=] { add_kernel(dst, src, n); }, 0, s, emu_fn_id(add_kernel),
             "add_kernel");
}

struct DevBuf {
  float* p = nullptr;
  int n;
  explicit DevBuf(int n_) : n(n_) { EXPECT_EQ(cudaMalloc(&p, n * sizeof(float)), cudaSuccess); }
  ~DevBuf() { cudaFree(p); }
  // what the device holds, once the legacy stream's work is done
  std::vector<float> host() const {
    std::vector<float> h(n);
    EXPECT_EQ(cudaMemcpy(h.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }
};

cudaStream_t nonblocking() {
  cudaStream_t s;
  EXPECT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  return s;
}

TEST(emu_cuda, malloc_is_nan_until_written) {
  DevBuf a(100);
  for (float v : a.host()) EXPECT_TRUE(std::isnan(v));
}

TEST(emu_cuda, nonblocking_work_runs_only_when_waited_for) {
  DevBuf a(100);
  cudaStream_t s = nonblocking();
  fill(a.p, 3.0f, a.n, s);
  // cudaMemcpy waits for the legacy stream, which a non-blocking stream is not ordered with
  EXPECT_TRUE(std::isnan(a.host()[7]));
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(a.host()[7], 3.0f);
  cudaStreamDestroy(s);
}

TEST(emu_cuda, events_order_streams_and_nothing_else_does) {
  DevBuf a(64), b(64);
  cudaStream_t s1 = nonblocking(), s2 = nonblocking();
  fill(a.p, 2.0f, 64, s1);
  fill(b.p, 1.0f, 64, s2);
  add(b.p, a.p, 64, s2);  // no wait for s1: a is still NaN when s2 runs
  ASSERT_EQ(cudaStreamSynchronize(s2), cudaSuccess);
  EXPECT_TRUE(std::isnan(b.host()[0]));

  cudaEvent_t e;
  ASSERT_EQ(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), cudaSuccess);
  fill(a.p, 2.0f, 64, s1);
  ASSERT_EQ(cudaEventRecord(e, s1), cudaSuccess);
  fill(b.p, 1.0f, 64, s2);
  ASSERT_EQ(cudaStreamWaitEvent(s2, e, 0), cudaSuccess);
  add(b.p, a.p, 64, s2);
  ASSERT_EQ(cudaEventDestroy(e), cudaSuccess);  // the queued wait outlives the handle
  ASSERT_EQ(cudaStreamSynchronize(s2), cudaSuccess);
  EXPECT_EQ(b.host()[63], 3.0f);
  cudaStreamDestroy(s1);
  cudaStreamDestroy(s2);
}

TEST(emu_cuda, blocking_streams_wait_for_the_legacy_stream_but_not_for_each_other) {
  DevBuf a(64), b(64);
  cudaStream_t s1, s2;
  ASSERT_EQ(cudaStreamCreate(&s1), cudaSuccess);
  ASSERT_EQ(cudaStreamCreate(&s2), cudaSuccess);
  fill(a.p, 5.0f, 64, 0);  // legacy
  fill(b.p, 1.0f, 64, s1);
  add(b.p, a.p, 64, s1);  // after the legacy fill
  ASSERT_EQ(cudaStreamSynchronize(s1), cudaSuccess);
  EXPECT_EQ(b.host()[1], 6.0f);

  fill(a.p, 7.0f, 64, s1);
  add(b.p, a.p, 64, s2);  // s2 is not ordered after s1
  ASSERT_EQ(cudaStreamSynchronize(s2), cudaSuccess);
  std::vector<float> h(64);
  ASSERT_EQ(cudaMemcpyAsync(h.data(), b.p, 64 * sizeof(float), cudaMemcpyDeviceToHost, s2), cudaSuccess);
  EXPECT_EQ(h[1], 11.0f);  // 6 + the old 5
  cudaStreamDestroy(s1);
  cudaStreamDestroy(s2);
}

TEST(emu_cuda, memcpy_to_the_device_does_not_order_a_nonblocking_stream) {
  DevBuf a(64), b(64);
  cudaStream_t s = nonblocking();
  std::vector<float> ones(64, 1.0f);
  ASSERT_EQ(cudaMemcpy(a.p, ones.data(), 64 * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  fill(b.p, 0.0f, 64, s);
  add(b.p, a.p, 64, s);  // the copy may not have landed: a race on a GPU, NaN here
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  std::vector<float> h(64);
  ASSERT_EQ(cudaMemcpyAsync(h.data(), b.p, 64 * sizeof(float), cudaMemcpyDeviceToHost, s), cudaSuccess);
  EXPECT_TRUE(std::isnan(h[0]));
  // a copy to host memory returns with the data
  EXPECT_EQ(a.host()[0], 1.0f);
  cudaStreamDestroy(s);
}

TEST(emu_cuda, a_second_cudaFree_of_a_pointer_fails) {
  float* p = nullptr;
  ASSERT_EQ(cudaMalloc(&p, 16 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaFree(p), cudaSuccess);
  EXPECT_EQ(cudaFree(p), cudaErrorInvalidValue);  // twice
  (void)cudaGetLastError();
}

TEST(emu_cuda, a_graph_replays_with_the_memory_of_its_launch) {
  DevBuf a(64), b(64);
  cudaStream_t s = nonblocking();
  fill(b.p, 0.0f, 64, s);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
  add(b.p, a.p, 64, s);
  cudaGraph_t g;
  ASSERT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
  cudaGraphExec_t x;
  ASSERT_EQ(cudaGraphInstantiate(&x, g, 0), cudaSuccess);
  for (float v : {1.0f, 2.0f}) {
    fill(a.p, v, 64, s);
    ASSERT_EQ(cudaGraphLaunch(x, s), cudaSuccess);
  }
  ASSERT_EQ(cudaGraphExecDestroy(x), cudaSuccess);
  ASSERT_EQ(cudaGraphDestroy(g), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(b.host()[0], 3.0f);
  cudaStreamDestroy(s);
}

TEST(emu_cuda, a_capture_fails_on_what_cuda_forbids) {
  DevBuf a(16);
  cudaStream_t s = nonblocking();
  cudaGraph_t g = nullptr;
  // cudaMalloc during a global capture
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
  float* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, 64), cudaErrorStreamCaptureUnsupported);
  EXPECT_EQ(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(g, nullptr);
  // synchronising the capturing stream
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(s), cudaErrorStreamCaptureUnsupported);
  EXPECT_EQ(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureInvalidated);
  // a copy from pageable host memory
  std::vector<float> h(16, 1.0f);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  EXPECT_EQ(cudaMemcpyAsync(a.p, h.data(), 64, cudaMemcpyHostToDevice, s), cudaErrorStreamCaptureUnsupported);
  EXPECT_EQ(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureInvalidated);
  // waiting on an event recorded outside the capture
  cudaEvent_t e;
  ASSERT_EQ(cudaEventCreate(&e), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(e, 0), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  EXPECT_EQ(cudaStreamWaitEvent(s, e, 0), cudaErrorStreamCaptureIsolation);
  EXPECT_EQ(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureInvalidated);
  cudaEventDestroy(e);
  // a blocking stream's capture and the legacy stream
  cudaStream_t b;
  ASSERT_EQ(cudaStreamCreate(&b), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(b, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  EXPECT_EQ(cudaMemsetAsync(a.p, 0, 64, 0), cudaErrorStreamCaptureImplicit);
  EXPECT_EQ(cudaStreamEndCapture(b, &g), cudaErrorStreamCaptureInvalidated);
  (void)cudaGetLastError();
  cudaStreamDestroy(b);
  cudaStreamDestroy(s);
}

TEST(emu_cuda, copies_are_checked_against_their_kind_and_bounds) {
  DevBuf a(16);
  std::vector<float> h(32);
  EXPECT_EQ(cudaMemcpy(h.data(), h.data() + 16, 64, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(a.p, h.data(), 64, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  (void)cudaGetLastError();
  EXPECT_DEATH(cudaMemcpy(a.p, h.data(), 65, cudaMemcpyHostToDevice), "out of bounds");
  EXPECT_DEATH(cudaMemsetAsync(a.p + 8, 0, 33, 0), "out of bounds");
}

TEST(emu_cuda, launches_are_checked) {
  DevBuf a(64);
  std::vector<float> h(64);
  EXPECT_DEATH(fill(h.data(), 1.0f, 64, 0), "not device memory");
  EXPECT_DEATH(emu_launch(dim3(1, 70000), dim3(32), [] {}, 0, 0, nullptr, "k"), "grid");
  EXPECT_DEATH(emu_launch(dim3(1), dim3(32, 1, 65), [] {}, 0, 0, nullptr, "k"), "block");
  float* p = a.p;
  auto launch = [&](size_t smem) {
    emu_launch(dim3(1), dim3(64), [=] { smem_kernel(p); }, smem, 0, emu_fn_id(smem_kernel), "smem_kernel");
  };
  EXPECT_DEATH(launch(64 * 1024), "dynamic shared memory");
  ASSERT_EQ(cudaFuncSetAttribute(smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024), cudaSuccess);
  launch(64 * 1024);
  EXPECT_EQ(a.host()[0], 1.0f);
}

// C = alpha op(A) op(B) + beta C, column-major, against a plain loop; beta 0
// must not read C (NaN from cudaMalloc).
TEST(emu_cuda, cublas_gemm_is_the_column_major_product) {
  cublasHandle_t h;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  const int m = 5, n = 3, k = 4, batch = 2, lda = 7, ldb = 6, ldc = 8;
  const long long sa = (long long)lda * 5 + 3, sb = (long long)ldb * 5 + 1, sc = (long long)ldc * n + 2;
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++)
      for (float beta : {0.0f, 0.5f}) {
        std::vector<float> A(sa * batch), B(sb * batch), C(sc * batch);
        for (size_t i = 0; i < A.size(); i++) A[i] = (float)((i * 7) % 11) - 5.0f;
        for (size_t i = 0; i < B.size(); i++) B[i] = (float)((i * 5) % 13) - 6.0f;
        for (size_t i = 0; i < C.size(); i++) C[i] = (float)(i % 3);
        DevBuf dA((int)A.size()), dB((int)B.size()), dC((int)C.size());
        ASSERT_EQ(cudaMemcpy(dA.p, A.data(), A.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
        ASSERT_EQ(cudaMemcpy(dB.p, B.data(), B.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
        if (beta != 0.0f) ASSERT_EQ(cudaMemcpy(dC.p, C.data(), C.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
        const float alpha = 2.0f;
        ASSERT_EQ(cublasGemmStridedBatchedEx(h, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k,
                                             &alpha, dA.p, CUDA_R_32F, lda, sa, dB.p, CUDA_R_32F, ldb, sb, &beta,
                                             dC.p, CUDA_R_32F, ldc, sc, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                  CUBLAS_STATUS_SUCCESS);
        const std::vector<float> got = dC.host();
        for (int bi = 0; bi < batch; bi++)
          for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
              double ref = 0;
              for (int l = 0; l < k; l++) {
                const float a = ta ? A[bi * sa + l + (size_t)i * lda] : A[bi * sa + i + (size_t)l * lda];
                const float b = tb ? B[bi * sb + j + (size_t)l * ldb] : B[bi * sb + l + (size_t)j * ldb];
                ref += (double)a * b;
              }
              const size_t ic = bi * sc + i + (size_t)j * ldc;
              ref = alpha * ref + (beta != 0.0f ? beta * C[ic] : 0.0);
              EXPECT_EQ(got[ic], (float)ref) << "ta " << ta << " tb " << tb << " beta " << beta;
            }
      }
  const float one = 1.0f, zero = 0.0f;
  DevBuf x(4);
  EXPECT_EQ(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &one, x.p, CUDA_R_32F, 1, x.p, CUDA_R_32F, 2, &zero,
                         x.p, CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_INVALID_VALUE);  // lda < m
  cublasDestroy(h);
}

}  // namespace
