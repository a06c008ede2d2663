// dp_testutil.h: the tiny model and the two-rank batches of the CPU data
// parallel tests (collective_dp_test.cpp over Gloo, collective_threads_test.cpp
// over the thread collective).
#pragma once

#include <cstdint>
#include <vector>

#include "model.h"
#include "train_rng.h"

namespace fwtest {

inline fw::Config dp_tiny_config() {
  fw::Config c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.max_position_embeddings = 32;
  c.validate();
  return c;
}

// Step s's batch of 2B rows of T (two ranks of B each): random tokens and
// targets from seed + s, `ignored` targets ignored in the second half only,
// so a rank that normalised its loss by its own token count instead of the
// global one would show.
inline void dp_batch(int s, int B, int T, uint64_t seed, int ignored, std::vector<int32_t>& tok,
                     std::vector<int32_t>& tgt) {
  fw::Rng r(seed + (uint64_t)s);
  tok.resize((size_t)2 * B * T);
  tgt.resize(tok.size());
  for (auto& t : tok) t = (int32_t)(r.next_u64() % 64);
  for (auto& t : tgt) t = (int32_t)(r.next_u64() % 64);
  for (int i = 0; i < ignored; i++) tgt[(size_t)B * T + (size_t)(r.next_u64() % (B * T))] = fw::kIgnoreIndex;
}

}  // namespace fwtest
