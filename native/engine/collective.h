// collective.h: the one interface data-parallel training talks to.
//
// A Collective joins the ranks of one run and sums buffers across them. Two
// backends sit behind it (llm.c's zero.cuh is the model: a single-process
// no-op keeps the trainer's code path identical with and without peers):
//
//   local   world_size 1, every call returns at once (collective_local.cpp)
//   gloo    CPU ranks over TCP, rendezvous through the trainer's HTTP store
//           (collective_gloo.cpp; built when CMake finds Gloo, FW_HAVE_GLOO)
//   nccl    (CUDA issue) the same interface on GPU buffers
//
// Contract shared by every backend:
//   - allreduce_sum leaves the elementwise sum over ranks in x on EVERY rank,
//     bit-identical across ranks, and the same bits on every run with the same
//     world size and inputs (the reduction order depends only on world size).
//   - calls are collective: every rank issues the same calls in the same order.
//   - failures throw CollectiveError (a fw::Error of kind kIo) whose reason
//     tells a join that timed out from a peer that stopped answering; the
//     worker maps reasons to exit codes with collective_exit_code().
//
// Environment (as torchrun gives it, plus ours), read by collective_env():
//   RANK, WORLD_SIZE, LOCAL_RANK
//   FW_STORE_URL     http://host:port/v1/rendezvous/<runId>/<attempt>
//   FW_STORE_TOKEN   bearer token for the store (optional)
//   FW_BIND_ADDR     address the TCP device binds to (default 127.0.0.1)
//   FW_COLLECTIVE_TIMEOUT_MS  one collective call (default 60000)
//   FW_JOIN_TIMEOUT_MS        waiting for all ranks to join (default 120000)
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "common.h"

namespace fw {

// Why a collective failed; stable, the worker's exit code depends on it.
struct CollectiveFailure {
  static constexpr int kRendezvousTimeout = 0;  // not every rank joined in time
  static constexpr int kCollectiveTimeout = 1;  // a peer stopped answering mid-call
  static constexpr int kPeerLost = 2;           // a peer closed its connection (died)
  static constexpr int kStore = 3;              // the rendezvous store refused or broke
};

class CollectiveError : public Error {
 public:
  CollectiveError(int reason, const std::string& msg) : Error(ErrorKind::kIo, msg), reason_(reason) {}
  int reason() const { return reason_; }

 private:
  int reason_;
};

// Worker exit codes (docs/worker.md): 6 rendezvous timeout, 7 collective
// timeout or lost peer, 8 store failure.
int collective_exit_code(const CollectiveError& e);

// What a backend can do; callers ask instead of testing names.
struct CollectiveCaps {
  bool multi_process = false;  // real peers (false for the no-op)
  bool device_buffers = false; // accepts GPU pointers (NCCL, later)
};

class Collective {
 public:
  virtual ~Collective() = default;
  virtual const char* name() const = 0;  // "local", "gloo"
  virtual CollectiveCaps caps() const = 0;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // x (n,) <- sum over ranks of x, on every rank.
  virtual void allreduce_sum(float* x, size_t n) = 0;
  virtual void allreduce_sum(double* x, size_t n) = 0;
  // data (bytes,) <- root's data, on every rank.
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  virtual void barrier() = 0;
};

// Default gradient bucket: 25 MB, as in PyTorch DDP.
constexpr size_t kDefaultBucketBytes = size_t(25) << 20;

// Sum x (n,) over ranks in consecutive buckets of bucket_bytes, front to
// back (parameter order when x is a flat gradient buffer). Bucketing bounds
// the transport's buffers and, with overlap (CUDA), lets the first buckets
// travel while backward still runs; on CPU it only splits the calls.
template <typename T>
void allreduce_sum_bucketed(Collective& c, T* x, size_t n, size_t bucket_bytes = kDefaultBucketBytes) {
  if (c.world_size() == 1) return;
  size_t per = bucket_bytes / sizeof(T);
  if (per == 0) per = 1;
  for (size_t off = 0; off < n; off += per) c.allreduce_sum(x + off, n - off < per ? n - off : per);
}

// Each rank owns x[begin, end) of a buffer of n elements (ZeRO-1's shards,
// which together cover [0, n)); afterwards every rank holds all of x, each
// range with its owner's bits. Every rank zeroes what it does not own and
// the buffers are summed (bucketed): adding zeros is exact, so this is an
// all-gather built from the one reduction every backend has. Collective:
// all ranks call it.
inline void allgather_by_sum(Collective& c, float* x, size_t n, size_t begin, size_t end) {
  if (c.world_size() == 1) return;
  for (size_t i = 0; i < n; i++)
    if (i < begin || i >= end) x[i] = 0.0f;
  allreduce_sum_bucketed(c, x, n);
}

struct CollectiveEnv {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string store_url;    // FW_STORE_URL
  std::string store_token;  // FW_STORE_TOKEN
  std::string bind_addr = "127.0.0.1";
  int64_t collective_timeout_ms = 60000;
  int64_t join_timeout_ms = 120000;
};

// Read the variables above; a malformed value throws kInvalidArgument naming
// the variable. Absent RANK/WORLD_SIZE mean a single-process run.
CollectiveEnv collective_env();

// The no-op backend for one process.
std::unique_ptr<Collective> make_local_collective();
// world_size 1 -> local; otherwise the Gloo backend (joins the other ranks
// before returning; throws CollectiveError on a join timeout, kUnsupported
// when the engine was built without Gloo, kInvalidArgument without a store).
std::unique_ptr<Collective> make_collective(const CollectiveEnv& env);

}  // namespace fw
