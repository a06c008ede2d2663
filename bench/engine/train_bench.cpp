// train_bench.cpp: time the engine's training step on one config; one JSON line out.
//
// Usage: train_bench DIM LAYERS HEADS KV_HEADS HIDDEN VOCAB B T STEPS WARMUP RECOMPUTE
// Tied embeddings (as llama2.c's stories models). Random weights and tokens (the step cost does not depend on the values).
// step_ms is the median wall time over STEPS timed steps (after WARMUP
// untimed ones), cpu_ms the process CPU time per timed step (all threads);
// peak_rss_mb is this process's maximum resident set (getrusage).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "train.h"

int main(int argc, char** argv) {
  if (argc != 12) {
    std::fprintf(stderr, "usage: %s DIM LAYERS HEADS KV_HEADS HIDDEN VOCAB B T STEPS WARMUP RECOMPUTE\n", argv[0]);
    return 2;
  }
  int a[11];
  for (int i = 0; i < 11; i++) a[i] = std::atoi(argv[i + 1]);
  int B = a[6], T = a[7], steps = a[8], warmup = a[9];
  nlohmann::json j = {{"model_type", "llama"}, {"hidden_size", a[0]}, {"num_hidden_layers", a[1]},
                      {"num_attention_heads", a[2]}, {"num_key_value_heads", a[3]}, {"intermediate_size", a[4]},
                      {"vocab_size", a[5]}, {"max_position_embeddings", T}, {"rms_norm_eps", 1e-5},
                      {"tie_word_embeddings", true}};
  try {
    fw::Model model(fw::config_from_json(j));
    model.init_random(1);
    fw::TrainConfig tc;
    tc.lr = 1e-4;
    tc.recompute = a[10] != 0;
    fw::Trainer tr(model, tc);
    fw::Rng rng(2);
    std::vector<int32_t> tok((size_t)B * T), tgt((size_t)B * T);
    for (auto& t : tok) t = (int32_t)(rng.next_u64() % a[5]);
    for (auto& t : tgt) t = (int32_t)(rng.next_u64() % a[5]);
    std::vector<double> ms;
    double loss = 0, cpu0 = 0;
    auto cpu_now = [] {
      timespec ts;
      clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
      return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
    };
    for (int s = 0; s < warmup + steps; s++) {
      if (s == warmup) cpu0 = cpu_now();
      auto t0 = std::chrono::steady_clock::now();
      loss = tr.step(tok.data(), tgt.data(), B, T).loss;
      double dt = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (s >= warmup) ms.push_back(dt);
    }
    double cpu_ms = (cpu_now() - cpu0) / steps;
    std::sort(ms.begin(), ms.end());
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    std::printf("{\"impl\": \"%s\", \"step_ms\": %.1f, \"cpu_ms\": %.1f, \"peak_rss_mb\": %.1f, "
                "\"params\": %zu, \"activation_mb\": %.1f, \"loss\": %.4f}\n",
                tc.recompute ? "flywheel-recompute" : "flywheel", ms[ms.size() / 2], cpu_ms, ru.ru_maxrss / 1024.0,
                model.layout.count_params(),
                model.activation_bytes() / 1048576.0, loss);
  } catch (const fw::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
