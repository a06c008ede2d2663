// nccl_shim.h: NCCL loaded at run time with dlopen, so that neither its
// headers nor its library are needed to build the engine.
//
// The few NCCL types the engine uses are declared here to the library's ABI
// (nccl.h of NCCL 2.x: ncclUniqueId is 128 bytes, the data type and reduction
// op enums have these values since 2.0; bfloat16 since 2.10), and every entry
// point is looked up by name from libnccl.so.2 (or $FW_NCCL_LIBRARY) the
// first time nccl_api() is called. No NCCL found: nccl_api() throws
// kUnsupported with a hint; nccl_available() says so without throwing.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>

namespace fw {
namespace cuda {

struct NcclComm;                    // opaque: ncclComm
using ncclComm_t = NcclComm*;
struct ncclUniqueId {
  char internal[128];
};
using ncclResult_t = int;           // 0 = ncclSuccess

// ncclDataType_t / ncclRedOp_t values.
struct NcclType {
  static constexpr int kInt8 = 0, kUint8 = 1, kInt32 = 2, kUint32 = 3, kInt64 = 4, kUint64 = 5, kFloat16 = 6,
                       kFloat32 = 7, kFloat64 = 8, kBfloat16 = 9;
};
struct NcclOp {
  static constexpr int kSum = 0, kProd = 1, kMax = 2, kMin = 3, kAvg = 4;
};
constexpr int kNcclInProgress = 7;  // ncclInProgress (non-blocking communicators)

// The entry points, resolved by dlsym. Optional ones (absent in old
// releases) are nullptr when missing.
struct NcclApi {
  void* handle = nullptr;
  std::string path;  // the library that was loaded
  int version = 0;   // ncclGetVersion, e.g. 22105 for 2.21.5
  ncclResult_t (*GetVersion)(int*) = nullptr;
  ncclResult_t (*GetUniqueId)(ncclUniqueId*) = nullptr;
  ncclResult_t (*CommInitRank)(ncclComm_t*, int nranks, ncclUniqueId id, int rank) = nullptr;
  ncclResult_t (*CommDestroy)(ncclComm_t) = nullptr;
  ncclResult_t (*CommAbort)(ncclComm_t) = nullptr;
  ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t*) = nullptr;
  const char* (*GetErrorString)(ncclResult_t) = nullptr;
  ncclResult_t (*AllReduce)(const void* send, void* recv, size_t count, int dtype, int op, ncclComm_t,
                            cudaStream_t) = nullptr;
  ncclResult_t (*Broadcast)(const void* send, void* recv, size_t count, int dtype, int root, ncclComm_t,
                            cudaStream_t) = nullptr;
  ncclResult_t (*ReduceScatter)(const void* send, void* recv, size_t recvcount, int dtype, int op, ncclComm_t,
                                cudaStream_t) = nullptr;
  ncclResult_t (*AllGather)(const void* send, void* recv, size_t sendcount, int dtype, ncclComm_t,
                            cudaStream_t) = nullptr;
  ncclResult_t (*GroupStart)() = nullptr;
  ncclResult_t (*GroupEnd)() = nullptr;
};

// The loaded API (loaded once, thread-safe); throws fw::Error(kUnsupported)
// when the library or a required symbol is missing.
const NcclApi& nccl_api();
// true when nccl_api() would succeed.
bool nccl_available();

}  // namespace cuda
}  // namespace fw

// FW_NCCL_CHECK(api, call): throw fw::Error(kIo) with NCCL's message.
#define FW_NCCL_CHECK(api, call)                                                                    \
  do {                                                                                              \
    ::fw::cuda::ncclResult_t fw_nccl_r_ = (call);                                                   \
    if (fw_nccl_r_ != 0) {                                                                          \
      ::fw::throw_error(::fw::ErrorKind::kIo, __FILE__, __LINE__,                                   \
                        std::string(#call) + " failed: " + (api).GetErrorString(fw_nccl_r_),        \
                        "run with NCCL_DEBUG=INFO to see what NCCL tried");                         \
    }                                                                                               \
  } while (0)
