// nccl_shim.cpp: dlopen/dlsym of libnccl (see nccl_shim.h).
#include "nccl_shim.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "common.h"

namespace fw {
namespace cuda {

namespace {

struct Loaded {
  NcclApi api;
  std::string error;  // empty when api is usable
};

template <typename F>
bool resolve(void* h, const char* name, F* out, bool required, std::string* error) {
  *out = reinterpret_cast<F>(dlsym(h, name));
  if (!*out && required) {
    *error = std::string("symbol ") + name + " not found";
    return false;
  }
  return true;
}

Loaded load() {
  Loaded l;
  const char* env = std::getenv("FW_NCCL_LIBRARY");
  const char* candidates[] = {env, "libnccl.so.2", "libnccl.so"};
  for (const char* c : candidates) {
    if (!c || !*c) continue;
    l.api.handle = dlopen(c, RTLD_NOW | RTLD_LOCAL);
    if (l.api.handle) {
      l.api.path = c;
      break;
    }
    l.error = dlerror();
  }
  if (!l.api.handle) return l;
  l.error.clear();
  void* h = l.api.handle;
  NcclApi& a = l.api;
  bool ok = resolve(h, "ncclGetVersion", &a.GetVersion, true, &l.error) &&
            resolve(h, "ncclGetUniqueId", &a.GetUniqueId, true, &l.error) &&
            resolve(h, "ncclCommInitRank", &a.CommInitRank, true, &l.error) &&
            resolve(h, "ncclCommDestroy", &a.CommDestroy, true, &l.error) &&
            resolve(h, "ncclCommAbort", &a.CommAbort, true, &l.error) &&
            resolve(h, "ncclCommGetAsyncError", &a.CommGetAsyncError, true, &l.error) &&
            resolve(h, "ncclGetErrorString", &a.GetErrorString, true, &l.error) &&
            resolve(h, "ncclAllReduce", &a.AllReduce, true, &l.error) &&
            resolve(h, "ncclBroadcast", &a.Broadcast, true, &l.error) &&
            resolve(h, "ncclReduceScatter", &a.ReduceScatter, false, &l.error) &&
            resolve(h, "ncclAllGather", &a.AllGather, false, &l.error) &&
            resolve(h, "ncclGroupStart", &a.GroupStart, true, &l.error) &&
            resolve(h, "ncclGroupEnd", &a.GroupEnd, true, &l.error);
  if (ok && a.GetVersion(&a.version) != 0) {
    l.error = "ncclGetVersion failed";
    ok = false;
  }
  if (ok && a.version < 21000) {  // bfloat16 reductions arrived in 2.10
    l.error = "NCCL " + std::to_string(a.version) + " is older than 2.10";
    ok = false;
  }
  if (!ok) {
    dlclose(h);
    a = NcclApi{};
  }
  return l;
}

const Loaded& loaded() {
  static std::once_flag once;
  static Loaded l;
  std::call_once(once, [] { l = load(); });
  return l;
}

}  // namespace

const NcclApi& nccl_api() {
  const Loaded& l = loaded();
  FW_CHECK_HINT(l.error.empty(), kUnsupported, "NCCL could not be loaded: " << l.error,
                "install NCCL >= 2.10 (libnccl2) or point FW_NCCL_LIBRARY at libnccl.so.2");
  return l.api;
}

bool nccl_available() { return loaded().error.empty(); }

}  // namespace cuda
}  // namespace fw
