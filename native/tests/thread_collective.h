// thread_collective.h: the Collective interface (engine/collective.h) across
// threads of one process, for tests that run several ranks in one process
// without a transport: the GPU trainer's multi-rank paths on one GPU
// (cuda/cuda_trainer_dp_test.cpp, through the host-staged collective), and
// the CPU trainer (collective_threads_test.cpp).
//
//   fwtest::ThreadGroup g(2);                // shared by the ranks
//   fwtest::ThreadCollective c(g, rank);     // one per rank's thread
//
// Same contract as the other backends: every rank issues the same calls in
// the same order; allreduce_sum adds the ranks' buffers in rank order, so
// every rank gets the same bits on every run. A rank that throws or never
// arrives leaves the others waiting until `timeout` (then CollectiveError
// kCollectiveTimeout), as a lost peer does over Gloo.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "collective.h"

namespace fwtest {

class ThreadGroup {
 public:
  explicit ThreadGroup(int world, std::chrono::milliseconds timeout = std::chrono::seconds(60))
      : world_(world), timeout_(timeout), slots_(world, nullptr) {}

  int world() const { return world_; }

  // Every rank publishes a pointer, then waits for the others; afterwards
  // slot(r) is rank r's pointer until the next sync.
  void publish_and_sync(int rank, const void* p) {
    slots_[rank] = p;
    sync();
  }
  const void* slot(int r) const { return slots_[r]; }

  // A barrier of all ranks (generation-counted, reusable). A timeout breaks
  // the group for good: every rank waiting or arriving later throws too,
  // instead of pairing up with the wrong call.
  void sync() {
    std::unique_lock<std::mutex> lk(m_);
    if (broken_) throw broken_error();
    const unsigned long gen = gen_;
    if (++arrived_ == world_) {
      arrived_ = 0;
      gen_++;
      cv_.notify_all();
      return;
    }
    if (!cv_.wait_for(lk, timeout_, [&] { return gen_ != gen || broken_; })) {
      broken_ = true;
      cv_.notify_all();
    }
    if (gen_ == gen) throw broken_error();
  }

 private:
  const int world_;
  const std::chrono::milliseconds timeout_;
  std::vector<const void*> slots_;
  std::mutex m_;
  std::condition_variable cv_;
  int arrived_ = 0;
  unsigned long gen_ = 0;
  bool broken_ = false;

  fw::CollectiveError broken_error() const {
    return fw::CollectiveError(fw::CollectiveFailure::kCollectiveTimeout,
                               "thread collective: a rank did not arrive within " + std::to_string(timeout_.count()) +
                                   " ms");
  }
};

class ThreadCollective : public fw::Collective {
 public:
  ThreadCollective(ThreadGroup& g, int rank) : g_(g), rank_(rank) {}

  const char* name() const override { return "threads"; }
  fw::CollectiveCaps caps() const override {
    fw::CollectiveCaps c;
    c.multi_process = g_.world() > 1;  // real peers, if in-process ones
    return c;
  }
  int rank() const override { return rank_; }
  int world_size() const override { return g_.world(); }

  void allreduce_sum(float* x, size_t n) override { sum(x, n); }
  void allreduce_sum(double* x, size_t n) override { sum(x, n); }

  void broadcast(void* data, size_t bytes, int root) override {
    g_.publish_and_sync(rank_, data);
    if (rank_ != root) std::memcpy(data, g_.slot(root), bytes);
    g_.sync();  // the root's buffer is read by everyone before it may change
  }

  void barrier() override { g_.sync(); }

 private:
  template <typename V>
  void sum(V* x, size_t n) {
    g_.publish_and_sync(rank_, x);
    // x_0 + x_1 + ... in rank order: the same bits on every rank
    const V* p0 = static_cast<const V*>(g_.slot(0));
    std::vector<V> acc(p0, p0 + n);
    for (int r = 1; r < g_.world(); r++) {
      const V* p = static_cast<const V*>(g_.slot(r));
      for (size_t i = 0; i < n; i++) acc[i] += p[i];
    }
    g_.sync();  // everyone has read every buffer before any is overwritten
    std::memcpy(x, acc.data(), n * sizeof(V));
  }

  ThreadGroup& g_;
  const int rank_;
};

}  // namespace fwtest
