// sampling.h: choose the next token from a row of logits.
//
// Greedy when temperature == 0; otherwise softmax(logits / temperature)
// restricted to the top_k most likely tokens (0 = all) and then to the
// smallest set whose probability reaches top_p (1 = all), renormalised, and
// one draw from a seeded generator. The reported log-prob is the chosen
// token's log-probability under the model's own distribution (temperature 1,
// no truncation), which is what perplexity and drift features use.
// Deterministic: the same logits, params and generator state give the same
// token on every machine (our own splitmix64, no std:: distributions).
#pragma once

#include <cstdint>
#include <vector>

namespace fw {

struct SamplingParams {
  float temperature = 1.0f;  // 0 = greedy
  int top_k = 0;             // 0 = no limit
  float top_p = 1.0f;        // (0, 1]
  void validate() const;     // kInvalidArgument on out-of-range values
};

// A tiny seedable generator whose state is one u64 (checkpointable).
struct SampleRng {
  uint64_t state = 0;
  explicit SampleRng(uint64_t seed = 0) : state(seed) {}
  uint64_t next_u64();
  double next_unit();  // uniform in [0, 1)
};

struct SampleScratch {
  std::vector<float> probs;
  std::vector<int> idx;
};

// logits: (V). Returns the token id; *logprob (if not null) gets its log-prob.
int sample_token(const float* logits, int V, const SamplingParams& p, SampleRng& rng, float* logprob,
                 SampleScratch* scratch = nullptr);

// log-softmax of logits[token] (the model's log-prob of `token`).
float token_logprob(const float* logits, int V, int token);

}  // namespace fw
