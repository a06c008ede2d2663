// collective_worker_test.cpp: fw_worker ranks as child processes, joined
// through the in-test rendezvous store: a 2-rank run against a 1-rank run of
// twice the batch, a rank that never comes (exit 6), a rank stopped with
// SIGSTOP mid-training (exit 7 for the others). Every child is reaped.
#include <gtest/gtest.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cmath>
#include <thread>

#include "collective_test_store.h"
#include "hf_io.h"
#include "io_testutil.h"
#include "model.h"
#include "shards.h"
#include "train_rng.h"
#include "worker_ranks.h"
#include "worker_testutil.h"

namespace {

using json = nlohmann::json;
using fwtest::rel_l2;
using fwtest::TempDir;
using fwtest::tiny_config;
using fwtest::worker_path;
using fwtest::write_shards;
using fwtest::Rank;
using fwtest::ReapGuard;
using fwtest::code_of;
using fwtest::events;
using fwtest::reap;
using fwtest::secs_since;
using fwtest::spawn_worker;
using fwtest::wait_exit;
using Clock = std::chrono::steady_clock;

std::string write_spec(const TempDir& d, const std::string& tag, int batch, int steps) {
  json spec = {{"model", {{"config", tiny_config()}}},
               {"data", {{"train", {d / "train.bin"}}}},
               {"train", {{"lr", 5e-3}, {"warmup_steps", 2}, {"total_steps", steps}, {"batch_size", batch}, {"seq_len", 16}}},
               {"checkpoint", {{"dir", d / ("ck-" + tag)}, {"interval", 4}, {"keep_last", 2}}},
               {"output_dir", d / ("out-" + tag)},
               {"seed", 42}};
  fwtest::write_bytes(d / (tag + ".json"), spec.dump(2));
  return d / (tag + ".json");
}

// Rank r of 2 with batch B reads permutation positions r, r+2, ... in groups
// of B (shards.h), so step i of the two ranks together covers exactly the
// windows of step i of one rank with batch 2B, in another row order. AdamW
// then agrees up to float32 reordering noise (collective_dp_test measures it
// at ~1e-7 relative; 1e-4 leaves room for 8 steps of amplification).
TEST(collective_worker, two_ranks_write_the_model_one_rank_of_twice_the_batch_writes) {
  TempDir d;
  write_shards(d);
  fw_test::TestStore srv;
  std::vector<Rank> one = {spawn_worker(d, write_spec(d, "w1", 8, 8), 0, 1, "", 5000, 5000)};
  ReapGuard guard1{one};
  ASSERT_TRUE(wait_exit(one[0], 120));
  ASSERT_EQ(code_of(one[0]), 0) << fw::read_file_text(one[0].err);
  std::string spec2 = write_spec(d, "w2", 4, 8);
  std::vector<Rank> two = {spawn_worker(d, spec2, 0, 2, srv.url("w2/0"), 30000, 30000),
                           spawn_worker(d, spec2, 1, 2, srv.url("w2/0"), 30000, 30000)};
  ReapGuard guard{two};
  for (Rank& r : two) EXPECT_TRUE(wait_exit(r, 120));
  reap(two);
  ASSERT_EQ(code_of(two[0]), 0) << fw::read_file_text(two[0].err);
  ASSERT_EQ(code_of(two[1]), 0) << fw::read_file_text(two[1].err);
  // Both ranks report the same global loss each step.
  std::vector<double> l0, l1;
  for (const json& e : events(two[0]))
    if (e["event"] == "step") l0.push_back(e["loss"].get<double>());
  for (const json& e : events(two[1]))
    if (e["event"] == "step") l1.push_back(e["loss"].get<double>());
  EXPECT_EQ(l0.size(), 8u);
  EXPECT_EQ(l0, l1);
  json started = events(two[1]).front();
  EXPECT_EQ(started["world_size"], 2);
  EXPECT_EQ(started["collective"], "gloo");
  // Only rank 0 wrote checkpoints and the model.
  int ck_events = 0;
  for (const json& e : events(two[1])) ck_events += e["event"] == "checkpoint";
  EXPECT_EQ(ck_events, 0);
  auto m1 = fw::model_load_hf(d / "out-w1");
  auto m2 = fw::model_load_hf(d / "out-w2");
  fw::Model m0(fw::config_from_json(tiny_config()));
  m0.init_random(42);
  double rel = rel_l2(m2->params, m1->params);
  printf("collective_worker: relative L2 two ranks (B=4) vs one rank (B=8) after 8 steps: %.3g\n", rel);
  EXPECT_LE(rel, 1e-4);
  EXPECT_GT(rel_l2(m0.params, m1->params), 1e-3);  // training moved the weights
}

TEST(collective_worker, a_missing_rank_ends_the_others_with_rendezvous_timeout_exit_6) {
  TempDir d;
  write_shards(d);
  fw_test::TestStore srv;
  std::string spec = write_spec(d, "miss", 4, 4);
  const int64_t join_ms = 2000;
  auto t0 = Clock::now();
  std::vector<Rank> rs = {spawn_worker(d, spec, 0, 3, srv.url("miss/0"), join_ms, 5000),
                          spawn_worker(d, spec, 1, 3, srv.url("miss/0"), join_ms, 5000)};
  ReapGuard guard{rs};
  for (Rank& r : rs) EXPECT_TRUE(wait_exit(r, join_ms / 1000.0 + 10));
  double took = secs_since(t0);
  reap(rs);
  for (Rank& r : rs) {
    EXPECT_EQ(code_of(r), 6);
    std::vector<json> evs = events(r);
    ASSERT_FALSE(evs.empty());
    EXPECT_EQ(evs.back()["event"], "error");
    EXPECT_EQ(evs.back()["code"], 6);
    EXPECT_NE(evs.back()["message"].get<std::string>().find("rendezvous timeout"), std::string::npos);
  }
  EXPECT_LT(took, join_ms / 1000.0 + 10);
}

TEST(collective_worker, a_stopped_rank_ends_the_others_with_collective_timeout_exit_7) {
  TempDir d;
  write_shards(d);
  fw_test::TestStore srv;
  std::string spec = write_spec(d, "stop", 4, 100000);
  const int64_t coll_ms = 2000;
  std::vector<Rank> rs = {spawn_worker(d, spec, 0, 2, srv.url("stop/0"), 30000, coll_ms),
                          spawn_worker(d, spec, 1, 2, srv.url("stop/0"), 30000, coll_ms)};
  ReapGuard guard{rs};
  auto steps_of = [&](const Rank& r) {
    int n = 0;
    for (const json& e : events(r)) n += e["event"] == "step";
    return n;
  };
  auto t0 = Clock::now();
  while (steps_of(rs[0]) < 3 && secs_since(t0) < 60 && !wait_exit(rs[0], 0.05)) {
  }
  ASSERT_GE(steps_of(rs[0]), 3) << fw::read_file_text(rs[0].err);
  kill(rs[1].pid, SIGSTOP);
  auto t1 = Clock::now();
  EXPECT_TRUE(wait_exit(rs[0], coll_ms / 1000.0 + 10));
  double took = secs_since(t1);
  reap(rs);
  EXPECT_EQ(code_of(rs[0]), 7);
  std::vector<json> evs = events(rs[0]);
  ASSERT_FALSE(evs.empty());
  EXPECT_EQ(evs.back()["event"], "error");
  EXPECT_NE(evs.back()["message"].get<std::string>().find("collective timeout"), std::string::npos)
      << evs.back().dump();
  EXPECT_LT(took, coll_ms / 1000.0 + 10);
  EXPECT_EQ(code_of(rs[1]), 128 + SIGKILL);  // the stopped rank was reaped by the test
}

// SIGTERM to rank 1 only: both ranks stop at the same step (the stop flag is
// summed), rank 0 checkpoints, both exit 143; started again with the same
// spec they resume and finish with the bytes an uninterrupted run writes.
TEST(collective_worker, sigterm_on_one_rank_stops_both_and_the_resumed_run_is_bit_identical) {
  TempDir d;
  write_shards(d);
  fw_test::TestStore srv;
  auto run2 = [&](const std::string& spec, const std::string& attempt, bool sigterm_rank1) {
    std::vector<Rank> rs = {spawn_worker(d, spec, 0, 2, srv.url(attempt), 30000, 30000),
                            spawn_worker(d, spec, 1, 2, srv.url(attempt), 30000, 30000)};
    ReapGuard guard{rs};
    if (sigterm_rank1) {
      auto t0 = Clock::now();
      auto steps = [&] {
        int n = 0;
        for (const json& e : events(rs[0])) n += e["event"] == "step";
        return n;
      };
      while (steps() < 3 && secs_since(t0) < 60 && !wait_exit(rs[0], 0.01)) {
      }
      kill(rs[1].pid, SIGTERM);
    }
    for (Rank& r : rs) EXPECT_TRUE(wait_exit(r, 120));
    reap(rs);
    return rs;
  };
  std::string a = write_spec(d, "a", 4, 40), b = write_spec(d, "b", 4, 40);
  std::vector<Rank> ra = run2(a, "a/0", false);
  ASSERT_EQ(code_of(ra[0]), 0) << fw::read_file_text(ra[0].err);
  std::vector<Rank> rb = run2(b, "b/0", true);
  ASSERT_EQ(code_of(rb[0]), 143) << fw::read_file_text(rb[0].err);
  ASSERT_EQ(code_of(rb[1]), 143) << fw::read_file_text(rb[1].err);
  json stop0 = events(rb[0]).back(), stop1 = events(rb[1]).back();
  EXPECT_EQ(stop0["event"], "stopped");
  EXPECT_EQ(stop0["signal"], "peer");
  EXPECT_EQ(stop1["signal"], "SIGTERM");
  EXPECT_EQ(stop0["step"], stop1["step"]);
  EXPECT_LT(stop0["step"].get<int>(), 40);
  std::vector<Rank> rb2 = run2(b, "b/1", false);
  ASSERT_EQ(code_of(rb2[0]), 0) << fw::read_file_text(rb2[0].err);
  ASSERT_EQ(code_of(rb2[1]), 0) << fw::read_file_text(rb2[1].err);
  EXPECT_EQ(events(rb2[0]).front()["step"], stop0["step"]);  // resumed where it stopped
  EXPECT_EQ(fw::read_file_text(d / "out-a/model.safetensors"), fw::read_file_text(d / "out-b/model.safetensors"));
}

}  // namespace
