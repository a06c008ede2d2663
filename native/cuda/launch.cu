// launch.cu: the programmatic-launch switch (launch.h).
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "launch.cuh"

namespace fw {
namespace cuda {

namespace {

// -1: not decided yet (the environment decides on first use).
std::atomic<int> g_enabled{-1};
constexpr int kMaxDevices = 64;
std::atomic<int> g_supported[kMaxDevices];  // 0 unknown, 1 yes, 2 no

// Built like every kernel of this library: its PTX version says whether the
// kernels carry the griddepcontrol instructions (sm_90 code) or were built
// for an older architecture only (then JIT-compiled without them).
__global__ void pdl_probe_kernel() { pdl_wait_then_trigger(); }

bool device_supports() {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kMaxDevices) {
    (void)cudaGetLastError();
    return false;
  }
  int known = g_supported[dev].load(std::memory_order_relaxed);
  if (known == 0) {
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      major = 0;
    }
    cudaFuncAttributes fa{};
    if (major >= 9 && cudaFuncGetAttributes(&fa, pdl_probe_kernel) != cudaSuccess) {
      (void)cudaGetLastError();
      fa.ptxVersion = 0;
    }
    known = major >= 9 && fa.ptxVersion >= 90 ? 1 : 2;
    g_supported[dev].store(known, std::memory_order_relaxed);
  }
  return known == 1;
}

}  // namespace

void set_programmatic_launch(bool on) { g_enabled.store(on ? 1 : 0); }

bool programmatic_launch() {
  int e = g_enabled.load(std::memory_order_relaxed);
  if (e < 0) {
    const char* env = std::getenv("FW_CUDA_PDL");
    e = env && std::strcmp(env, "0") == 0 ? 0 : 1;
    g_enabled.store(e);
  }
  return e == 1 && device_supports();
}

}  // namespace cuda
}  // namespace fw
