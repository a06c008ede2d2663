// decode_bench.cpp: single-stream KV-cached decode speed of the engine.
//
//   decode_bench <config.json> <prompt_tokens> <decode_tokens> <int8 0|1> [save_dir]
//
// With save_dir, the random model is also written there as a HF folder, so
// decode_torch.py can run the very same weights (decode.sh's reference check);
// then every step is fed a fixed token (not its own argmax, which a random
// model quickly repeats) and the argmax of each step is reported.
// Random weights (seeded), a prompt of random tokens, then greedy decode of
// one token at a time through fw::InferEngine; prints one JSON line with the
// decode tokens/s (prefill excluded). Built and run by decode.sh.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "fileio.h"
#include "hf_io.h"
#include "infer.h"
#include "model.h"

int main(int argc, char** argv) {
  if (argc != 5 && argc != 6) {
    std::fprintf(stderr, "usage: decode_bench config.json prompt_tokens decode_tokens int8 [save_dir]\n");
    return 2;
  }
  try {
    fw::Config cfg = fw::config_from_file(argv[1]);
    const int P = std::atoi(argv[2]), D = std::atoi(argv[3]);
    const bool int8 = std::atoi(argv[4]) != 0;
    fw::Model model(cfg);
    model.init_random(1, 0.02);
    if (argc == 6) fw::model_save_hf(model, argv[5]);
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
    std::vector<int32_t> out = {tok};
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < D; i++) {
      int s = 0, p = P + i;
      eng.forward(&tok, &s, &p, 1, cache, logits.data());
      tok = argmax();
      out.push_back(tok);
      if (argc == 6) tok = (int32_t)(((P + i) * 7919 + 13) % V);  // forced input
    }
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::string toks;
    for (size_t i = 0; i < out.size() && i < 32; i++) toks += (i ? "," : "") + std::to_string(out[i]);
    std::printf("{\"impl\":\"flywheel%s\",\"decode_tokens\":%d,\"seconds\":%.4f,\"tokens_per_s\":%.2f,\"weight_bytes\":%zu,\"tokens\":[%s]}\n",
                int8 ? "-int8" : "", D, dt, D / dt, eng.weight_bytes(), toks.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "decode_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
