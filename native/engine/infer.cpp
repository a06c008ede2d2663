// infer.cpp: the inference-only Llama forward over per-sequence KV caches.
#include "infer.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common.h"
#include "ops_rope.h"

namespace fw {

enum { kWq = 0, kWk, kWv, kWo, kWgate, kWup, kWdown, kNumW };

void InferCache::init(const Config& cfg, int batch, int capacity) {
  FW_CHECK(batch > 0 && capacity > 0, kInvalidArgument, "KV cache needs batch > 0 and capacity > 0");
  FW_CHECK(capacity <= cfg.max_position_embeddings, kInvalidArgument,
           "KV cache capacity " << capacity << " exceeds max_position_embeddings " << cfg.max_position_embeddings);
  FW_CHECK(cfg.sliding_window <= 0 || capacity <= cfg.sliding_window, kUnsupported,
           "KV cache capacity " << capacity << " exceeds the sliding window " << cfg.sliding_window << " (not implemented)");
  L = cfg.num_hidden_layers;
  B = batch;
  KVH = cfg.num_key_value_heads;
  S = capacity;
  HS = cfg.head_dim;
  size_t n = (size_t)L * B * KVH * S * HS;
  k.assign(n, 0.0f);
  v.assign(n, 0.0f);
  len.assign((size_t)B, 0);
}

InferEngine::InferEngine(Model& model, bool int8) : model_(model), cfg_(model.cfg), int8_(int8) {
  C_ = cfg_.hidden_size;
  I_ = cfg_.intermediate_size;
  V_ = cfg_.vocab_size;
  L_ = cfg_.num_hidden_layers;
  NH_ = cfg_.num_attention_heads;
  KVH_ = cfg_.num_key_value_heads;
  HS_ = cfg_.head_dim;
  FW_CHECK(KVH_ > 0 && NH_ % KVH_ == 0 && HS_ % 2 == 0, kInvalidArgument, "bad head configuration for inference");
  for (int l = 0; l < L_; l++) lp_.push_back(model.layer_params(l));
  embed_ = model.param("model.embed_tokens.weight");
  norm_ = model.param("model.norm.weight");
  lm_head_ = cfg_.tie_word_embeddings ? embed_ : model.param("lm_head.weight");
  if (int8_) {
    for (int l = 0; l < L_; l++) {
      const LayerParams<float>& p = lp_[l];
      q8_.push_back(quantize_q8(p.wq, NH_ * HS_, C_));
      q8_.push_back(quantize_q8(p.wk, KVH_ * HS_, C_));
      q8_.push_back(quantize_q8(p.wv, KVH_ * HS_, C_));
      q8_.push_back(quantize_q8(p.wo, C_, NH_ * HS_));
      q8_.push_back(quantize_q8(p.wgate, I_, C_));
      q8_.push_back(quantize_q8(p.wup, I_, C_));
      q8_.push_back(quantize_q8(p.wdown, C_, I_));
    }
    q8_.push_back(quantize_q8(lm_head_, V_, C_));
  }
  // the same tables (computed in double) as the training forward: ops_rope.h
  const int S = cfg_.max_position_embeddings;
  rope_cos_.resize((size_t)S * HS_ / 2);
  rope_sin_.resize((size_t)S * HS_ / 2);
  rope_tables(rope_cos_.data(), rope_sin_.data(), S, HS_, cfg_.rope_theta);
}

size_t InferEngine::weight_bytes() const {
  size_t per_layer = (size_t)C_ * (NH_ * HS_ * 2 + KVH_ * HS_ * 2) + (size_t)3 * C_ * I_;
  size_t n = per_layer * L_ + (size_t)V_ * C_;
  if (!int8_) return n * 4;
  size_t b = 0;
  for (const QuantMatrix& m : q8_) b += m.bytes();
  return b;
}

void InferEngine::ensure_scratch(int N) {
  if (N <= cap_) return;
  cap_ = N;
  x_.resize((size_t)N * C_);
  xn_.resize((size_t)N * C_);
  q_.resize((size_t)N * NH_ * HS_);
  k_.resize((size_t)N * KVH_ * HS_);
  v_.resize((size_t)N * KVH_ * HS_);
  att_.resize((size_t)N * NH_ * HS_);
  o_.resize((size_t)N * C_);
  g_.resize((size_t)N * I_);
  u_.resize((size_t)N * I_);
}

// out = in @ W^T + b for weight `w` of layer `l` (l == L_: lm_head)
void InferEngine::linear(float* out, const float* in, int N, int l, int w) {
  if (l == L_) {
    if (int8_) matmul_q8(out, in, q8_.back(), nullptr, N);
    else matmul_f32(out, in, lm_head_, nullptr, N, V_, C_);
    return;
  }
  const LayerParams<float>& p = lp_[l];
  const float* W = nullptr;
  const float* b = nullptr;
  int OC = 0, IC = C_;
  switch (w) {
    case kWq: W = p.wq; b = p.bq; OC = NH_ * HS_; break;
    case kWk: W = p.wk; b = p.bk; OC = KVH_ * HS_; break;
    case kWv: W = p.wv; b = p.bv; OC = KVH_ * HS_; break;
    case kWo: W = p.wo; b = p.bo; OC = C_; IC = NH_ * HS_; break;
    case kWgate: W = p.wgate; OC = I_; break;
    case kWup: W = p.wup; OC = I_; break;
    case kWdown: W = p.wdown; OC = C_; IC = I_; break;
  }
  if (int8_) matmul_q8(out, in, q8_[(size_t)l * kNumW + w], b, N);
  else matmul_f32(out, in, W, b, N, OC, IC);
}

// out = x / rms(x) * w, rows of C
static void rmsnorm_rows(float* out, const float* x, const float* w, int N, int C, float eps) {
  for (int n = 0; n < N; n++) {
    const float* xr = x + (size_t)n * C;
    float* o = out + (size_t)n * C;
    float ss = 0.0f;
    for (int i = 0; i < C; i++) ss += xr[i] * xr[i];
    float r = 1.0f / std::sqrt(ss / C + eps);
    for (int i = 0; i < C; i++) o[i] = xr[i] * r * w[i];
  }
}

// HF rotate_half RoPE on one head vector (HS) at position p
static void rope_apply(float* h, int HS, int p, const float* cos_t, const float* sin_t) {
  const int half = HS / 2;
  const float* ct = cos_t + (size_t)p * half;
  const float* st = sin_t + (size_t)p * half;
  for (int i = 0; i < half; i++) {
    float c = ct[i], s = st[i];
    float a = h[i], b = h[i + half];
    h[i] = a * c - b * s;
    h[i + half] = b * c + a * s;
  }
}

void InferEngine::forward(const int32_t* tokens, const int* seq, const int* pos, int N, InferCache& cache, float* logits,
                          const uint8_t* want) {
  FW_CHECK(N > 0, kInvalidArgument, "forward needs at least one row");
  FW_CHECK(cache.L == L_ && cache.KVH == KVH_ && cache.HS == HS_, kInvalidArgument, "KV cache was built for another config");
  // validate rows: a sequence's rows are consecutive positions starting at or
  // below its length (below = rewind: later positions are dropped)
  std::vector<int> new_len(cache.len), last(cache.len.size(), -1);
  for (int n = 0; n < N; n++) {
    FW_CHECK(tokens[n] >= 0 && tokens[n] < V_, kInvalidArgument, "token id " << tokens[n] << " out of range [0, " << V_ << ")");
    FW_CHECK(seq[n] >= 0 && seq[n] < cache.B, kInvalidArgument, "sequence " << seq[n] << " not in the cache's batch of " << cache.B);
    FW_CHECK(pos[n] >= 0 && pos[n] < cache.S, kInvalidArgument,
             "position " << pos[n] << " beyond the KV cache capacity " << cache.S);
    const int s = seq[n];
    if (last[s] < 0) {
      FW_CHECK(pos[n] <= cache.len[s], kInvalidArgument,
               "position " << pos[n] << " leaves a gap after the " << cache.len[s] << " positions of sequence " << s);
    } else {
      FW_CHECK(pos[n] == last[s] + 1, kInvalidArgument,
               "rows of sequence " << s << " must have consecutive positions (" << last[s] << " then " << pos[n] << ")");
    }
    last[s] = pos[n];
    new_len[s] = pos[n] + 1;
  }
  ensure_scratch(N);
  const int QD = NH_ * HS_, KD = KVH_ * HS_, G = NH_ / KVH_;
  const float eps = (float)cfg_.rms_norm_eps;
  const float att_scale = 1.0f / std::sqrt((float)HS_);
  float* x = x_.data();
  // x: (N, C) token embeddings
  for (int n = 0; n < N; n++) std::memcpy(x + (size_t)n * C_, embed_ + (size_t)tokens[n] * C_, sizeof(float) * C_);

  int max_pos = 0;
  for (int n = 0; n < N; n++) max_pos = std::max(max_pos, pos[n]);
  const int nthreads = omp_get_max_threads();
  scores_.resize((size_t)nthreads * (max_pos + 1));

  for (int l = 0; l < L_; l++) {
    const LayerParams<float>& p = lp_[l];
    rmsnorm_rows(xn_.data(), x, p.ln1, N, C_, eps);
    linear(q_.data(), xn_.data(), N, l, kWq);  // (N, NH*HS)
    linear(k_.data(), xn_.data(), N, l, kWk);  // (N, KVH*HS)
    linear(v_.data(), xn_.data(), N, l, kWv);  // (N, KVH*HS)
    for (int n = 0; n < N; n++) {
      for (int h = 0; h < NH_; h++) rope_apply(q_.data() + (size_t)n * QD + h * HS_, HS_, pos[n], rope_cos_.data(), rope_sin_.data());
      for (int h = 0; h < KVH_; h++) {
        float* kh = k_.data() + (size_t)n * KD + h * HS_;
        rope_apply(kh, HS_, pos[n], rope_cos_.data(), rope_sin_.data());
        std::memcpy(cache.k_at(l, seq[n], h) + (size_t)pos[n] * HS_, kh, sizeof(float) * HS_);
        std::memcpy(cache.v_at(l, seq[n], h) + (size_t)pos[n] * HS_, v_.data() + (size_t)n * KD + h * HS_, sizeof(float) * HS_);
      }
    }
    // attention: row n, head h over positions [0, pos[n]] of its sequence
#pragma omp parallel for schedule(dynamic, 1) if (N * NH_ > 1 && max_pos > 64)
    for (int nh = 0; nh < N * NH_; nh++) {
      const int n = nh / NH_, h = nh % NH_, kvh = h / G, P = pos[n] + 1;
      float* sc = scores_.data() + (size_t)omp_get_thread_num() * (max_pos + 1);
      const float* qh = q_.data() + (size_t)n * QD + h * HS_;
      const float* kc = cache.k_at(l, seq[n], kvh);
      const float* vc = cache.v_at(l, seq[n], kvh);
      float mx = -INFINITY;
      for (int t = 0; t < P; t++) {
        const float* kt = kc + (size_t)t * HS_;
        float s = 0.0f;
        for (int i = 0; i < HS_; i++) s += qh[i] * kt[i];
        sc[t] = s * att_scale;
        mx = std::max(mx, sc[t]);
      }
      float sum = 0.0f;
      for (int t = 0; t < P; t++) {
        sc[t] = std::exp(sc[t] - mx);
        sum += sc[t];
      }
      float inv = 1.0f / sum;
      float* oh = att_.data() + (size_t)n * QD + h * HS_;
      for (int i = 0; i < HS_; i++) oh[i] = 0.0f;
      for (int t = 0; t < P; t++) {
        const float a = sc[t] * inv;
        const float* vt = vc + (size_t)t * HS_;
        for (int i = 0; i < HS_; i++) oh[i] += a * vt[i];
      }
    }
    linear(o_.data(), att_.data(), N, l, kWo);  // (N, C)
    for (size_t i = 0; i < (size_t)N * C_; i++) x[i] += o_[i];
    rmsnorm_rows(xn_.data(), x, p.ln2, N, C_, eps);
    linear(g_.data(), xn_.data(), N, l, kWgate);  // (N, I)
    linear(u_.data(), xn_.data(), N, l, kWup);    // (N, I)
    for (size_t i = 0; i < (size_t)N * I_; i++) {
      float gv = g_[i];
      g_[i] = gv / (1.0f + std::exp(-gv)) * u_[i];  // silu(gate) * up
    }
    linear(o_.data(), g_.data(), N, l, kWdown);  // (N, C)
    for (size_t i = 0; i < (size_t)N * C_; i++) x[i] += o_[i];
  }
  for (int b = 0; b < cache.B; b++) cache.len[b] = new_len[b];

  // final norm + lm_head on the wanted rows only
  int nw = 0;
  for (int n = 0; n < N; n++) {
    if (want && !want[n]) continue;
    if (nw != n) std::memcpy(x + (size_t)nw * C_, x + (size_t)n * C_, sizeof(float) * C_);
    nw++;
  }
  if (nw == 0) return;
  rmsnorm_rows(xn_.data(), x, norm_, nw, C_, eps);
  linear(logits, xn_.data(), nw, L_, 0);  // (nw, V)
}

std::vector<Generation> InferEngine::generate(const std::vector<std::vector<int32_t>>& prompts, const GenerateParams& gp) {
  gp.sampling.validate();
  FW_CHECK(!prompts.empty(), kInvalidArgument, "generate needs at least one prompt");
  FW_CHECK(gp.max_new_tokens >= 0, kInvalidArgument, "max_new_tokens must be >= 0");
  const int B = (int)prompts.size();
  int longest = 0;
  for (const auto& p : prompts) {
    FW_CHECK(!p.empty(), kInvalidArgument, "a prompt is empty (it needs at least one token, e.g. BOS)");
    longest = std::max(longest, (int)p.size());
  }
  const int cap = longest + gp.max_new_tokens;
  FW_CHECK(cap <= cfg_.max_position_embeddings, kInvalidArgument,
           "prompt (" << longest << ") + max_new_tokens (" << gp.max_new_tokens << ") exceeds max_position_embeddings "
                      << cfg_.max_position_embeddings);
  InferCache cache;
  cache.init(cfg_, B, std::max(cap, 1));
  std::vector<Generation> out((size_t)B);
  std::vector<SampleRng> rngs;
  for (int b = 0; b < B; b++) rngs.emplace_back(gp.seed + (uint64_t)b * 0x9e3779b97f4a7c15ull);
  std::vector<float> logits((size_t)B * V_);
  std::vector<int32_t> next((size_t)B);
  SampleScratch scratch;
  if (gp.max_new_tokens == 0) {
    for (auto& g : out) g.finish_reason = "length";
    return out;
  }
  // prefill: every prompt's rows in one call (one GEMM per projection), the
  // logits of each prompt's last row land in logits[b]
  {
    std::vector<int32_t> toks;
    std::vector<int> seq, pos;
    std::vector<uint8_t> want;
    for (int b = 0; b < B; b++) {
      const int T = (int)prompts[b].size();
      for (int t = 0; t < T; t++) {
        toks.push_back(prompts[b][t]);
        seq.push_back(b);
        pos.push_back(t);
        want.push_back(t == T - 1 ? 1 : 0);
      }
    }
    forward(toks.data(), seq.data(), pos.data(), (int)toks.size(), cache, logits.data(), want.data());
  }
  std::vector<int> active;
  for (int b = 0; b < B; b++) active.push_back(b);
  std::vector<int> rows_seq, rows_pos;
  std::vector<int32_t> rows_tok;
  std::vector<float> step_logits((size_t)B * V_);
  // logits of sequence b are at logits[b]; sample, then decode the survivors
  while (!active.empty()) {
    rows_seq.clear();
    rows_pos.clear();
    rows_tok.clear();
    for (int b : active) {
      float lp = 0.0f;
      int tok = sample_token(logits.data() + (size_t)b * V_, V_, gp.sampling, rngs[b], &lp, &scratch);
      Generation& g = out[b];
      g.tokens.push_back(tok);
      g.logprobs.push_back(lp);
      if (gp.on_token && !gp.on_token(b, tok, lp)) {
        g.finish_reason = "cancelled";
      } else if (gp.eos_id >= 0 && tok == gp.eos_id) {
        g.finish_reason = "eos";
      } else if ((int)g.tokens.size() >= gp.max_new_tokens) {
        g.finish_reason = "length";
      } else {
        rows_seq.push_back(b);
        rows_pos.push_back(cache.len[b]);
        rows_tok.push_back(tok);
      }
    }
    active = rows_seq;
    if (active.empty()) break;
    const int N = (int)active.size();
    forward(rows_tok.data(), rows_seq.data(), rows_pos.data(), N, cache, step_logits.data());
    for (int n = 0; n < N; n++)
      std::memcpy(logits.data() + (size_t)active[n] * V_, step_logits.data() + (size_t)n * V_, sizeof(float) * V_);
  }
  return out;
}

double InferEngine::mean_nll(const std::vector<int32_t>& tokens, int T) {
  FW_CHECK(T >= 2 && (int)tokens.size() >= T, kInvalidArgument, "mean_nll needs windows of at least 2 tokens");
  InferCache cache;
  cache.init(cfg_, 1, T);
  std::vector<float> logits((size_t)T * V_);
  std::vector<int> seq((size_t)T, 0), pos((size_t)T);
  for (int t = 0; t < T; t++) pos[t] = t;
  double nll = 0.0;
  int64_t count = 0;
  for (size_t s = 0; s + T <= tokens.size(); s += T) {
    cache.len[0] = 0;
    forward(tokens.data() + s, seq.data(), pos.data(), T, cache, logits.data());
    for (int t = 0; t + 1 < T; t++) {
      nll -= token_logprob(logits.data() + (size_t)t * V_, V_, tokens[s + t + 1]);
      count++;
    }
  }
  return nll / (double)count;
}

}  // namespace fw
