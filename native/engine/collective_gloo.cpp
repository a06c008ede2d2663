// collective_gloo.cpp: the Gloo backend of collective.h.
//
// One gloo::rendezvous::Context per run attempt, a TCP device bound to
// FW_BIND_ADDR, the full mesh connected through the trainer's HTTP store
// (HttpStore below adapts StoreClient to gloo::rendezvous::Store). Sums use
// gloo::allreduce (ring): each element's sum is formed in an order fixed by
// the world size and then copied to every rank, so results are identical
// across ranks and across runs.
//
// Timeouts: joining waits FW_JOIN_TIMEOUT_MS for every rank's address in the
// store; afterwards each call waits at most FW_COLLECTIVE_TIMEOUT_MS for its
// peers (a rank stopped by SIGSTOP keeps its sockets open, so only the
// timeout notices it). Gloo throws gloo::IoException for both a timeout and
// a closed peer; the message tells them apart.
//
// Compiled to nothing unless CMake found Gloo and defined FW_HAVE_GLOO, so
// the engine still builds on a machine without libgloo-dev.
#ifdef FW_HAVE_GLOO

#include "collective_gloo.h"

#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include <signal.h>

#include <chrono>
#include <map>

#include "store_client.h"

namespace fw {

namespace {

using Clock = std::chrono::steady_clock;

// gloo::rendezvous::Store over the trainer's store. Every wait shares the
// join deadline, so a rank that never comes surfaces as one clear
// "rendezvous timeout" after FW_JOIN_TIMEOUT_MS, not as a Gloo internal.
class HttpStore : public gloo::rendezvous::Store {
 public:
  HttpStore(StoreClient& client, Clock::time_point deadline, int rank, int world)
      : client_(client), deadline_(deadline), rank_(rank), world_(world) {}

  void set(const std::string& key, const std::vector<char>& data) override { client_.set(key, data); }

  std::vector<char> get(const std::string& key) override {
    auto it = seen_.find(key);
    if (it != seen_.end()) return it->second;
    wait({key});
    return seen_.at(key);
  }

  void wait(const std::vector<std::string>& keys) override { wait(keys, std::chrono::milliseconds(0)); }

  // Gloo's own timeout is ignored: the join deadline governs the whole join.
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds&) override {
    for (const std::string& k : keys) {
      if (seen_.count(k)) continue;
      int64_t left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now()).count();
      std::optional<std::vector<char>> v = client_.get(k, std::max<int64_t>(left, 0));
      if (!v)
        throw CollectiveError(CollectiveFailure::kRendezvousTimeout,
                              "rendezvous timeout: rank " + std::to_string(rank_) + " of " + std::to_string(world_) +
                                  " waited for key '" + k + "' in the store and not every rank joined" +
                                  "\n---> HINT: start all WORLD_SIZE ranks with the same FW_STORE_URL, or raise "
                                  "FW_JOIN_TIMEOUT_MS");
      seen_[k] = std::move(*v);
    }
  }

 private:
  StoreClient& client_;
  Clock::time_point deadline_;
  int rank_, world_;
  std::map<std::string, std::vector<char>> seen_;
};

class GlooCollective : public Collective {
 public:
  explicit GlooCollective(const CollectiveEnv& env)
      : env_(env), timeout_(std::chrono::milliseconds(env.collective_timeout_ms)) {
    auto deadline = Clock::now() + std::chrono::milliseconds(env.join_timeout_ms);
    // Gloo's TCP transport writes with plain write(): a peer that died would
    // kill this rank with SIGPIPE instead of an error it can report (exit 7).
    // Ignore SIGPIPE unless the host process already chose a handler.
    struct sigaction old {};
    if (sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
    gloo::transport::tcp::attr attr;
    attr.hostname = env.bind_addr;
    try {
      device_ = gloo::transport::tcp::CreateDevice(attr);
    } catch (const std::exception& e) {
      FW_CHECK_HINT(false, kInvalidArgument, "cannot bind the collective TCP device to '" << env.bind_addr << "': " << e.what(),
                    "set FW_BIND_ADDR to an address of this host that the other ranks can reach");
    }
    StoreClient client(env.store_url, env.store_token);
    client.connect_retry_ms = std::max<int64_t>(env.join_timeout_ms, 1000);
    HttpStore store(client, deadline, env.rank, env.world_size);
    ctx_ = std::make_shared<gloo::rendezvous::Context>(env.rank, env.world_size);
    ctx_->setTimeout(std::chrono::milliseconds(env.join_timeout_ms));
    try {
      ctx_->connectFullMesh(store, device_);
    } catch (const CollectiveError&) {
      throw;
    } catch (const gloo::Exception& e) {
      throw CollectiveError(CollectiveFailure::kRendezvousTimeout,
                            std::string("rendezvous timeout: rank ") + std::to_string(env.rank) +
                                " could not connect to its peers: " + e.what());
    }
    ctx_->setTimeout(timeout_);
  }

  const char* name() const override { return "gloo"; }
  CollectiveCaps caps() const override {
    CollectiveCaps c;
    c.multi_process = true;
    return c;
  }
  int rank() const override { return env_.rank; }
  int world_size() const override { return env_.world_size; }

  void allreduce_sum(float* x, size_t n) override { allreduce(x, n); }
  void allreduce_sum(double* x, size_t n) override { allreduce(x, n); }

  void broadcast(void* data, size_t bytes, int root) override {
    FW_CHECK(root >= 0 && root < env_.world_size, kInvalidArgument,
             "broadcast root " << root << " out of range for world_size " << env_.world_size);
    if (bytes == 0) return;
    guarded("broadcast", [&] {
      gloo::BroadcastOptions o(ctx_);
      o.setOutput<uint8_t>(static_cast<uint8_t*>(data), bytes);
      o.setRoot(root);
      o.setTag(next_tag());
      o.setTimeout(timeout_);
      gloo::broadcast(o);
    });
  }

  void barrier() override {
    guarded("barrier", [&] {
      gloo::BarrierOptions o(ctx_);
      o.setTag(next_tag());
      o.setTimeout(timeout_);
      gloo::barrier(o);
    });
  }

 private:
  template <typename T>
  void allreduce(T* x, size_t n) {
    if (n == 0) return;
    guarded("all-reduce", [&] {
      gloo::AllreduceOptions o(ctx_);
      o.setOutput<T>(x, n);
      o.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<T>));
      o.setTag(next_tag());
      o.setTimeout(timeout_);
      gloo::allreduce(o);
    });
  }

  uint32_t next_tag() { return tag_++; }

  // Run one Gloo call; turn its exceptions into CollectiveError.
  template <typename F>
  void guarded(const char* what, F&& f) {
    try {
      f();
    } catch (const gloo::Exception& e) {
      std::string m = e.what();
      bool timed_out = m.find("imed out") != std::string::npos || m.find("imeout") != std::string::npos;
      std::string head = timed_out ? "collective timeout" : "collective failed: lost a peer";
      throw CollectiveError(timed_out ? CollectiveFailure::kCollectiveTimeout : CollectiveFailure::kPeerLost,
                            head + ": rank " + std::to_string(env_.rank) + " of " + std::to_string(env_.world_size) +
                                " in " + what + " (timeout " + std::to_string(env_.collective_timeout_ms) +
                                " ms): " + m +
                                "\n---> HINT: another rank stopped or died; the trainer restarts the run from its "
                                "last checkpoint");
    }
  }

  CollectiveEnv env_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<gloo::transport::Device> device_;
  std::shared_ptr<gloo::rendezvous::Context> ctx_;
  uint32_t tag_ = 0;
};

}  // namespace

std::unique_ptr<Collective> make_gloo_collective(const CollectiveEnv& env) {
  return std::make_unique<GlooCollective>(env);
}

}  // namespace fw

#endif  // FW_HAVE_GLOO
