// sampling.cpp: greedy, temperature, top-k and top-p sampling.
#include "sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common.h"

namespace fw {

void SamplingParams::validate() const {
  FW_CHECK(std::isfinite(temperature) && temperature >= 0.0f, kInvalidArgument, "temperature must be >= 0, got " << temperature);
  FW_CHECK(top_k >= 0, kInvalidArgument, "top_k must be >= 0, got " << top_k);
  FW_CHECK(top_p > 0.0f && top_p <= 1.0f, kInvalidArgument, "top_p must be in (0, 1], got " << top_p);
}

uint64_t SampleRng::next_u64() {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double SampleRng::next_unit() { return (double)(next_u64() >> 11) * (1.0 / 9007199254740992.0); }

float token_logprob(const float* logits, int V, int token) {
  float mx = logits[0];
  for (int i = 1; i < V; i++) mx = std::max(mx, logits[i]);
  double sum = 0.0;
  for (int i = 0; i < V; i++) sum += std::exp((double)(logits[i] - mx));
  return (float)((double)(logits[token] - mx) - std::log(sum));
}

int sample_token(const float* logits, int V, const SamplingParams& p, SampleRng& rng, float* logprob, SampleScratch* scratch) {
  int chosen = 0;
  if (p.temperature == 0.0f) {
    for (int i = 1; i < V; i++)
      if (logits[i] > logits[chosen]) chosen = i;  // first max wins ties
  } else {
    SampleScratch local;
    SampleScratch& s = scratch ? *scratch : local;
    s.idx.resize((size_t)V);
    std::iota(s.idx.begin(), s.idx.end(), 0);
    // candidate set: the top_k largest logits (stable order by logit, then id)
    auto by_logit = [&](int a, int b) { return logits[a] != logits[b] ? logits[a] > logits[b] : a < b; };
    int n = V;
    if (p.top_k > 0 && p.top_k < V) {
      std::partial_sort(s.idx.begin(), s.idx.begin() + p.top_k, s.idx.end(), by_logit);
      n = p.top_k;
    } else if (p.top_p < 1.0f) {
      std::sort(s.idx.begin(), s.idx.end(), by_logit);
    }
    s.probs.resize((size_t)n);
    float mx = logits[s.idx[0]];
    for (int i = 1; i < n; i++) mx = std::max(mx, logits[s.idx[i]]);
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
      s.probs[i] = std::exp((logits[s.idx[i]] - mx) / p.temperature);
      sum += s.probs[i];
    }
    if (p.top_p < 1.0f) {  // nucleus: smallest prefix (in sorted order) reaching top_p
      double cum = 0.0;
      int keep = n;
      for (int i = 0; i < n; i++) {
        cum += s.probs[i] / sum;
        if (cum >= p.top_p) { keep = i + 1; break; }
      }
      n = keep;
      sum = 0.0;
      for (int i = 0; i < n; i++) sum += s.probs[i];
    }
    double u = rng.next_unit() * sum, acc = 0.0;
    chosen = s.idx[n - 1];
    for (int i = 0; i < n; i++) {
      acc += s.probs[i];
      if (u < acc) { chosen = s.idx[i]; break; }
    }
  }
  if (logprob) *logprob = token_logprob(logits, V, chosen);
  return chosen;
}

}  // namespace fw
