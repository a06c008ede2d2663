// infer.h: KV-cached inference (prefill + incremental decode) and generation.
//
// InferEngine runs the Llama decoder for inference only, over the weights of a
// Model (fp32, read in place) or INT8 copies of its linear layers (quant.h).
// Its unit of work is a set of N rows, each row one token of some sequence at
// some absolute position:
//
//   engine.forward(tokens, seq, pos, N, cache, logits, want)
//
// For each layer, every row's key/value is written into the cache first, then
// row n attends to positions [0, pos[n]] of its own sequence. So a prompt
// (rows pos 0..T-1 of one sequence) is a causal prefill, a decode step is one
// row per active sequence, and both can be mixed in one call: sequences of
// different lengths batch naturally (each has its own length in the cache).
// GQA: query head h reads kv head h / (NH / KVH).
//
// generate() drives it: one prefill call for all prompts, then batched decode steps
// over the sequences still running, sampling (sampling.h) with one seeded
// generator per sequence (seed + index), so a sequence's output does not
// depend on what it is batched with. Stops on EOS (when eos_id >= 0) or after
// max_new_tokens; reports per-token log-probs.
//
// Thread-safety: an engine owns scratch buffers, so one call at a time per
// engine; several engines may share one Model (read-only weights).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model.h"
#include "quant.h"
#include "sampling.h"

namespace fw {

// Key/value cache with one length per sequence.
struct InferCache {
  int L = 0, B = 0, KVH = 0, S = 0, HS = 0;
  std::vector<float> k, v;  // (L, B, KVH, S, HS), post-RoPE keys
  std::vector<int> len;     // (B) positions filled per sequence
  void init(const Config& cfg, int batch, int capacity);
  // Frees slot b for a new sequence (continuous batching): its old keys and
  // values are simply overwritten from position 0.
  void reset(int b) { len.at((size_t)b) = 0; }
  float* k_at(int l, int b, int h) { return k.data() + ((((size_t)l * B + b) * KVH + h) * S) * HS; }
  float* v_at(int l, int b, int h) { return v.data() + ((((size_t)l * B + b) * KVH + h) * S) * HS; }
};

struct GenerateParams {
  int max_new_tokens = 32;
  int eos_id = -1;  // < 0: never stop on a token
  SamplingParams sampling;
  uint64_t seed = 0;
  // Called for every generated token as soon as it is sampled (streaming);
  // returning false stops that sequence (finish_reason "cancelled").
  std::function<bool(int seq, int32_t token, float logprob)> on_token;
};

struct Generation {
  std::vector<int32_t> tokens;   // generated tokens (EOS included when hit)
  std::vector<float> logprobs;   // per generated token, model log-prob
  std::string finish_reason;     // "eos" | "length" | "cancelled"
};

class InferEngine {
 public:
  // The engine reads `model`'s parameters in place (fp32) and must not
  // outlive it; with int8 it quantises q/k/v/o, gate/up/down and lm_head.
  InferEngine(Model& model, bool int8);

  const Config& config() const { return cfg_; }
  bool int8() const { return int8_; }
  // Bytes of the weights the decode path streams per token.
  size_t weight_bytes() const;

  // tokens, seq, pos: (N). want: (N) or nullptr = all; logits receives one
  // row of V for each wanted row, in row order. The rows of one sequence
  // must have consecutive positions, the first <= its len (no gaps), all
  // < capacity; afterwards len = last position + 1. Starting below len
  // rewinds the sequence (e.g. to regenerate from an earlier token).
  void forward(const int32_t* tokens, const int* seq, const int* pos, int N, InferCache& cache, float* logits,
               const uint8_t* want = nullptr);

  std::vector<Generation> generate(const std::vector<std::vector<int32_t>>& prompts, const GenerateParams& gp);

  // Mean negative log-likelihood per predicted token over windows of `T`
  // tokens of `tokens` (each window scored as its own sequence, every token
  // after the first predicted). exp() of it is the perplexity.
  double mean_nll(const std::vector<int32_t>& tokens, int T);

 private:
  void linear(float* out, const float* in, int N, int which_layer, int which_w);
  void ensure_scratch(int N);

  Model& model_;
  Config cfg_;
  bool int8_;
  int C_, I_, V_, L_, NH_, KVH_, HS_;
  std::vector<LayerParams<float>> lp_;
  const float* embed_ = nullptr;    // (V, C)
  const float* norm_ = nullptr;     // (C)
  const float* lm_head_ = nullptr;  // (V, C)
  // int8 copies: per layer [q, k, v, o, gate, up, down], then lm_head
  std::vector<QuantMatrix> q8_;
  std::vector<float> rope_cos_, rope_sin_;  // (max_position_embeddings, HS/2)
  // scratch for N rows
  int cap_ = 0;
  std::vector<float> x_, xn_, q_, k_, v_, att_, o_, g_, u_, scores_, tmp_;
};

}  // namespace fw
