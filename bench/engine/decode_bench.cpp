// decode_bench.cpp: single-stream KV-cached decode speed of the engine.
//
//   decode_bench <config.json> <prompt_tokens> <decode_tokens> <int8 0|1>
//
// Random weights (seeded), a prompt of random tokens, then greedy decode of
// one token at a time through fw::InferEngine; prints one JSON line with the
// decode tokens/s (prefill excluded). Built and run by decode.sh.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "fileio.h"
#include "infer.h"
#include "model.h"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: decode_bench config.json prompt_tokens decode_tokens int8\n");
    return 2;
  }
  try {
    fw::Config cfg = fw::config_from_file(argv[1]);
    const int P = std::atoi(argv[2]), D = std::atoi(argv[3]);
    const bool int8 = std::atoi(argv[4]) != 0;
    fw::Model model(cfg);
    model.init_random(1, 0.02);
    fw::InferEngine eng(model, int8);
    fw::InferCache cache;
    cache.init(cfg, 1, P + D);
    const int V = cfg.vocab_size;
    std::vector<int32_t> prompt;
    for (int i = 0; i < P; i++) prompt.push_back((int32_t)((i * 7919 + 13) % V));
    std::vector<int> seq(P, 0), pos(P);
    for (int i = 0; i < P; i++) pos[i] = i;
    std::vector<float> logits((size_t)V);
    std::vector<uint8_t> want(P, 0);
    want[P - 1] = 1;
    eng.forward(prompt.data(), seq.data(), pos.data(), P, cache, logits.data(), want.data());
    auto argmax = [&] {
      int best = 0;
      for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
      return best;
    };
    int32_t tok = argmax();
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < D; i++) {
      int s = 0, p = P + i;
      eng.forward(&tok, &s, &p, 1, cache, logits.data());
      tok = argmax();
    }
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("{\"impl\":\"flywheel%s\",\"decode_tokens\":%d,\"seconds\":%.4f,\"tokens_per_s\":%.2f,\"weight_bytes\":%zu,\"last_token\":%d}\n",
                int8 ? "-int8" : "", D, dt, D / dt, eng.weight_bytes(), tok);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "decode_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
