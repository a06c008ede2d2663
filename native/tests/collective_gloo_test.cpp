// collective_gloo_test.cpp: the Gloo backend with real ranks.
//
// Ranks as threads of this process for the arithmetic; ranks as child
// processes (this binary re-executed in "rank mode", see main() at the end)
// for the failures: a rank that never arrives, a rank stopped by SIGSTOP,
// a rank killed with SIGKILL.
// The rendezvous store is the in-test HTTP server (collective_test_store.h).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>

#include "collective.h"
#include "collective_test_proc.h"
#include "collective_test_store.h"

namespace {

using Clock = std::chrono::steady_clock;

double secs_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

fw::CollectiveEnv rank_env(const std::string& url, int rank, int world, int64_t join_ms = 20000,
                           int64_t coll_ms = 20000) {
  fw::CollectiveEnv e;
  e.rank = rank;
  e.world_size = world;
  e.local_rank = rank;
  e.store_url = url;
  e.join_timeout_ms = join_ms;
  e.collective_timeout_ms = coll_ms;
  return e;
}

// Runs fn(collective) on world ranks, one thread each; rethrows the first failure.
template <typename F>
void run_ranks(const std::string& url, int world, F&& fn) {
  std::vector<std::thread> ts;
  std::vector<std::string> errors(world);
  for (int r = 0; r < world; r++)
    ts.emplace_back([&, r] {
      try {
        auto c = fw::make_collective(rank_env(url, r, world));
        fn(*c);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : ts) t.join();
  for (int r = 0; r < world; r++) ASSERT_EQ(errors[r], "") << "rank " << r;
}

TEST(collective_gloo, allreduce_broadcast_barrier_across_three_ranks) {
  fw_test::TestStore srv;
  const int W = 3;
  const size_t n = 100003;  // not a multiple of anything the ring splits by
  std::vector<std::vector<float>> out(W);
  std::vector<std::vector<double>> outd(W);
  std::vector<std::vector<int>> bc(W);
  run_ranks(srv.url("g1/0"), W, [&](fw::Collective& c) {
    int r = c.rank();
    EXPECT_STREQ(c.name(), "gloo");
    EXPECT_TRUE(c.caps().multi_process);
    EXPECT_EQ(c.world_size(), W);
    std::vector<float> x(n);
    for (size_t i = 0; i < n; i++) x[i] = 0.001f * (float)((i * 7 + r * 13) % 1000) - 0.3f;
    c.allreduce_sum(x.data(), x.size());
    std::vector<double> d = {r + 0.5, -1.0 * r};
    c.allreduce_sum(d.data(), d.size());
    std::vector<int> b = {r, r, r};
    c.broadcast(b.data(), sizeof(int) * b.size(), 1);
    c.barrier();
    out[r] = std::move(x);
    outd[r] = std::move(d);
    bc[r] = std::move(b);
  });
  for (size_t i = 0; i < n; i += 997) {
    double want = 0;
    for (int r = 0; r < W; r++) want += 0.001 * (double)((i * 7 + r * 13) % 1000) - 0.3;
    EXPECT_NEAR(out[0][i], want, 1e-5) << i;
  }
  for (int r = 1; r < W; r++) {
    // Every rank holds the very same bits, not just close values.
    EXPECT_EQ(0, std::memcmp(out[r].data(), out[0].data(), n * sizeof(float))) << "rank " << r;
    EXPECT_EQ(outd[r], outd[0]);
  }
  EXPECT_EQ(outd[0], (std::vector<double>{4.5, -3.0}));
  for (int r = 0; r < W; r++) EXPECT_EQ(bc[r], (std::vector<int>{1, 1, 1}));
}

TEST(collective_gloo, bucketed_sum_is_repeatable_bit_for_bit) {
  // Same inputs, same world size, a fresh rendezvous: the same bits (the
  // determinism the trainer's restart-equivalence relies on).
  fw_test::TestStore srv;
  const int W = 2;
  const size_t n = 50000;
  std::vector<std::vector<float>> res(2);
  for (int run = 0; run < 2; run++) {
    std::vector<std::vector<float>> out(W);
    run_ranks(srv.url("g2/" + std::to_string(run)), W, [&](fw::Collective& c) {
      std::vector<float> x(n);
      for (size_t i = 0; i < n; i++) x[i] = std::sin(0.37f * (float)i + (float)c.rank());
      fw::allreduce_sum_bucketed(c, x.data(), n, 4096 * sizeof(float));  // 13 buckets
      out[c.rank()] = std::move(x);
    });
    EXPECT_EQ(out[0], out[1]);
    res[run] = out[0];
  }
  EXPECT_EQ(0, std::memcmp(res[0].data(), res[1].data(), n * sizeof(float)));
  EXPECT_NEAR(res[0][10], std::sin(3.7f) + std::sin(4.7f), 1e-6);
}

TEST(collective_gloo, allgather_by_sum_assembles_every_ranks_shard_bit_for_bit) {
  // ZeRO-1's shards (the CUDA worker gathers master weights and moments this
  // way before a checkpoint): equal ranges padded past n, garbage outside a
  // rank's own range, values whose bits must survive (tiny, huge, negative).
  fw_test::TestStore srv;
  const int W = 3;
  const size_t n = 1001, count = (n + W - 1) / W;  // the last shard ends past n
  auto value = [](size_t i) {
    const float v[] = {1e-30f, -3.5f, 7.0e30f, 0.1f, -1e-7f};
    return v[i % 5] * (float)(1 + i % 17);
  };
  std::vector<std::vector<float>> out(W);
  run_ranks(srv.url("g3/0"), W, [&](fw::Collective& c) {
    const size_t b = count * c.rank(), e = count * (c.rank() + 1);
    std::vector<float> x(n, 12345.0f + (float)c.rank());  // not this rank's: must not leak
    for (size_t i = b; i < std::min(e, n); i++) x[i] = value(i);
    fw::allgather_by_sum(c, x.data(), n, b, e);
    out[c.rank()] = std::move(x);
  });
  for (int r = 0; r < W; r++)
    for (size_t i = 0; i < n; i++) ASSERT_EQ(out[r][i], value(i)) << "rank " << r << " element " << i;
}

// --- ranks as processes ----------------------------------------------------

// A child running this binary in rank mode (see main below).
struct Child {
  pid_t pid = -1;
  int out = -1;         // its stdout (progress lines)
  std::string errfile;  // its stderr
  int status = -1;
  bool exited = false;
};

std::string self_exe() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  buf[n > 0 ? n : 0] = 0;
  return buf;
}

Child spawn_rank(const std::string& url, int rank, int world, int64_t join_ms, int64_t coll_ms) {
  Child c;
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  char tmpl[] = "/tmp/fw-coll-err-XXXXXX";
  int efd = mkostemp(tmpl, O_CLOEXEC);
  c.errfile = tmpl;
  c.pid = fw_test::spawn_process(self_exe(), {},
                                 {{"FW_COLL_TEST_RANK_MODE", "1"},
                                  {"RANK", std::to_string(rank)},
                                  {"LOCAL_RANK", std::to_string(rank)},
                                  {"WORLD_SIZE", std::to_string(world)},
                                  {"FW_STORE_URL", url},
                                  {"FW_JOIN_TIMEOUT_MS", std::to_string(join_ms)},
                                  {"FW_COLLECTIVE_TIMEOUT_MS", std::to_string(coll_ms)}},
                                 p[1], efd);
  close(p[1]);
  close(efd);
  c.out = p[0];
  fcntl(c.out, F_SETFL, O_NONBLOCK);
  return c;
}

// Waits up to secs for the child to exit; true when it did.
bool wait_exit(Child& c, double secs) {
  auto t0 = Clock::now();
  while (!c.exited && secs_since(t0) < secs) {
    if (waitpid(c.pid, &c.status, WNOHANG) == c.pid) c.exited = true;
    else std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return c.exited;
}

// Reads what the child printed so far (non-blocking).
std::string drain(Child& c, std::string& acc) {
  char buf[4096];
  ssize_t n;
  while ((n = read(c.out, buf, sizeof(buf))) > 0) acc.append(buf, (size_t)n);
  return acc;
}

std::string read_file(const std::string& path) {
  std::string s;
  FILE* f = fopen(path.c_str(), "rb");
  if (!f) return s;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) s.append(buf, n);
  fclose(f);
  return s;
}

// Kills and reaps whatever is left, so no test leaves a process behind.
void reap(std::vector<Child>& cs);
// Reaps at scope exit too, so a failed ASSERT leaves no rank behind.
struct ReapGuard {
  std::vector<Child>& cs;
  ~ReapGuard() { reap(cs); }
};
void reap(std::vector<Child>& cs) {
  for (auto& c : cs) {
    if (!c.exited) {
      kill(c.pid, SIGKILL);
      kill(c.pid, SIGCONT);
      waitpid(c.pid, &c.status, 0);
      c.exited = true;
    }
    if (c.out >= 0) close(c.out);
    c.out = -1;
    unlink(c.errfile.c_str());
  }
}

TEST(collective_gloo, missing_rank_makes_every_arrived_rank_exit_with_rendezvous_timeout) {
  fw_test::TestStore srv;
  const int64_t join_ms = 2000;
  // World of 3, only ranks 0 and 2 come.
  std::vector<Child> cs = {spawn_rank(srv.url("p1/0"), 0, 3, join_ms, 5000),
                           spawn_rank(srv.url("p1/0"), 2, 3, join_ms, 5000)};
  ReapGuard guard{cs};
  auto t0 = Clock::now();
  for (auto& c : cs) EXPECT_TRUE(wait_exit(c, join_ms / 1000.0 + 10)) << "rank did not exit";
  double took = secs_since(t0);
  for (auto& c : cs) {
    ASSERT_TRUE(c.exited);
    ASSERT_TRUE(WIFEXITED(c.status)) << "killed by a signal";
    EXPECT_EQ(WEXITSTATUS(c.status), 6);
    std::string err = read_file(c.errfile);
    EXPECT_NE(err.find("rendezvous timeout"), std::string::npos) << err;
  }
  EXPECT_GE(took, join_ms / 1000.0 - 0.2);
  EXPECT_LT(took, join_ms / 1000.0 + 10);
  reap(cs);
}

TEST(collective_gloo, stopped_rank_makes_the_others_exit_with_collective_timeout) {
  fw_test::TestStore srv;
  const int64_t coll_ms = 2000;
  std::vector<Child> cs;
  ReapGuard guard{cs};
  for (int r = 0; r < 3; r++) cs.push_back(spawn_rank(srv.url("p2/0"), r, 3, 20000, coll_ms));
  // Let every rank get through a few all-reduces, then freeze rank 1 in the
  // middle of its loop of all-reduces.
  std::vector<std::string> acc(3);
  auto t0 = Clock::now();
  bool all_going = false;
  while (!all_going && secs_since(t0) < 30) {
    all_going = true;
    for (int r = 0; r < 3; r++) all_going &= drain(cs[r], acc[r]).find("iter 5\n") != std::string::npos;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(all_going) << "ranks did not start all-reducing: " << read_file(cs[0].errfile)
                         << read_file(cs[1].errfile) << read_file(cs[2].errfile);
  kill(cs[1].pid, SIGSTOP);
  auto t1 = Clock::now();
  for (int r : {0, 2}) EXPECT_TRUE(wait_exit(cs[r], coll_ms / 1000.0 + 10)) << "rank " << r << " hung";
  double took = secs_since(t1);
  for (int r : {0, 2}) {
    ASSERT_TRUE(cs[r].exited);
    ASSERT_TRUE(WIFEXITED(cs[r].status));
    EXPECT_EQ(WEXITSTATUS(cs[r].status), 7);
    std::string err = read_file(cs[r].errfile);
    // The rank next to the stopped one times out; a rank further along the
    // ring may instead see its neighbour leave first (also exit 7).
    EXPECT_TRUE(err.find("collective timeout") != std::string::npos ||
                err.find("collective failed: lost a peer") != std::string::npos)
        << err;
  }
  EXPECT_LT(took, coll_ms / 1000.0 + 10);
  bool some_timeout = read_file(cs[0].errfile).find("collective timeout") != std::string::npos ||
                      read_file(cs[2].errfile).find("collective timeout") != std::string::npos;
  EXPECT_TRUE(some_timeout);
  reap(cs);  // SIGKILL + SIGCONT the stopped rank and reap it
  EXPECT_TRUE(WIFSIGNALED(cs[1].status));
}

TEST(collective_gloo, killed_rank_makes_the_others_exit_7_not_die_of_sigpipe) {
  fw_test::TestStore srv;
  const int64_t coll_ms = 3000;
  std::vector<Child> cs;
  ReapGuard guard{cs};
  for (int r = 0; r < 3; r++) cs.push_back(spawn_rank(srv.url("p3/0"), r, 3, 20000, coll_ms));
  std::vector<std::string> acc(3);
  auto t0 = Clock::now();
  bool all_going = false;
  while (!all_going && secs_since(t0) < 30) {
    all_going = true;
    for (int r = 0; r < 3; r++) all_going &= drain(cs[r], acc[r]).find("iter 5\n") != std::string::npos;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(all_going) << read_file(cs[0].errfile) << read_file(cs[1].errfile) << read_file(cs[2].errfile);
  kill(cs[2].pid, SIGKILL);
  auto t1 = Clock::now();
  // A rank next to the dead one sees its connection close at once; one
  // waiting on a live peer that has not failed yet may need the timeout.
  for (int r : {0, 1}) EXPECT_TRUE(wait_exit(cs[r], coll_ms / 1000.0 + 10)) << "rank " << r << " hung";
  EXPECT_LT(secs_since(t1), coll_ms / 1000.0 + 10);
  for (int r : {0, 1}) {
    ASSERT_TRUE(cs[r].exited);
    ASSERT_TRUE(WIFEXITED(cs[r].status)) << "rank " << r << " died of signal " << WTERMSIG(cs[r].status);
    EXPECT_EQ(WEXITSTATUS(cs[r].status), 7) << read_file(cs[r].errfile);
  }
  reap(cs);
}

// Rank mode: join, then all-reduce 256 KiB buffers until killed or failed,
// printing "iter k" after each; a CollectiveError becomes the worker's exit code.
int rank_main() {
  try {
    auto c = fw::make_collective(fw::collective_env());
    std::vector<float> x(1 << 16, 1.0f);
    for (long it = 0;; it++) {
      c->allreduce_sum(x.data(), x.size());
      for (float& v : x) v = 1.0f;
      printf("iter %ld\n", it);
      fflush(stdout);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  } catch (const fw::CollectiveError& e) {
    fprintf(stderr, "error: %s\n", e.what());
    return fw::collective_exit_code(e);
  } catch (const std::exception& e) {
    fprintf(stderr, "error: %s\n", e.what());
    return 10;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (getenv("FW_COLL_TEST_RANK_MODE")) return rank_main();
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
