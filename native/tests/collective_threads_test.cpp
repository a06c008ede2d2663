// collective_threads_test.cpp: the in-process thread collective
// (thread_collective.h) that the GPU trainer's multi-rank test runs on, held
// to the Collective contract here: sums in rank order and the same bits on
// every rank, broadcast, barrier, a missing rank times out; and the CPU
// trainer on two thread ranks of batch B reaches what one rank reaches with
// batch 2B (the same check collective_dp_test makes over Gloo).
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "dp_testutil.h"
#include "io_testutil.h"
#include "model.h"
#include "thread_collective.h"
#include "train.h"
#include "train_rng.h"

namespace {

// Runs fn(rank) on `world` threads; returns each rank's exception text ("" if none).
template <typename Fn>
std::vector<std::string> run_ranks(int world, Fn fn) {
  std::vector<std::string> err(world);
  std::vector<std::thread> ts;
  for (int r = 0; r < world; r++)
    ts.emplace_back([&, r] {
      try {
        fn(r);
      } catch (const std::exception& e) {
        err[r] = e.what();
      }
    });
  for (auto& t : ts) t.join();
  return err;
}

TEST(collective_threads, sums_in_rank_order_broadcasts_and_barriers) {
  constexpr int kWorld = 3;
  fwtest::ThreadGroup g(kWorld);
  std::vector<std::vector<float>> f(kWorld);
  std::vector<std::vector<double>> d(kWorld);
  std::vector<std::vector<char>> b(kWorld);
  auto err = run_ranks(kWorld, [&](int rank) {
    fwtest::ThreadCollective c(g, rank);
    EXPECT_EQ(c.world_size(), kWorld);
    EXPECT_EQ(c.rank(), rank);
    fw::Rng r(10 + rank);
    f[rank].resize(1001);
    for (float& x : f[rank]) x = (float)r.normal();
    d[rank] = {1.0 + rank, 1e-17 * (rank + 1)};
    for (int rep = 0; rep < 3; rep++) c.barrier();
    c.allreduce_sum(f[rank].data(), f[rank].size());
    c.allreduce_sum(d[rank].data(), d[rank].size());
    b[rank] = std::vector<char>(64, (char)('a' + rank));
    c.broadcast(b[rank].data(), b[rank].size(), 1);
  });
  for (const std::string& e : err) ASSERT_EQ(e, "");
  // the expected sums, added in rank order
  std::vector<float> want(1001, 0.0f);
  for (int rank = 0; rank < kWorld; rank++) {
    fw::Rng r(10 + rank);
    for (float& w : want) w += (float)r.normal();
  }
  for (int rank = 0; rank < kWorld; rank++) {
    EXPECT_EQ(f[rank], want) << "rank " << rank;
    EXPECT_EQ(d[rank][0], 6.0);
    EXPECT_EQ(d[rank][1], 1e-17 + 2e-17 + 3e-17);
    EXPECT_EQ(b[rank], std::vector<char>(64, 'b')) << "rank " << rank;
  }
}

TEST(collective_threads, a_rank_that_never_arrives_times_out_and_the_group_stays_broken) {
  fwtest::ThreadGroup g(2, std::chrono::milliseconds(200));
  fwtest::ThreadCollective c0(g, 0), c1(g, 1);
  float x = 1.0f;
  try {
    c0.allreduce_sum(&x, 1);
    FAIL() << "expected a timeout";
  } catch (const fw::CollectiveError& e) {
    EXPECT_EQ(e.reason(), fw::CollectiveFailure::kCollectiveTimeout);
  }
  // the late rank must not complete a barrier with rank 0's next call
  EXPECT_THROW(c1.barrier(), fw::CollectiveError);
  EXPECT_THROW(c0.barrier(), fw::CollectiveError);
}

constexpr int kB = 2, kT = 12, kSteps = 8;

void make_batch(int s, std::vector<int32_t>& tok, std::vector<int32_t>& tgt) {
  fwtest::dp_batch(s, kB, kT, 2000, 5, tok, tgt);
}

TEST(collective_threads, cpu_trainer_two_thread_ranks_match_one_rank) {
  omp_set_num_threads(1);
  const fw::Config cfg = fwtest::dp_tiny_config();
  fw::TrainConfig tc;
  tc.lr = 3e-3;
  tc.warmup_steps = 2;
  tc.total_steps = kSteps;
  tc.grad_clip = 1.0;
  std::vector<float> ref;
  {
    fw::Model m(cfg);
    m.init_random(9);
    m.enable_grads();
    fw::Trainer tr(m, tc);
    std::vector<int32_t> tok, tgt;
    for (int s = 0; s < kSteps; s++) {
      make_batch(s, tok, tgt);
      tr.step(tok.data(), tgt.data(), 2 * kB, kT);
    }
    ref = m.params;
  }
  fwtest::ThreadGroup g(2);
  std::vector<std::vector<float>> dp(2);
  auto err = run_ranks(2, [&](int rank) {
    omp_set_num_threads(1);
    fwtest::ThreadCollective c(g, rank);
    fw::Model m(cfg);
    m.init_random(9);
    m.enable_grads();
    fw::Trainer tr(m, tc);
    tr.set_collective(&c);
    std::vector<int32_t> tok, tgt;
    for (int s = 0; s < kSteps; s++) {
      make_batch(s, tok, tgt);
      tr.step(tok.data() + (size_t)rank * kB * kT, tgt.data() + (size_t)rank * kB * kT, kB, kT);
    }
    dp[rank] = m.params;
  });
  ASSERT_EQ(err[0], "");
  ASSERT_EQ(err[1], "");
  EXPECT_EQ(dp[0], dp[1]) << "ranks diverged";
  const double rel = fwtest::rel_l2(dp[0], ref);
  std::printf("two thread ranks vs one rank of the whole batch: relative L2 %.3g\n", rel);
  EXPECT_LE(rel, 1e-4);
}

}  // namespace
