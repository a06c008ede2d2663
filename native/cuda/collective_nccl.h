// collective_nccl.h: the NCCL backend of collective.h (GPU ranks).
//
// Same contract as every backend (engine/collective.h): allreduce_sum leaves
// the sum in x on every rank. Buffers may be device or host memory (host
// buffers are staged through a device copy; training passes device buffers).
// The calls of the Collective interface are synchronous. For overlapping the
// gradient all-reduce with backward, NcclCollective adds an asynchronous
// pair on its own communication stream:
//
//   // compute stream: backward writes grads of bucket k, then
//   nccl.allreduce_async(bucket_k, n_k, NcclType::kBfloat16, compute_stream);
//   ...                                   // backward goes on meanwhile
//   nccl.wait_all(compute_stream);        // optimizer step after this
//
// allreduce_async makes the communication stream wait for the work queued
// so far on compute_stream (an event), so bucket k travels while backward
// computes bucket k+1. Rendezvous: rank 0 creates the NCCL unique id and
// puts it in the trainer's store (FW_STORE_URL) under "nccl/unique_id"; the
// others fetch it, waiting up to join_timeout_ms.
// Run-to-run bit identity needs a fixed algorithm: NCCL_ALGO=Ring
// NCCL_PROTO=Simple (the worker sets them unless the user did).
#pragma once

#include <cuda_runtime.h>

#include <memory>

#include "collective.h"

namespace fw {
namespace cuda {

class NcclCollective : public Collective {
 public:
  ~NcclCollective() override = default;
  // Enqueue x (n elements of dtype, device memory) <- sum over ranks, after
  // the work already queued on `after`. Returns at once.
  virtual void allreduce_async(void* x, size_t n, int dtype, cudaStream_t after) = 0;
  // ZeRO-1 building blocks, enqueued like allreduce_async: each rank gets
  // the sum of its shard, shard r = elements [r*count, (r+1)*count) of send
  // (count * world_size elements) into recv (count); and the inverse, every
  // rank's shard (count) gathered into recv (count * world_size) in rank
  // order. Throw kUnsupported if the loaded NCCL lacks them.
  virtual void reduce_scatter_async(const void* send, void* recv, size_t count, int dtype, cudaStream_t after) = 0;
  virtual void all_gather_async(const void* send, void* recv, size_t count, int dtype, cudaStream_t after) = 0;
  // Make `stream` wait for every collective enqueued so far; checks the
  // communicator for asynchronous errors.
  virtual void wait_all(cudaStream_t stream) = 0;
};

// allreduce_sum_bucketed (collective.h) on the communication stream: x (n
// elements of dtype, elem_bytes each) in consecutive buckets of bucket_bytes,
// each enqueued after the work queued on `after` so far. Backward calls it
// per bucket as soon as that bucket's gradients are complete; wait_all
// before the optimizer step.
inline void allreduce_bucketed_async(NcclCollective& c, void* x, size_t n, size_t elem_bytes, int dtype,
                                     cudaStream_t after, size_t bucket_bytes = kDefaultBucketBytes) {
  if (c.world_size() == 1 || n == 0) return;
  size_t per = bucket_bytes / elem_bytes;
  if (per == 0) per = 1;
  for (size_t off = 0; off < n; off += per)
    c.allreduce_async(static_cast<char*>(x) + off * elem_bytes, n - off < per ? n - off : per, dtype, after);
}

// Bytes per element of an NcclType value (throws kInvalidArgument for others).
size_t nccl_dtype_bytes(int dtype);
// Whether p is device (or managed) memory, as opposed to host memory.
bool is_device_pointer(const void* p);

// Join the other ranks (cudaSetDevice(env.local_rank) first). Throws
// CollectiveError(kRendezvousTimeout) when the unique id does not arrive in
// time, kStore when the store fails, kUnsupported when NCCL is missing.
std::unique_ptr<NcclCollective> make_nccl_collective(const CollectiveEnv& env);

}  // namespace cuda
}  // namespace fw
