// collective_nccl.cpp: NcclCollective on top of the dlopen shim.
//
// Timeouts: NCCL calls themselves never time out (a dead peer hangs the
// kernel), so every synchronous call polls its stream and the communicator's
// async error until env.collective_timeout_ms, then aborts the communicator
// (which unblocks the kernel) and throws CollectiveError(kCollectiveTimeout).
// A communicator that reported an error is aborted too (kPeerLost).
#include "collective_nccl.h"

#include <chrono>
#include <thread>
#include <vector>

#include "cuda_check.h"
#include "nccl_shim.h"
#include "store_client.h"

namespace fw {
namespace cuda {

size_t nccl_dtype_bytes(int dtype) {
  switch (dtype) {
    case NcclType::kInt8:
    case NcclType::kUint8: return 1;
    case NcclType::kFloat16:
    case NcclType::kBfloat16: return 2;
    case NcclType::kInt32:
    case NcclType::kUint32:
    case NcclType::kFloat32: return 4;
    case NcclType::kInt64:
    case NcclType::kUint64:
    case NcclType::kFloat64: return 8;
  }
  FW_CHECK(false, kInvalidArgument, "nccl: unknown data type " << dtype);
}

bool is_device_pointer(const void* p) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    (void)cudaGetLastError();  // plain host memory on old drivers: clear the error
    return false;
  }
  return attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged;
}

namespace {

class NcclCollectiveImpl : public NcclCollective {
 public:
  NcclCollectiveImpl(const CollectiveEnv& env) : env_(env), api_(nccl_api()) {
    FW_CUDA_CHECK(cudaSetDevice(env.local_rank));
    ncclUniqueId id{};
    const std::string key = "nccl/unique_id";
    if (env.world_size == 1) {
      FW_NCCL_CHECK(api_, api_.GetUniqueId(&id));  // a communicator of one: nobody to tell
    } else if (env.rank == 0) {
      FW_CHECK_HINT(!env.store_url.empty(), kInvalidArgument, "nccl: world_size " << env.world_size
                    << " needs a rendezvous store", "set FW_STORE_URL (the trainer does)");
      FW_NCCL_CHECK(api_, api_.GetUniqueId(&id));
      StoreClient store(env.store_url, env.store_token);
      store.set(key, std::vector<char>(id.internal, id.internal + sizeof(id.internal)));
    } else {
      FW_CHECK_HINT(!env.store_url.empty(), kInvalidArgument, "nccl: world_size " << env.world_size
                    << " needs a rendezvous store", "set FW_STORE_URL (the trainer does)");
      StoreClient store(env.store_url, env.store_token);
      auto v = store.get(key, env.join_timeout_ms);
      if (!v) throw CollectiveError(CollectiveFailure::kRendezvousTimeout,
                                    "nccl: rank 0 did not publish its unique id within " +
                                        std::to_string(env.join_timeout_ms) + " ms");
      FW_CHECK(v->size() == sizeof(id.internal), kCorrupt,
               "nccl: unique id in the store has " << v->size() << " bytes, expected " << sizeof(id.internal));
      std::copy(v->begin(), v->end(), id.internal);
    }
    FW_NCCL_CHECK(api_, api_.CommInitRank(&comm_, env.world_size, id, env.rank));
    FW_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    FW_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    FW_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  }

  ~NcclCollectiveImpl() override {
    if (stream_) cudaStreamSynchronize(stream_);
    if (comm_) api_.CommDestroy(comm_);
    if (staging_) cudaFree(staging_);
    if (ready_) cudaEventDestroy(ready_);
    if (done_) cudaEventDestroy(done_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  const char* name() const override { return "nccl"; }
  CollectiveCaps caps() const override {
    CollectiveCaps c;
    c.multi_process = true;
    c.device_buffers = true;
    return c;
  }
  int rank() const override { return env_.rank; }
  int world_size() const override { return env_.world_size; }

  void allreduce_sum(float* x, size_t n) override { sync_allreduce(x, n, NcclType::kFloat32); }
  void allreduce_sum(double* x, size_t n) override { sync_allreduce(x, n, NcclType::kFloat64); }

  void broadcast(void* data, size_t bytes, int root) override {
    if (bytes == 0) return;
    void* dev = stage_in(data, bytes);
    FW_NCCL_CHECK(api_, api_.Broadcast(dev, dev, bytes, NcclType::kUint8, root, comm_, stream_));
    wait_stream("broadcast");
    stage_out(data, dev, bytes);
  }

  void barrier() override {
    float* one = static_cast<float*>(staging(sizeof(float)));
    FW_CUDA_CHECK(cudaMemsetAsync(one, 0, sizeof(float), stream_));
    FW_NCCL_CHECK(api_, api_.AllReduce(one, one, 1, NcclType::kFloat32, NcclOp::kSum, comm_, stream_));
    wait_stream("barrier");
  }

  void allreduce_async(void* x, size_t n, int dtype, cudaStream_t after) override {
    if (n == 0) return;
    FW_CUDA_CHECK(cudaEventRecord(ready_, after));
    FW_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
    FW_NCCL_CHECK(api_, api_.AllReduce(x, x, n, dtype, NcclOp::kSum, comm_, stream_));
  }

  void reduce_scatter_async(const void* send, void* recv, size_t count, int dtype, cudaStream_t after) override {
    FW_CHECK(api_.ReduceScatter, kUnsupported, "nccl: this libnccl has no ncclReduceScatter");
    if (count == 0) return;
    FW_CUDA_CHECK(cudaEventRecord(ready_, after));
    FW_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
    FW_NCCL_CHECK(api_, api_.ReduceScatter(send, recv, count, dtype, NcclOp::kSum, comm_, stream_));
  }

  void all_gather_async(const void* send, void* recv, size_t count, int dtype, cudaStream_t after) override {
    FW_CHECK(api_.AllGather, kUnsupported, "nccl: this libnccl has no ncclAllGather");
    if (count == 0) return;
    FW_CUDA_CHECK(cudaEventRecord(ready_, after));
    FW_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
    FW_NCCL_CHECK(api_, api_.AllGather(send, recv, count, dtype, comm_, stream_));
  }

  void wait_all(cudaStream_t stream) override {
    check_async("wait_all");
    FW_CUDA_CHECK(cudaEventRecord(done_, stream_));
    FW_CUDA_CHECK(cudaStreamWaitEvent(stream, done_, 0));
  }

 private:
  void sync_allreduce(void* x, size_t n, int dtype) {
    if (n == 0) return;
    const size_t bytes = n * nccl_dtype_bytes(dtype);
    void* dev = stage_in(x, bytes);
    FW_NCCL_CHECK(api_, api_.AllReduce(dev, dev, n, dtype, NcclOp::kSum, comm_, stream_));
    wait_stream("allreduce_sum");
    stage_out(x, dev, bytes);
  }

  // Device buffers are used in place; host ones go through staging_.
  void* stage_in(void* p, size_t bytes) {
    if (is_device_pointer(p)) return p;
    void* dev = staging(bytes);
    FW_CUDA_CHECK(cudaMemcpyAsync(dev, p, bytes, cudaMemcpyHostToDevice, stream_));
    return dev;
  }
  void stage_out(void* p, void* dev, size_t bytes) {
    if (p == dev) return;
    FW_CUDA_CHECK(cudaMemcpyAsync(p, dev, bytes, cudaMemcpyDeviceToHost, stream_));
    FW_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void* staging(size_t bytes) {
    if (bytes > staging_bytes_) {
      FW_CUDA_CHECK(cudaStreamSynchronize(stream_));
      if (staging_) FW_CUDA_CHECK(cudaFree(staging_));
      staging_ = nullptr;
      FW_CUDA_CHECK(cudaMalloc(&staging_, bytes));
      staging_bytes_ = bytes;
    }
    return staging_;
  }

  void check_async(const char* what) {
    ncclResult_t r = 0;
    FW_NCCL_CHECK(api_, api_.CommGetAsyncError(comm_, &r));
    if (r != 0 && r != kNcclInProgress) {
      api_.CommAbort(comm_);
      comm_ = nullptr;
      throw CollectiveError(CollectiveFailure::kPeerLost,
                            std::string("nccl ") + what + ": " + api_.GetErrorString(r));
    }
  }

  // Poll until the communication stream drains or the timeout passes.
  void wait_stream(const char* what) {
    using clock = std::chrono::steady_clock;
    const auto deadline = clock::now() + std::chrono::milliseconds(env_.collective_timeout_ms);
    for (;;) {
      cudaError_t e = cudaStreamQuery(stream_);
      if (e == cudaSuccess) return;
      FW_CHECK(e == cudaErrorNotReady, kInternal, "nccl " << what << ": " << cudaGetErrorString(e));
      check_async(what);
      if (clock::now() > deadline) {
        api_.CommAbort(comm_);
        comm_ = nullptr;
        throw CollectiveError(CollectiveFailure::kCollectiveTimeout,
                              std::string("nccl ") + what + ": no progress within " +
                                  std::to_string(env_.collective_timeout_ms) + " ms (a peer stopped answering)");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  CollectiveEnv env_;
  const NcclApi& api_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr, done_ = nullptr;
  void* staging_ = nullptr;
  size_t staging_bytes_ = 0;
};

}  // namespace

std::unique_ptr<NcclCollective> make_nccl_collective(const CollectiveEnv& env) {
  FW_CHECK(env.world_size >= 1 && env.rank >= 0 && env.rank < env.world_size, kInvalidArgument,
           "nccl: rank " << env.rank << " outside world_size " << env.world_size);
  return std::make_unique<NcclCollectiveImpl>(env);
}

}  // namespace cuda
}  // namespace fw
