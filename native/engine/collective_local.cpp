// collective_local.cpp: the single-process no-op backend, the environment
// reader and the backend factory (see collective.h).
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "collective.h"
#ifdef FW_HAVE_GLOO
#include "collective_gloo.h"
#endif

namespace fw {

namespace {

// One process: a sum over one rank is the identity, a broadcast from rank 0
// to itself is nothing.
class LocalCollective : public Collective {
 public:
  const char* name() const override { return "local"; }
  CollectiveCaps caps() const override { return CollectiveCaps{}; }
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void allreduce_sum(float*, size_t) override {}
  void allreduce_sum(double*, size_t) override {}
  void broadcast(void*, size_t, int root) override {
    FW_CHECK(root == 0, kInvalidArgument, "broadcast root " << root << " out of range for world_size 1");
  }
  void barrier() override {}
};

// Integer environment variable in [lo, hi], or def when unset/empty.
int64_t env_int(const char* name, int64_t def, int64_t lo, int64_t hi) {
  const char* v = std::getenv(name);
  if (!v || !*v) return def;
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(v, &end, 10);
  FW_CHECK_HINT(errno == 0 && end && *end == '\0' && x >= lo && x <= hi, kInvalidArgument,
                "environment variable " << name << "='" << v << "' is not an integer in [" << lo << ", " << hi << "]",
                "unset it or give a plain decimal number");
  return x;
}

std::string env_str(const char* name, const std::string& def) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : def;
}

}  // namespace

int collective_exit_code(const CollectiveError& e) {
  switch (e.reason()) {
    case CollectiveFailure::kRendezvousTimeout: return 6;
    case CollectiveFailure::kCollectiveTimeout: return 7;
    case CollectiveFailure::kPeerLost: return 7;
    case CollectiveFailure::kStore: return 8;
  }
  return 10;
}

CollectiveEnv collective_env() {
  CollectiveEnv e;
  e.world_size = (int)env_int("WORLD_SIZE", 1, 1, 1 << 16);
  e.rank = (int)env_int("RANK", 0, 0, e.world_size - 1);
  e.local_rank = (int)env_int("LOCAL_RANK", e.rank, 0, 1 << 16);
  e.store_url = env_str("FW_STORE_URL", "");
  e.store_token = env_str("FW_STORE_TOKEN", "");
  e.bind_addr = env_str("FW_BIND_ADDR", "127.0.0.1");
  e.collective_timeout_ms = env_int("FW_COLLECTIVE_TIMEOUT_MS", 60000, 1, int64_t(1) << 40);
  e.join_timeout_ms = env_int("FW_JOIN_TIMEOUT_MS", 120000, 1, int64_t(1) << 40);
  return e;
}

std::unique_ptr<Collective> make_local_collective() { return std::make_unique<LocalCollective>(); }

std::unique_ptr<Collective> make_collective(const CollectiveEnv& env) {
  FW_CHECK(env.world_size >= 1 && env.rank >= 0 && env.rank < env.world_size, kInvalidArgument,
           "rank " << env.rank << " must be in [0, world_size " << env.world_size << ")");
  if (env.world_size == 1) return make_local_collective();
#ifdef FW_HAVE_GLOO
  FW_CHECK_HINT(!env.store_url.empty(), kInvalidArgument, "world_size " << env.world_size << " needs FW_STORE_URL",
                "the trainer sets FW_STORE_URL to its rendezvous store for every rank");
  return make_gloo_collective(env);
#else
  FW_CHECK_HINT(false, kUnsupported, "world_size " << env.world_size << " > 1 needs the Gloo collectives backend",
                "install libgloo-dev and rebuild the engine (CMake enables Gloo when it finds it)");
#endif
}

}  // namespace fw
