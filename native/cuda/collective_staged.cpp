// collective_staged.cpp: NcclCollective over a host Collective
// (collective_staged.h).
#include "collective_staged.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstring>
#include <string>
#include <vector>

#include "cuda_check.h"
#include "nccl_shim.h"

namespace fw {
namespace cuda {

namespace {

class StagedCollective : public NcclCollective {
 public:
  explicit StagedCollective(Collective& host) : host_(host), name_(std::string("staged:") + host.name()) {}

  const char* name() const override { return name_.c_str(); }
  CollectiveCaps caps() const override {
    CollectiveCaps c = host_.caps();
    c.device_buffers = true;
    return c;
  }
  int rank() const override { return host_.rank(); }
  int world_size() const override { return host_.world_size(); }

  void allreduce_sum(float* x, size_t n) override { reduce_any(x, n); }
  void allreduce_sum(double* x, size_t n) override { reduce_any(x, n); }

  // The synchronous calls with a device buffer: the caller has finished the
  // work that writes it (as with NCCL's synchronous calls); the result is in
  // place when the call returns.
  void broadcast(void* data, size_t bytes, int root) override {
    if (!is_device_pointer(data)) return host_.broadcast(data, bytes, root);
    std::vector<char> h(bytes);
    FW_CUDA_CHECK(cudaMemcpy(h.data(), data, bytes, cudaMemcpyDeviceToHost));
    host_.broadcast(h.data(), bytes, root);
    to_device(data, h.data(), bytes, nullptr);
  }

  void barrier() override { host_.barrier(); }

  void allreduce_async(void* x, size_t n, int dtype, cudaStream_t after) override {
    FW_CUDA_CHECK(cudaStreamSynchronize(after));
    std::vector<float> f = widen(x, n, dtype);
    host_.allreduce_sum(f.data(), n);
    narrow(x, f.data(), n, dtype, after);
  }

  void reduce_scatter_async(const void* send, void* recv, size_t count, int dtype, cudaStream_t after) override {
    FW_CUDA_CHECK(cudaStreamSynchronize(after));
    const size_t W = (size_t)world_size();
    std::vector<float> f = widen(send, count * W, dtype);
    host_.allreduce_sum(f.data(), f.size());
    narrow(recv, f.data() + (size_t)rank() * count, count, dtype, after);
  }

  // Each rank's shard, raw bytes, broadcast from its owner: exact for every
  // value (no arithmetic), in place when send is recv's own shard.
  void all_gather_async(const void* send, void* recv, size_t count, int dtype, cudaStream_t after) override {
    FW_CUDA_CHECK(cudaStreamSynchronize(after));
    const size_t W = (size_t)world_size(), bytes = count * nccl_dtype_bytes(dtype);
    std::vector<char> h(bytes * W);
    FW_CUDA_CHECK(cudaMemcpy(h.data() + (size_t)rank() * bytes, send, bytes, cudaMemcpyDefault));
    for (size_t r = 0; r < W; r++) host_.broadcast(h.data() + r * bytes, bytes, (int)r);
    to_device(recv, h.data(), h.size(), after);
  }

  void wait_all(cudaStream_t) override {}  // every call finished before returning

 private:
  template <typename V>
  void reduce_any(V* x, size_t n) {
    if (!is_device_pointer(x)) return host_.allreduce_sum(x, n);
    std::vector<V> h(n);
    FW_CUDA_CHECK(cudaMemcpy(h.data(), x, n * sizeof(V), cudaMemcpyDeviceToHost));
    host_.allreduce_sum(h.data(), n);
    to_device(x, h.data(), n * sizeof(V), nullptr);
  }

  // Host bytes into p (device or host memory), finished before returning: a
  // copy from pageable memory may still be in flight when cudaMemcpy
  // returns, and the trainer's streams (non-blocking) are not ordered after
  // the legacy stream, so the copy goes on `stream` (the legacy one when
  // null) and that stream is waited for.
  static void to_device(void* p, const void* h, size_t bytes, cudaStream_t stream) {
    const cudaStream_t s = stream ? stream : cudaStreamLegacy;
    FW_CUDA_CHECK(cudaMemcpyAsync(p, h, bytes, cudaMemcpyDefault, s));
    FW_CUDA_CHECK(cudaStreamSynchronize(s));
  }

  // n elements of dtype at device (or host) address p, as fp32 on the host
  // (a copy into pageable memory is complete when cudaMemcpy returns; the
  // callers have synchronised the stream that wrote p).
  static std::vector<float> widen(const void* p, size_t n, int dtype) {
    std::vector<float> f(n);
    const size_t eb = nccl_dtype_bytes(dtype);
    std::vector<char> raw(n * eb);
    FW_CUDA_CHECK(cudaMemcpy(raw.data(), p, n * eb, cudaMemcpyDefault));
    switch (dtype) {
      case NcclType::kFloat32:
        std::memcpy(f.data(), raw.data(), n * sizeof(float));
        break;
      case NcclType::kBfloat16: {
        const __nv_bfloat16* b = reinterpret_cast<const __nv_bfloat16*>(raw.data());
        for (size_t i = 0; i < n; i++) f[i] = __bfloat162float(b[i]);
        break;
      }
      case NcclType::kFloat16: {
        const __half* h = reinterpret_cast<const __half*>(raw.data());
        for (size_t i = 0; i < n; i++) f[i] = __half2float(h[i]);
        break;
      }
      default:
        FW_CHECK(false, kUnsupported, "staged collective: data type " << dtype << " (float, bf16 and fp16 only)");
    }
    return f;
  }

  // fp32 values back into n elements of dtype at p, rounded to nearest even;
  // the copy is complete, and ordered on `stream`, when this returns.
  static void narrow(void* p, const float* f, size_t n, int dtype, cudaStream_t stream) {
    const size_t eb = nccl_dtype_bytes(dtype);
    std::vector<char> raw(n * eb);
    switch (dtype) {
      case NcclType::kFloat32:
        std::memcpy(raw.data(), f, n * sizeof(float));
        break;
      case NcclType::kBfloat16: {
        __nv_bfloat16* b = reinterpret_cast<__nv_bfloat16*>(raw.data());
        for (size_t i = 0; i < n; i++) b[i] = __float2bfloat16_rn(f[i]);
        break;
      }
      case NcclType::kFloat16: {
        __half* h = reinterpret_cast<__half*>(raw.data());
        for (size_t i = 0; i < n; i++) h[i] = __float2half_rn(f[i]);
        break;
      }
      default:
        FW_CHECK(false, kUnsupported, "staged collective: data type " << dtype << " (float, bf16 and fp16 only)");
    }
    to_device(p, raw.data(), n * eb, stream);
  }

  Collective& host_;
  const std::string name_;
};

}  // namespace

std::unique_ptr<NcclCollective> make_staged_collective(Collective& host) {
  return std::make_unique<StagedCollective>(host);
}

}  // namespace cuda
}  // namespace fw
