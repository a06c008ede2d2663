// dp_bench.cpp: data-parallel training step time, 1 rank against W ranks at
// the same per-rank batch; one JSON line out.
//
// Usage: dp_bench DIM LAYERS HEADS KV_HEADS HIDDEN VOCAB B T STEPS WARMUP WORLD
//
// WORLD 1 trains in this process with no collective. WORLD > 1 starts a
// rendezvous store (the test server of native/tests) in this process and W
// copies of itself as rank processes (RANK/WORLD_SIZE/FW_STORE_URL, as the
// trainer's launcher sets them); each rank trains with the Gloo collective
// wrapped in a timer and reports its median step time and the all-reduce time
// inside those steps; this process prints the slowest rank's step time and the
// mean all-reduce share. Tied embeddings, random weights and tokens (each rank
// its own), as train_bench.cpp.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "collective.h"
#include "train.h"
#include "../../native/tests/collective_test_proc.h"
#include "../../native/tests/collective_test_store.h"

namespace {

using Clock = std::chrono::steady_clock;

// Forwards to a backend and accumulates the wall time spent in all-reduces.
class TimedCollective : public fw::Collective {
 public:
  explicit TimedCollective(fw::Collective& inner) : inner_(inner) {}
  const char* name() const override { return inner_.name(); }
  fw::CollectiveCaps caps() const override { return inner_.caps(); }
  int rank() const override { return inner_.rank(); }
  int world_size() const override { return inner_.world_size(); }
  void allreduce_sum(float* x, size_t n) override { timed([&] { inner_.allreduce_sum(x, n); }); }
  void allreduce_sum(double* x, size_t n) override { timed([&] { inner_.allreduce_sum(x, n); }); }
  void broadcast(void* d, size_t bytes, int root) override { inner_.broadcast(d, bytes, root); }
  void barrier() override { inner_.barrier(); }
  double ms = 0;

 private:
  template <typename F>
  void timed(F&& f) {
    auto t0 = Clock::now();
    f();
    ms += std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  }
  fw::Collective& inner_;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// One rank (or the whole run when WORLD is 1): one JSON line.
int train_rank(const int* a) {
  int B = a[6], T = a[7], steps = a[8], warmup = a[9];
  nlohmann::json j = {{"model_type", "llama"}, {"hidden_size", a[0]}, {"num_hidden_layers", a[1]},
                      {"num_attention_heads", a[2]}, {"num_key_value_heads", a[3]}, {"intermediate_size", a[4]},
                      {"vocab_size", a[5]}, {"max_position_embeddings", T}, {"rms_norm_eps", 1e-5},
                      {"tie_word_embeddings", true}};
  fw::CollectiveEnv env = fw::collective_env();
  auto coll = fw::make_collective(env);
  TimedCollective timed(*coll);
  fw::Model model(fw::config_from_json(j));
  model.init_random(1);
  fw::TrainConfig tc;
  tc.lr = 1e-4;
  fw::Trainer tr(model, tc);
  if (env.world_size > 1) tr.set_collective(&timed);
  fw::Rng rng(2 + (uint64_t)env.rank);
  std::vector<int32_t> tok((size_t)B * T), tgt((size_t)B * T);
  for (auto& t : tok) t = (int32_t)(rng.next_u64() % a[5]);
  for (auto& t : tgt) t = (int32_t)(rng.next_u64() % a[5]);
  std::vector<double> step_ms, ar_ms;
  double loss = 0;
  for (int s = 0; s < warmup + steps; s++) {
    timed.ms = 0;
    auto t0 = Clock::now();
    loss = tr.step(tok.data(), tgt.data(), B, T).loss;
    double dt = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (s >= warmup) {
      step_ms.push_back(dt);
      ar_ms.push_back(timed.ms);
    }
  }
  double ar_total = 0, st_total = 0;
  for (size_t i = 0; i < step_ms.size(); i++) ar_total += ar_ms[i], st_total += step_ms[i];
  std::printf("{\"rank\": %d, \"world\": %d, \"step_ms\": %.1f, \"allreduce_ms\": %.1f, \"allreduce_share\": %.4f, "
              "\"params\": %zu, \"grad_mb\": %.1f, \"loss\": %.4f}\n",
              env.rank, env.world_size, median(step_ms), median(ar_ms), ar_total / st_total,
              model.layout.count_params(), model.layout.numel * 4 / 1048576.0, loss);
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 12) {
    std::fprintf(stderr, "usage: %s DIM LAYERS HEADS KV_HEADS HIDDEN VOCAB B T STEPS WARMUP WORLD\n", argv[0]);
    return 2;
  }
  int a[11];
  for (int i = 0; i < 11; i++) a[i] = std::atoi(argv[i + 1]);
  const int world = a[10];
  try {
    if (getenv("FW_DP_BENCH_RANK") || world == 1) return train_rank(a);
    fw_test::TestStore store;
    std::vector<pid_t> pids;
    std::vector<int> outs;
    std::vector<std::string> args(argv + 1, argv + argc);
    for (int r = 0; r < world; r++) {
      int p[2];
      if (pipe2(p, O_CLOEXEC) != 0) return 1;
      pids.push_back(fw_test::spawn_process("/proc/self/exe", args,
                                            {{"FW_DP_BENCH_RANK", "1"},
                                             {"RANK", std::to_string(r)},
                                             {"LOCAL_RANK", std::to_string(r)},
                                             {"WORLD_SIZE", std::to_string(world)},
                                             {"FW_STORE_URL", store.url("bench/0")}},
                                            p[1], -1));
      close(p[1]);
      outs.push_back(p[0]);
    }
    std::vector<nlohmann::json> res;
    for (int r = 0; r < world; r++) {
      std::string s;
      char buf[4096];
      ssize_t n;
      while ((n = read(outs[r], buf, sizeof buf)) > 0) s.append(buf, (size_t)n);
      close(outs[r]);
      int st = 0;
      waitpid(pids[r], &st, 0);
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || s.empty()) {
        std::fprintf(stderr, "dp_bench: rank %d failed\n", r);
        return 1;
      }
      res.push_back(nlohmann::json::parse(s));
    }
    double step = 0, ar = 0, share = 0;
    for (auto& j : res) {
      step = std::max(step, j["step_ms"].get<double>());
      ar += j["allreduce_ms"].get<double>() / world;
      share += j["allreduce_share"].get<double>() / world;
    }
    std::printf("{\"rank\": -1, \"world\": %d, \"step_ms\": %.1f, \"allreduce_ms\": %.1f, \"allreduce_share\": %.4f, "
                "\"params\": %zu, \"grad_mb\": %.1f}\n",
                world, step, ar, share, res[0]["params"].get<size_t>(), res[0]["grad_mb"].get<double>());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
