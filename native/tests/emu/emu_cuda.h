// emu_cuda.h: the CUDA runtime and cuBLAS calls of native/cuda, on the CPU,
// for the emulated CUDA backend (fw_cuda_emu: the model loop, the trainer
// and the GPU tests themselves, run in CI with the kernels on emu_simt.h).
// Device memory is host memory; what makes this more than a stand-in is
// that it keeps CUDA's ordering rules, so host code that breaks them
// computes wrong numbers here as it would on a GPU:
//  - streams are lazy: work is queued and runs only when something waits
//    for it (a stream or event synchronisation, a copy to host memory, a
//    cudaFree), so a host read of a result nobody waited for sees the old
//    bytes;
//  - the legacy default stream waits for the work already issued to every
//    blocking stream and they for its; blocking streams are not ordered
//    with each other, and non-blocking ones (cudaStreamNonBlocking) with
//    nothing but through events;
//  - cudaMemcpy synchronises as the runtime documents per direction: to
//    host memory it returns when done, from pageable memory it may return
//    before the bytes land, device to device it does not wait;
//  - cudaMalloc returns all-ones bytes (a NaN in every float type), and
//    freed memory gets them again, so reading memory nobody wrote (or
//    memory already freed) shows in the outputs;
//  - copies are checked against their kind and their allocation, launches
//    against CUDA's grid, block and shared-memory limits, and a kernel's
//    pointer arguments must lie in live allocations (an overrun or a host
//    pointer aborts with a message, like compute-sanitizer's memcheck);
//  - stream capture records the stream's work into a graph, replayed by
//    cudaGraphLaunch with the values memory holds then; the calls a capture
//    forbids (synchronisation, cudaMalloc, copies to or from pageable
//    memory, the legacy stream next to a blocking capture) fail it as CUDA
//    does;
//  - one emulated device, sm_90-like, with few SMs (so grids sized "one
//    wave" loop over their work).
// FW_EMU_EAGER (the kernel-only emulator tests) runs every call at once
// instead. Everything runs under one lock: host threads (the two-rank
// trainer test) take turns.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <type_traits>

// ---------------------------------------------------------------- types
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorIllegalState = 401,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureIsolation = 905,
  cudaErrorStreamCaptureWrongThread = 908,
  cudaErrorStreamCaptureImplicit = 906,
  cudaErrorCapturedEvent = 907,
};
using cudaError = cudaError_t;
struct CUstream_st;
struct CUevent_st;
struct CUgraph_st;
struct CUgraphExec_st;
using cudaStream_t = CUstream_st*;
using cudaEvent_t = CUevent_st*;
using cudaGraph_t = CUgraph_st*;
using cudaGraphExec_t = CUgraphExec_st*;
#define cudaStreamLegacy ((cudaStream_t)0x1)
#define cudaStreamPerThread ((cudaStream_t)0x2)
#define cudaStreamDefault 0x0
#define cudaStreamNonBlocking 0x1
#define cudaEventDefault 0x0
#define cudaEventDisableTiming 0x2

enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice,
                      cudaMemcpyDefault };
enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal = 0, cudaStreamCaptureModeThreadLocal = 1,
                             cudaStreamCaptureModeRelaxed = 2 };
enum cudaStreamCaptureStatus { cudaStreamCaptureStatusNone = 0, cudaStreamCaptureStatusActive = 1,
                               cudaStreamCaptureStatusInvalidated = 2 };
enum cudaMemoryType { cudaMemoryTypeUnregistered = 0, cudaMemoryTypeHost = 1, cudaMemoryTypeDevice = 2,
                      cudaMemoryTypeManaged = 3 };
struct cudaPointerAttributes {
  cudaMemoryType type;
  int device;
  void* devicePointer;
  void* hostPointer;
};
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16, cudaDevAttrComputeCapabilityMajor = 75,
                      cudaDevAttrComputeCapabilityMinor = 76, cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
struct cudaFuncAttributes {
  size_t sharedSizeBytes, constSizeBytes, localSizeBytes;
  int maxThreadsPerBlock, numRegs, ptxVersion, binaryVersion;
};
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem, sharedMemPerBlock, sharedMemPerBlockOptin;
  int warpSize, maxThreadsPerBlock, multiProcessorCount, major, minor, l2CacheSize, memoryBusWidth, clockRate,
      memoryClockRate;
};

// ---------------------------------------------------------------- the runtime
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaSetDevice(int dev);
cudaError_t cudaGetDevice(int* dev);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int dev);
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int dev);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorString(cudaError_t e);
const char* cudaGetErrorName(cudaError_t e);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);

cudaError_t emu_malloc(void** p, size_t bytes);
template <typename P>
cudaError_t cudaMalloc(P** p, size_t bytes) {
  return emu_malloc(reinterpret_cast<void**>(p), bytes);
}
cudaError_t cudaFree(void* p);
cudaError_t emu_malloc_async(void** p, size_t bytes, cudaStream_t s);
template <typename P>
cudaError_t cudaMallocAsync(P** p, size_t bytes, cudaStream_t s) {
  return emu_malloc_async(reinterpret_cast<void**>(p), bytes, s);
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t s);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = 0);
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind kind, cudaStream_t s = 0);
cudaError_t cudaMemset(void* p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s = 0);
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* a, const void* p);

cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamQuery(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g);
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus* status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t g, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);

// Occupancy and function attributes: what a sizing decision needs.
int emu_blocks_per_sm(int threads);
template <typename K>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, K, int threads, size_t) {
  *n = emu_blocks_per_sm(threads);
  return cudaSuccess;
}
// A kernel's identity (its address), for the per-kernel attributes.
template <typename F>
const void* emu_fn_id(F* f) {
  return reinterpret_cast<const void*>(f);
}
void emu_set_max_dyn_smem(const void* kernel, size_t bytes);
template <typename K>
cudaError_t cudaFuncSetAttribute(K kernel, cudaFuncAttribute, int bytes) {
  if (bytes < 0 || bytes > 227 * 1024) return cudaErrorInvalidValue;
  emu_set_max_dyn_smem(emu_fn_id(kernel), (size_t)bytes);
  return cudaSuccess;
}
template <typename K>
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* a, K) {
  *a = cudaFuncAttributes{};
  a->maxThreadsPerBlock = 1024;
  a->ptxVersion = a->binaryVersion = 90;
  return cudaSuccess;
}

// Queues work on a stream (or records it, while the stream is captured).
// Eager mode (FW_EMU_EAGER) runs it at once.
cudaError_t emu_submit(cudaStream_t s, std::function<void()> work);

// A launch's checks, made when it is issued (a GPU refuses the launch, or
// faults): the grid and block within CUDA's limits, dynamic shared memory
// within 48 KiB or what cudaFuncSetAttribute allowed the kernel, and every
// pointer argument null or in a live allocation (one past its end allowed).
struct dim3;
void emu_check_launch(const void* kernel, const char* name, dim3 grid, dim3 block, size_t smem);
void emu_check_kernel_pointer(const void* p, const char* kernel, int arg);
template <typename A>
void emu_check_arg(const char* kernel, int i, const A& a) {
  if constexpr (std::is_pointer<A>::value) emu_check_kernel_pointer(static_cast<const void*>(a), kernel, i);
}
template <typename... A>
void emu_check_args(const char* kernel, const A&... a) {
  int i = 0;
  (emu_check_arg(kernel, i++, a), ...);
}

// ---------------------------------------------------------------- cuBLAS
enum cublasStatus_t { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_NOT_INITIALIZED = 1, CUBLAS_STATUS_INVALID_VALUE = 7,
                      CUBLAS_STATUS_NOT_SUPPORTED = 15 };
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 };
enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_8I = 3, CUDA_R_32I = 10, CUDA_R_16BF = 14 };
using cudaDataType = cudaDataType_t;
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_16F = 74,
                           CUBLAS_COMPUTE_32F_FAST_16BF = 75, CUBLAS_COMPUTE_32F_FAST_TF32 = 77 };
enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1, CUBLAS_GEMM_DEFAULT_TENSOR_OP = 99 };
struct cublasContext;
using cublasHandle_t = cublasContext*;
cublasStatus_t cublasCreate(cublasHandle_t* h);
cublasStatus_t cublasDestroy(cublasHandle_t h);
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s);
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void* ws, size_t bytes);
const char* cublasGetStatusString(cublasStatus_t s);
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void* alpha, const void* A, cudaDataType_t at, int lda, const void* B,
                            cudaDataType_t bt, int ldb, const void* beta, void* C, cudaDataType_t ct, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t algo);
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void* alpha, const void* A, cudaDataType_t at, int lda,
                                          long long sa, const void* B, cudaDataType_t bt, int ldb, long long sb,
                                          const void* beta, void* C, cudaDataType_t ct, int ldc, long long sc,
                                          int batch, cublasComputeType_t compute, cublasGemmAlgo_t algo);
