// cuda_model_test.cpp: the whole CUDA model against the CPU backend on the
// same weights and batch (model-level parity, as llm.c's test_gpt2.cu):
//  - forward logits, loss and EVERY gradient tensor: rel error <= 1e-4 in
//    fp32, <= 1e-2 in bf16 (the CPU runs fp32 on the bf16-rounded weights);
//  - KV-cache decode (prefill, then one token at a time) equals the full
//    forward's logits at every position;
//  - three AdamW steps of CudaTrainer equal fw::Trainer's; bf16 training
//    lowers the loss; ZeRO-1 on one rank equals the plain path;
//  - LoRA (with dropout) in the model, activation recomputation (bit for
//    bit the plain gradients), and LoRA + distillation training against
//    fw::Trainer;
//  - bad token ids are a clear kInvalidArgument.
// The error metric is cuda_test_util.h's: max|gpu - cpu| / max|cpu| per tensor.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <map>
#include <vector>

#include "../model_cases.h"
#include "cuda_test_util.h"
#include "decode.cuh"
#include "launch.h"
#include "model.h"
#include "infer.h"
#include "lora.h"
#include "model_cuda.h"
#include "train.h"

using namespace fwcuda_test;
using fwcases::ModelCase;
using fwcases::cases;
using fwcases::batch;

namespace {

// Model-level parity is judged by the norm-wise relative error
// ||gpu - cpu||_2 / ||cpu||_2, with the element-wise max|diff| / max|ref|
// printed and bounded too. fp32: both <= 1e-4. bf16: the GPU keeps every
// activation and gradient in bf16 (unit roundoff 2^-8 = 0.39%) and a layer
// rounds about ten times on the way forward and as often on the way back, so
// against fp32 arithmetic on the same bf16 weights the logits of these
// 1-2 layer models land at 0.4-1.2% and the weight gradients at 1-2.4%
// (measured on an H100, docs/cuda.md); the bounds are 2e-2 for logits and
// 3e-2 for gradients (L2), 5e-2 element-wise. A wrong kernel is far outside
// them (errors of order 1).
void expect_close(const std::string& what, const std::vector<float>& gpu, const std::vector<float>& cpu, double l2_bound,
                  double max_bound) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  double num = 0, den = 0, max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < cpu.size(); i++) {
    const double d = (double)gpu[i] - cpu[i];
    num += d * d;
    den += (double)cpu[i] * cpu[i];
    max_diff = std::isnan(d) ? INFINITY : std::max(max_diff, std::fabs(d));
    max_ref = std::max(max_ref, std::fabs((double)cpu[i]));
  }
  const double l2 = std::isnan(num) ? INFINITY : std::sqrt(num / std::max(den, 1e-300));
  const double rel = max_diff / std::max(max_ref, 1e-30);
  const bool ok = l2 <= l2_bound && rel <= max_bound;
  std::printf("%-8s %-52s l2 rel %.3e (bound %.0e)  max rel %.3e (bound %.0e)\n", ok ? "OK" : "NOT OK", what.c_str(),
              l2, l2_bound, rel, max_bound);
  EXPECT_LE(l2, l2_bound) << what;
  EXPECT_LE(rel, max_bound) << what;
  EXPECT_GT(max_ref, 0.0) << what << ": reference is all zeros, the check would be vacuous";
}

// bf16_l2: the bf16 bound on the norm-wise error of logits and gradients
// alike (0: the stress bounds above, 2e-2 logits / 3e-2 gradients).
template <typename T>
void expect_model_parity(const std::string& what, const std::vector<float>& gpu, const std::vector<float>& cpu,
                         bool is_grad = true, double bf16_l2 = 0) {
  if (std::is_same<T, float>::value)
    expect_close(what, gpu, cpu, 1e-4, 1e-4);
  else
    expect_close(what, gpu, cpu, bf16_l2 > 0 ? bf16_l2 : is_grad ? 3e-2 : 2e-2, 5e-2);
}

std::vector<float> slice(const std::vector<float>& all, const fw::TensorInfo& t) {
  return std::vector<float>(all.begin() + t.offset, all.begin() + t.offset + t.numel);
}

// CPU model with random weights rounded to what T holds. The default std,
// 0.1, is 5x HF's 0.02 so every path carries signal (a stress case for bf16).
template <typename T>
fw::Model cpu_model(const fw::Config& cfg, uint64_t seed, double init_std = 0.1) {
  fw::Model m(cfg);
  fwcases::init_case_model(m, seed, init_std);
  m.params = rounded<T>(m.params);
  return m;
}

// The bound on the attention key bias's gradient at HF's init scale (see
// check_forward_backward).
constexpr double kKeyBiasL2 = 2.5e-2;

template <typename T>
void check_forward_backward(const ModelCase& mc, uint64_t seed, double init_std = 0.1, double bf16_l2 = 0) {
  const fw::Config cfg = fw::config_from_json(mc.cfg);
  fw::Model cpu = cpu_model<T>(cfg, seed, init_std);
  std::vector<int32_t> tok, tgt;
  batch(tok, tgt, mc.B, mc.T, cfg.vocab_size, seed + 7);
  cpu.enable_grads();
  const float cpu_loss = cpu.forward(tok.data(), tgt.data(), mc.B, mc.T);
  std::vector<float> cpu_logits(cpu.logits(), cpu.logits() + (size_t)mc.B * mc.T * cfg.vocab_size);
  cpu.backward();

  fw::cuda::Blas blas;
  fw::cuda::CudaModel<T> gpu(cfg, blas);
  gpu.load_params(cpu.params.data());
  gpu.enable_grads();
  const float gpu_loss = gpu.forward(tok.data(), tgt.data(), mc.B, mc.T);
  std::vector<float> gpu_logits = gpu.logits_host();
  gpu.backward();
  std::vector<float> g((size_t)gpu.layout.numel);
  gpu.download_grads(g.data());

  const std::string tag = std::string(" ") + mc.name + " [" + type_name<T>() + (init_std != 0.1 ? ", std 0.02" : "") + "]";
  expect_model_parity<T>("logits" + tag, gpu_logits, cpu_logits, false, bf16_l2);
  expect_parity("loss" + tag, {gpu_loss}, {cpu_loss}, tol<T>());
  for (const fw::TensorInfo& t : cpu.layout.tensors) {
    // The attention key bias's gradient is the one exception to bf16_l2:
    // softmax ignores a shift shared by every key, so its exact value is a
    // near-cancellation that bf16 storage cannot resolve to 1e-2 (PyTorch's
    // own bf16 autocast lands at 1.1-1.2e-2 on it here, and the CPU twin of
    // this model, ref/cuda_model_twin.py, predicts 1.5-1.7e-2; docs/cuda.md).
    const bool key_bias = std::is_same<T, bf16>::value && t.name.find("k_proj.bias") != std::string::npos;
    const double bound = bf16_l2 > 0 && key_bias ? std::max(bf16_l2, kKeyBiasL2) : bf16_l2;
    expect_model_parity<T>("d " + t.name + tag, slice(g, t), slice(cpu.grads, t), true, bound);
  }

  // a second forward/backward accumulates (+=), as on the CPU
  gpu.forward(tok.data(), tgt.data(), mc.B, mc.T);
  gpu.backward();
  std::vector<float> g2((size_t)gpu.layout.numel);
  gpu.download_grads(g2.data());
  const fw::TensorInfo& wq = cpu.layout.at("model.layers.0.self_attn.q_proj.weight");
  std::vector<float> twice = slice(cpu.grads, wq);
  for (float& x : twice) x *= 2;
  expect_model_parity<T>("d q_proj accumulated twice" + tag, slice(g2, wq), twice);
}

template <typename T>
void check_decode(const ModelCase& mc, uint64_t seed) {
  const fw::Config cfg = fw::config_from_json(mc.cfg);
  fw::Model cpu = cpu_model<T>(cfg, seed);
  const int B = mc.B, Tt = mc.T, V = cfg.vocab_size;
  std::vector<int32_t> tok, tgt;
  batch(tok, tgt, B, Tt, V, seed + 3);
  fw::cuda::Blas blas;
  fw::cuda::CudaModel<T> gpu(cfg, blas);
  gpu.load_params(cpu.params.data());
  gpu.forward(tok.data(), nullptr, B, Tt);
  std::vector<float> full = gpu.logits_host();  // (B, T, V)

  fw::cuda::CudaKVCache<T> cache(cfg, B, Tt);
  Dev<T> out((size_t)B * Tt * V);
  const int P = Tt / 2;  // prefill the first half in one call, with every position's logits
  std::vector<int32_t> prompt((size_t)B * P);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < P; t++) prompt[(size_t)b * P + t] = tok[(size_t)b * Tt + t];
  gpu.forward_cached(prompt.data(), B, P, cache, out.get(), true);
  std::vector<float> got((size_t)B * Tt * V), want((size_t)B * Tt * V);
  std::vector<float> pre = out.f32();
  for (int b = 0; b < B; b++)
    for (int t = 0; t < P; t++)
      for (int v = 0; v < V; v++) {
        got[((size_t)b * Tt + t) * V + v] = pre[((size_t)b * P + t) * V + v];
      }
  for (int t = P; t < Tt; t++) {  // then one token per call, last-position logits (B, V)
    std::vector<int32_t> one(B);
    for (int b = 0; b < B; b++) one[b] = tok[(size_t)b * Tt + t];
    gpu.forward_cached(one.data(), B, 1, cache, out.get(), false);
    std::vector<float> step = out.f32();
    for (int b = 0; b < B; b++)
      for (int v = 0; v < V; v++) got[((size_t)b * Tt + t) * V + v] = step[(size_t)b * V + v];
  }
  EXPECT_EQ(cache.len, Tt);
  const std::string tag = std::string(" ") + mc.name + " [" + type_name<T>() + "]";
  // bf16: decode and the full forward round at different places (GEMM
  // shapes and attention kernels differ), so the bound is bf16's.
  if (std::is_same<T, float>::value)
    expect_parity("kv-cache decode vs full forward" + tag, got, full, 1e-5);
  else
    expect_model_parity<T>("kv-cache decode vs full forward" + tag, got, full, false);
  EXPECT_THROW(gpu.forward_cached(prompt.data(), B, 1, cache, out.get()), fw::Error);  // cache is full
}

}  // namespace

TEST(cuda_model, forward_backward_match_cpu_fp32) {
  FW_REQUIRE_GPU();
  uint64_t seed = 100;
  for (const ModelCase& mc : cases()) check_forward_backward<float>(mc, seed += 10);
}

TEST(cuda_model, forward_backward_match_cpu_bf16) {
  FW_REQUIRE_GPU();
  uint64_t seed = 200;
  for (const ModelCase& mc : cases()) check_forward_backward<bf16>(mc, seed += 10);
}

// The bound, 1e-2 in bf16 for logits and every gradient but the
// attention key bias's (kKeyBiasL2), at the usual weight scale (HF's init,
// std 0.02). ref/cuda_model_twin.py replays this model's bf16 rounding on
// these very instances on the CPU (CTest cuda_model_twin.bf16_hf_init_scale): worst
// logits 4.7e-3, worst other gradient 9.5e-3 (the query bias), key bias 1.7e-2. At std 0.1 (the test above) bf16
// storage alone costs about 1.1e-2 on the logits and 2.2e-2 on the worst
// gradient even with exact fp32 arithmetic between the roundings
// (native/tests/ref/bf16_error_model.py, docs/cuda.md), hence its bounds.
TEST(cuda_model, forward_backward_match_cpu_bf16_at_hf_init_scale) {
  FW_REQUIRE_GPU();
  uint64_t seed = 300;
  for (const ModelCase& mc : cases()) check_forward_backward<bf16>(mc, seed += 10, 0.02, 1e-2);
}

// fp16 keeps 3 more mantissa bits than bf16: the 1e-2 holds even on
// the stress weights (std 0.1).
TEST(cuda_model, forward_backward_match_cpu_fp16) {
  FW_REQUIRE_GPU();
  uint64_t seed = 400;
  for (const ModelCase& mc : cases()) check_forward_backward<f16>(mc, seed += 10, 0.1, 1e-2);
}

TEST(cuda_model, kv_cache_decode_equals_full_forward) {
  FW_REQUIRE_GPU();
  uint64_t seed = 300;
  for (const ModelCase& mc : cases()) {
    check_decode<float>(mc, seed += 10);
    check_decode<bf16>(mc, seed += 10);
    check_decode<f16>(mc, seed += 10);
  }
}

// Greedy decode: a captured one-token step (CUDA graph, position read from
// the cache's device-side length) replayed n times gives exactly the tokens
// and logits of the same steps launched one by one.
template <typename T>
void check_graph_decode(const ModelCase& mc, uint64_t seed) {
  const fw::Config cfg = fw::config_from_json(mc.cfg);
  fw::Model cpu = cpu_model<T>(cfg, seed);
  const int B = mc.B, V = cfg.vocab_size, P = 5, G = 9;
  std::vector<int32_t> tok, tgt;
  batch(tok, tgt, B, P, V, seed + 1);
  cudaStream_t st;
  FW_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  {
    fw::cuda::Blas blas;
    fw::cuda::CudaModel<T> gpu(cfg, blas, st);
    gpu.load_params(cpu.params.data());
    fw::cuda::CudaKVCache<T> cache(cfg, B, P + G);
    Dev<T> logits((size_t)B * V);
    Dev<int32_t> next((size_t)B);
    auto run = [&](bool graph) {
      cache.reset();
      gpu.forward_cached(tok.data(), B, P, cache, logits.get());
      fw::cuda::argmax_rows(next.get(), logits.get(), B, V, st);
      std::vector<int32_t> ids;
      fw::cuda::CudaDecodeGraph g;
      if (graph)
        g = gpu.capture_decode(next.get(), B, 1, cache, logits.get(),
                               [&](cudaStream_t s) { fw::cuda::argmax_rows(next.get(), logits.get(), B, V, s); });
      for (int i = 0; i < G; i++) {
        if (graph) {
          g.launch(cache, st);
        } else {
          gpu.forward_cached_device(next.get(), B, 1, cache, logits.get());
          fw::cuda::argmax_rows(next.get(), logits.get(), B, V, st);
        }
        FW_CUDA_CHECK(cudaStreamSynchronize(st));
        std::vector<int32_t> h = next.host();
        ids.insert(ids.end(), h.begin(), h.end());
      }
      EXPECT_EQ(cache.len, P + G);
      if (graph) {
        EXPECT_THROW(g.launch(cache, st), fw::Error);  // the cache is full
      }
      return std::make_pair(ids, logits.f32());
    };
    auto plain = run(false);
    auto graphed = run(true);
    // programmatic dependent launch (launch.h, on by default on sm_90) only
    // overlaps launches: without it the graph computes the same bits
    const bool pdl = fw::cuda::programmatic_launch();
    fw::cuda::set_programmatic_launch(!pdl);
    auto toggled = run(true);
    fw::cuda::set_programmatic_launch(pdl);
    const std::string tag = std::string(" ") + mc.name + " [" + type_name<T>() + "]";
    EXPECT_EQ(plain.first, graphed.first) << "greedy tokens differ between graph replay and plain steps" << tag;
    expect_parity("graph decode last logits" + tag, graphed.second, plain.second, 0.0);
    EXPECT_EQ(toggled.first, graphed.first) << "programmatic launch changed the tokens" << tag;
    expect_parity("graph decode, programmatic launch toggled" + tag, toggled.second, graphed.second, 0.0);
    // a graph whose buffers the model has replaced since (here: the INT8
    // weights re-made) is refused, not replayed on freed memory
    cache.reset();
    gpu.forward_cached(tok.data(), B, P, cache, logits.get());
    fw::cuda::CudaDecodeGraph stale = gpu.capture_decode(next.get(), B, 1, cache, logits.get());
    gpu.set_int8_decode(false);
    EXPECT_THROW(stale.launch(cache, st), fw::Error) << tag;
  }
  FW_CUDA_CHECK(cudaStreamDestroy(st));
}

TEST(cuda_model, graph_decode_equals_plain_steps) {
  FW_REQUIRE_GPU();
  uint64_t seed = 400;
  for (const ModelCase& mc : cases()) {
    check_graph_decode<float>(mc, seed += 10);
    check_graph_decode<bf16>(mc, seed += 10);
  }
}

TEST(cuda_model, trainer_steps_match_cpu_fp32) {
  FW_REQUIRE_GPU();
  const ModelCase mc = cases()[2];
  const fw::Config cfg = fw::config_from_json(mc.cfg);
  fw::Model cpu = cpu_model<float>(cfg, 41);
  fw::TrainConfig tc;
  tc.lr = 1e-2;
  tc.min_lr = 1e-3;
  tc.warmup_steps = 1;
  tc.total_steps = 10;
  tc.grad_accum = 2;
  tc.grad_clip = 0.5;  // the global norm is above it: clipping is exercised
  fw::cuda::Blas blas;
  fw::cuda::CudaModel<float> gpu(cfg, blas);
  gpu.load_params(cpu.params.data());
  fw::Trainer ct(cpu, tc);
  fw::cuda::CudaTrainer<float> gt(gpu, tc);
  std::vector<int32_t> tok, tgt;
  for (int s = 0; s < 3; s++) {
    batch(tok, tgt, 4, mc.T, cfg.vocab_size, 500 + s);
    fw::StepResult a = ct.step(tok.data(), tgt.data(), 4, mc.T);
    fw::StepResult b = gt.step(tok.data(), tgt.data(), 4, mc.T);
    expect_parity("trainer loss step " + std::to_string(s), {(float)b.loss}, {(float)a.loss}, 1e-4);
    expect_parity("trainer grad norm step " + std::to_string(s), {(float)b.grad_norm}, {(float)a.grad_norm}, 1e-4);
    EXPECT_EQ(a.lr, b.lr);
    EXPECT_EQ(a.tokens, b.tokens);
  }
  EXPECT_EQ(gt.step_count(), 3);
  std::vector<float> w(gpu.layout.numel);
  gpu.download_params(w.data());
  // AdamW divides by sqrt(v): where a gradient is near zero, fp32 rounding
  // differences move single elements by up to ~lr, so the tensor-wise norm
  // is the measure here (elements within 5e-4 of the tensor's scale).
  for (const fw::TensorInfo& t : cpu.layout.tensors)
    expect_close("trained " + t.name, slice(w, t), slice(cpu.params, t), 1e-4, 5e-4);
}

TEST(cuda_model, bf16_training_learns_and_zero1_matches) {
  FW_REQUIRE_GPU();
  const ModelCase mc = cases()[0];
  const fw::Config cfg = fw::config_from_json(mc.cfg);
  fw::Model cpu = cpu_model<float>(cfg, 43);
  fw::TrainConfig tc;
  tc.lr = 3e-3;
  tc.total_steps = 40;
  fw::cuda::Blas blas;
  fw::cuda::CudaModel<bf16> a(cfg, blas), b(cfg, blas);
  a.load_params(cpu.params.data());
  b.load_params(cpu.params.data());
  fw::cuda::CudaTrainer<bf16> ta(a, tc);
  fw::cuda::CudaTrainer<bf16> tb(b, tc, nullptr, /*zero1=*/true);
  ta.load_master(cpu.params.data());
  tb.load_master(cpu.params.data());
  std::vector<int32_t> tok, tgt;
  batch(tok, tgt, 4, 16, cfg.vocab_size, 77);  // one batch, memorised
  double first = 0, last = 0;
  for (int s = 0; s < 30; s++) {
    fw::StepResult ra = ta.step(tok.data(), tgt.data(), 4, 16);
    fw::StepResult rb = tb.step(tok.data(), tgt.data(), 4, 16);
    ASSERT_FALSE(ra.skipped);
    ASSERT_TRUE(std::isfinite(ra.loss));
    EXPECT_EQ(ra.loss, rb.loss) << "ZeRO-1 on one rank must be the same computation";
    if (s == 0) first = ra.loss;
    last = ra.loss;
  }
  std::printf("bf16 training on one batch: loss %.4f -> %.4f\n", first, last);
  EXPECT_LT(last, 0.5 * first);
  std::vector<float> ma(a.layout.numel), mb(b.layout.numel);
  ta.download_master(ma.data());
  tb.download_master(mb.data());
  expect_parity("zero1 master == plain master (1 rank)", mb, ma, 0.0);
  EXPECT_EQ(ta.optimizer_bytes(), 3 * a.layout.numel * sizeof(float));
}

// fp16 with dynamic loss scaling: a scale so large that the gradients
// overflow skips the step (weights, moments and step count untouched) and
// halves the scale until they fit; then training proceeds and learns.
TEST(cuda_model, fp16_training_skips_overflowing_steps_and_learns) {
  FW_REQUIRE_GPU();
  const ModelCase mc = cases()[0];
  const fw::Config cfg = fw::config_from_json(mc.cfg);
  fw::Model cpu = cpu_model<float>(cfg, 53);
  fw::TrainConfig tc;
  tc.lr = 3e-3;
  tc.total_steps = 100;
  fw::cuda::Blas blas;
  fw::cuda::CudaModel<f16> m(cfg, blas);
  m.load_params(cpu.params.data());
  fw::cuda::CudaTrainer<f16> tr(m, tc);
  tr.load_master(cpu.params.data());
  ASSERT_TRUE(tr.loss_scaling());
  tr.loss_scaler().scale = 1e9f;  // dlogits * 1e9 overflow fp16 (max 65504)
  std::vector<int32_t> tok, tgt;
  batch(tok, tgt, 4, 16, cfg.vocab_size, 79);
  const size_t n = m.layout.numel;
  std::vector<float> before(n), after(n), w_before(n), w_after(n), m_before(n), m_after(n), v_before(n), v_after(n);
  tr.download_master(before.data());
  m.download_params(w_before.data());
  tr.download_moments(m_before.data(), v_before.data());
  fw::StepResult r = tr.step(tok.data(), tgt.data(), 4, 16);
  EXPECT_TRUE(r.skipped);
  EXPECT_FALSE(std::isfinite(r.grad_norm));
  EXPECT_TRUE(std::isfinite(r.loss));  // the loss itself is unscaled
  EXPECT_EQ(tr.step_count(), 0);
  EXPECT_EQ(tr.loss_scaler().scale, 5e8f);
  tr.download_master(after.data());
  m.download_params(w_after.data());
  tr.download_moments(m_after.data(), v_after.data());
  EXPECT_EQ(after, before) << "a skipped step must not touch the fp32 master";
  EXPECT_EQ(w_after, w_before) << "a skipped step must not touch the fp16 working copy";
  EXPECT_EQ(m_after, m_before) << "a skipped step must not touch AdamW's first moment";
  EXPECT_EQ(v_after, v_before) << "a skipped step must not touch AdamW's second moment";
  int skipped = 1;
  double first = NAN, last = NAN;
  for (int s = 0; s < 80 && tr.step_count() < 30; s++) {
    r = tr.step(tok.data(), tgt.data(), 4, 16);
    if (r.skipped) {
      skipped++;
      continue;
    }
    ASSERT_TRUE(std::isfinite(r.loss));
    ASSERT_TRUE(std::isfinite(r.grad_norm));
    if (std::isnan(first)) first = r.loss;
    last = r.loss;
  }
  std::printf("fp16 training: %d steps skipped by overflow, final scale %g, loss %.4f -> %.4f\n", skipped,
              tr.loss_scaler().scale, first, last);
  EXPECT_EQ(tr.step_count(), 30);
  EXPECT_LT(tr.loss_scaler().scale, 1e9f);
  EXPECT_LT(last, 0.5 * first);
}

// A LoRA adapter on every projection with random A and B (a fresh one has
// B = 0 and would leave half the gradients untested), rounded to T.
template <typename T>
fw::Lora random_lora(const fw::Config& cfg, uint64_t seed, double dropout) {
  fw::LoraConfig lc;
  lc.rank = 4;
  lc.alpha = 8;
  lc.dropout = dropout;
  lc.seed = seed;
  lc.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  fw::Lora lora(cfg, lc);
  lora.init(seed);
  fw::Rng r(seed + 5);
  for (const fw::TensorInfo& t : lora.layout.tensors)
    if (t.name.find("lora_B") != std::string::npos)
      for (size_t i = 0; i < t.numel; i++) lora.params[t.offset + i] = (float)(0.05 * r.normal());
  lora.params = rounded<T>(lora.params);
  return lora;
}

// LoRA in the model: with dropout (the CPU's mask, keyed by the step), the
// logits and every adapter gradient follow the CPU's; the base model gets
// no gradients; evaluation (training off) drops nothing.
template <typename T>
void check_lora(const ModelCase& mc, uint64_t seed) {
  const fw::Config cfg = fw::config_from_json(mc.cfg);
  fw::Model cpu = cpu_model<T>(cfg, seed);
  fw::Lora host = random_lora<T>(cfg, seed + 1, 0.1);
  std::vector<int32_t> tok, tgt;
  batch(tok, tgt, mc.B, mc.T, cfg.vocab_size, seed + 7);
  cpu.set_lora(&host);
  cpu.set_dropout_step(3);
  const float cpu_loss = cpu.forward(tok.data(), tgt.data(), mc.B, mc.T);
  std::vector<float> cpu_logits(cpu.logits(), cpu.logits() + (size_t)mc.B * mc.T * cfg.vocab_size);
  cpu.backward();
  cpu.set_training(false);
  const float cpu_eval = cpu.forward(tok.data(), tgt.data(), mc.B, mc.T);

  fw::cuda::Blas blas;
  fw::cuda::CudaModel<T> gpu(cfg, blas);
  gpu.load_params(cpu.params.data());
  fw::cuda::CudaLora<T> lora(host);
  gpu.set_lora(&lora);
  gpu.set_dropout_step(3);
  const float gpu_loss = gpu.forward(tok.data(), tgt.data(), mc.B, mc.T);
  std::vector<float> gpu_logits = gpu.logits_host();
  gpu.backward();
  EXPECT_FALSE(gpu.has_grads()) << "LoRA training leaves the base model frozen";
  std::vector<float> g(lora.layout.numel);
  lora.download_grads(g.data());
  gpu.set_training(false);
  const float gpu_eval = gpu.forward(tok.data(), tgt.data(), mc.B, mc.T);

  const std::string tag = std::string(" ") + mc.name + " [" + type_name<T>() + ", lora]";
  expect_model_parity<T>("logits" + tag, gpu_logits, cpu_logits, false);
  expect_parity("loss" + tag, {gpu_loss}, {cpu_loss}, tol<T>());
  expect_parity("eval loss (no dropout)" + tag, {gpu_eval}, {cpu_eval}, tol<T>());
  // The adapter's gradients project dout onto r = 4 directions, so bf16
  // storage costs more there than on the base weights: a LoRA variant of
  // bf16_error_model.py (the CUDA model's rounding points, hs64, std 0.1, 16
  // seeds) puts the floor at up to 3.2e-2 norm-wise and 3.9e-2 element-wise.
  for (const fw::TensorInfo& t : host.layout.tensors) {
    const std::string what = "d " + t.name.substr(t.name.find("layers.")) + tag;
    if (std::is_same<T, float>::value)
      expect_model_parity<T>(what, slice(g, t), slice(host.grads, t));
    else
      expect_close(what, slice(g, t), slice(host.grads, t), 5e-2, 8e-2);
  }
  fw::cuda::CudaKVCache<T> cache(cfg, mc.B, mc.T);
  Dev<T> out((size_t)mc.B * cfg.vocab_size);
  EXPECT_THROW(gpu.forward_cached(tok.data(), mc.B, 1, cache, out.get()), fw::Error) << "decode needs a merged adapter";
}

TEST(cuda_model, lora_forward_backward_match_cpu) {
  FW_REQUIRE_GPU();
  uint64_t seed = 600;
  for (const ModelCase& mc : cases()) {
    check_lora<float>(mc, seed += 10);
    check_lora<bf16>(mc, seed += 10);
  }
}

// Activation recomputation: one layer's activations instead of L, and the
// same gradients bit for bit (the same kernels rerun on the same inputs),
// for the full model and for a LoRA adapter with dropout.
template <typename T>
void check_recompute(const ModelCase& mc, uint64_t seed) {
  const fw::Config cfg = fw::config_from_json(mc.cfg);
  fw::Model cpu = cpu_model<T>(cfg, seed);
  std::vector<int32_t> tok, tgt;
  batch(tok, tgt, mc.B, mc.T, cfg.vocab_size, seed + 7);
  fw::cuda::Blas blas;
  const std::string tag = std::string(" ") + mc.name + " [" + type_name<T>() + "]";
  auto grads = [&](bool recompute, size_t* act_bytes) {
    fw::cuda::CudaModel<T> gpu(cfg, blas);
    gpu.load_params(cpu.params.data());
    gpu.enable_grads();
    gpu.set_recompute(recompute);
    const float loss = gpu.forward(tok.data(), tgt.data(), mc.B, mc.T);
    gpu.backward();
    std::vector<float> g(gpu.layout.numel + 1);
    gpu.download_grads(g.data());
    g.back() = loss;
    *act_bytes = gpu.activation_bytes();
    return g;
  };
  size_t plain_bytes = 0, re_bytes = 0;
  const std::vector<float> plain = grads(false, &plain_bytes);
  const std::vector<float> re = grads(true, &re_bytes);
  expect_parity("recompute: loss and every gradient" + tag, re, plain, 0.0);
  if (cfg.num_hidden_layers > 1) {
    EXPECT_LT(re_bytes, plain_bytes) << tag;
  }

  fw::Lora host = random_lora<T>(cfg, seed + 1, 0.1);
  auto lora_grads = [&](bool recompute) {
    fw::cuda::CudaModel<T> gpu(cfg, blas);
    gpu.load_params(cpu.params.data());
    fw::cuda::CudaLora<T> lora(host);
    gpu.set_lora(&lora);
    gpu.set_dropout_step(5);
    gpu.set_recompute(recompute);
    gpu.forward(tok.data(), tgt.data(), mc.B, mc.T);
    gpu.backward();
    std::vector<float> g(lora.layout.numel);
    lora.download_grads(g.data());
    return g;
  };
  expect_parity("recompute: LoRA gradients with dropout" + tag, lora_grads(true), lora_grads(false), 0.0);
}

TEST(cuda_model, recompute_gives_the_same_gradients_with_less_memory) {
  FW_REQUIRE_GPU();
  uint64_t seed = 700;
  for (const ModelCase& mc : cases()) {
    check_recompute<float>(mc, seed += 10);
    check_recompute<bf16>(mc, seed += 10);
  }
}

// LoRA + distillation + recomputation, three AdamW steps against
// fw::Trainer with the same adapter, teacher and batches (fp32): loss,
// its parts, the gradient norm and the trained adapter agree, and the base
// model is untouched. bf16 and fp16 take the same path and must learn.
TEST(cuda_model, lora_distillation_trainer_matches_cpu) {
  FW_REQUIRE_GPU();
  const ModelCase mc = cases()[2];
  const fw::Config cfg = fw::config_from_json(mc.cfg);
  fw::Model cpu = cpu_model<float>(cfg, 61);
  fw::Model teacher = cpu_model<float>(cfg, 62);
  fw::Lora host = random_lora<float>(cfg, 63, 0.1);
  const fw::Lora start = host;
  fw::TrainConfig tc;
  tc.lr = 1e-2;
  tc.min_lr = 1e-3;
  tc.warmup_steps = 1;
  tc.total_steps = 10;
  tc.grad_accum = 2;
  tc.recompute = true;
  tc.distill_alpha = 0.4;
  tc.distill_temperature = 1.5;
  fw::cuda::Blas blas;
  fw::cuda::CudaModel<float> gpu(cfg, blas), gteacher(cfg, blas);
  gpu.load_params(cpu.params.data());
  gteacher.load_params(teacher.params.data());
  fw::cuda::CudaLora<float> glora(host);
  fw::Trainer ct(cpu, tc, &host, &teacher);
  fw::cuda::CudaTrainer<float> gt(gpu, tc, nullptr, false, 25u << 20, &glora, &gteacher);
  EXPECT_EQ(gt.trainable_layout().numel, host.layout.numel);
  std::vector<int32_t> tok, tgt;
  for (int s = 0; s < 3; s++) {
    batch(tok, tgt, 4, mc.T, cfg.vocab_size, 800 + s);
    fw::StepResult a = ct.step(tok.data(), tgt.data(), 4, mc.T);
    fw::StepResult b = gt.step(tok.data(), tgt.data(), 4, mc.T);
    const std::string at = " step " + std::to_string(s);
    expect_parity("lora+distill loss" + at, {(float)b.loss}, {(float)a.loss}, 1e-4);
    expect_parity("lora+distill ce" + at, {(float)gt.last_distill().ce}, {(float)ct.last_distill().ce}, 1e-4);
    expect_parity("lora+distill kl" + at, {(float)gt.last_distill().kl}, {(float)ct.last_distill().kl}, 1e-4);
    expect_parity("lora+distill grad norm" + at, {(float)b.grad_norm}, {(float)a.grad_norm}, 1e-4);
    EXPECT_EQ(a.tokens, b.tokens);
  }
  std::vector<float> w(host.layout.numel);
  gt.download_master(w.data());
  for (const fw::TensorInfo& t : host.layout.tensors)
    expect_close("trained " + t.name.substr(t.name.find("layers.")), slice(w, t), slice(host.params, t), 1e-4, 5e-4);
  EXPECT_NE(w, start.params) << "the adapter must have been trained";
  std::vector<float> base(gpu.layout.numel);
  gpu.download_params(base.data());
  EXPECT_EQ(base, cpu.params) << "LoRA training must leave the base model untouched";

  // 16-bit: the same run on one memorised batch lowers the mixed loss
  auto learns = [&](auto tag) {
    using T = decltype(tag);
    fw::cuda::CudaModel<T> m(cfg, blas), t(cfg, blas);
    m.load_params(cpu.params.data());
    t.load_params(teacher.params.data());
    fw::cuda::CudaLora<T> l(start);
    fw::TrainConfig c = tc;
    c.lr = 3e-2;
    c.total_steps = 40;
    fw::cuda::CudaTrainer<T> tr(m, c, nullptr, false, 25u << 20, &l, &t);
    tr.load_master(start.params.data());
    batch(tok, tgt, 4, mc.T, cfg.vocab_size, 900);
    double first = NAN, last = NAN;
    for (int s = 0; s < 60 && tr.step_count() < 25; s++) {
      fw::StepResult r = tr.step(tok.data(), tgt.data(), 4, mc.T);
      if (r.skipped) continue;
      ASSERT_TRUE(std::isfinite(r.loss));
      if (std::isnan(first)) first = r.loss;
      last = r.loss;
    }
    std::printf("%s lora+distill+recompute training: loss %.4f -> %.4f\n", type_name<T>(), first, last);
    EXPECT_EQ(tr.step_count(), 25);
    EXPECT_LT(last, first);
  };
  learns(bf16{});
  learns(f16{});
}

// INT8 weight-only decode: the same quantised weights as fw::InferEngine
// (quant.h, per output channel from the same fp32 values), so the GPU's
// prefill and decode logits follow the CPU engine's int8 logits to the
// storage type's tolerance; switching it off gives the full-precision path
// back.
template <typename T>
void check_int8_decode(const ModelCase& mc, uint64_t seed) {
  const fw::Config cfg = fw::config_from_json(mc.cfg);
  fw::Model cpu(cfg);
  fwcases::init_case_model(cpu, seed, 0.02);
  // non-zero projection biases (init_random leaves them zero), so a q8 path
  // that dropped or swapped one would show
  fw::Rng rb(seed + 2);
  for (const fw::TensorInfo& t : cpu.layout.tensors)
    if (t.name.find(".bias") != std::string::npos)
      for (size_t i = 0; i < t.numel; i++) cpu.params[t.offset + i] = (float)(0.02 * rb.normal());
  cpu.params = rounded<T>(cpu.params);
  const int Tt = mc.T, V = cfg.vocab_size;
  std::vector<int32_t> tok, tgt;
  batch(tok, tgt, 1, Tt, V, seed + 3);
  // CPU: every position's logits of one sequence, int8 weights
  fw::InferEngine eng(cpu, true);
  fw::InferCache cc;
  cc.init(cfg, 1, Tt);
  std::vector<int> seq(Tt, 0), pos(Tt);
  for (int t = 0; t < Tt; t++) pos[t] = t;
  std::vector<float> want((size_t)Tt * V);
  const int P = Tt / 2;
  eng.forward(tok.data(), seq.data(), pos.data(), P, cc, want.data());
  for (int t = P; t < Tt; t++) eng.forward(&tok[t], &seq[t], &pos[t], 1, cc, want.data() + (size_t)t * V);

  fw::cuda::Blas blas;
  fw::cuda::CudaModel<T> gpu(cfg, blas);
  gpu.load_params(cpu.params.data());
  gpu.set_int8_decode(true);
  EXPECT_TRUE(gpu.int8_decode());
  EXPECT_EQ(gpu.int8_bytes(), eng.weight_bytes()) << "the same matrices, quantised the same way";
  fw::cuda::CudaKVCache<T> cache(cfg, 1, Tt);
  Dev<T> out((size_t)Tt * V);
  gpu.forward_cached(tok.data(), 1, P, cache, out.get(), true);  // prefill, every position
  std::vector<float> got = out.f32();
  got.resize((size_t)Tt * V);
  for (int t = P; t < Tt; t++) {
    gpu.forward_cached(&tok[t], 1, 1, cache, out.get(), false);
    std::vector<float> step = out.f32();
    std::copy(step.begin(), step.begin() + V, got.begin() + (size_t)t * V);
  }
  const std::string tag = std::string(" ") + mc.name + " [" + type_name<T>() + "]";
  expect_model_parity<T>("int8 decode vs InferEngine int8" + tag, got, want, false, 1e-2);
  gpu.set_int8_decode(false);
  EXPECT_FALSE(gpu.int8_decode());
}

TEST(cuda_model, int8_decode_matches_the_cpu_infer_engine) {
  FW_REQUIRE_GPU();
  uint64_t seed = 600;
  for (const ModelCase& mc : cases()) {
    check_int8_decode<float>(mc, seed += 10);
    check_int8_decode<bf16>(mc, seed += 10);
  }
}

TEST(cuda_model, bad_tokens_are_invalid_argument) {
  FW_REQUIRE_GPU();
  const fw::Config cfg = fw::config_from_json(cases()[0].cfg);
  fw::cuda::Blas blas;
  fw::cuda::CudaModel<float> gpu(cfg, blas);
  std::vector<int32_t> tok = {1, 2, cfg.vocab_size}, tgt = {1, 2, 3};
  try {
    gpu.forward(tok.data(), tgt.data(), 1, 3);
    FAIL() << "an out-of-range token id was accepted";
  } catch (const fw::Error& e) {
    EXPECT_EQ(e.kind(), fw::ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("token id"), std::string::npos) << e.what();
  }
  tok = {1, 2, 3};
  tgt = {1, -5, 3};
  EXPECT_THROW(gpu.forward(tok.data(), tgt.data(), 1, 3), fw::Error);
  EXPECT_THROW(gpu.backward(), fw::Error);  // no forward with targets happened
}

TEST(cuda_model, op_profiler_times_every_op_and_changes_nothing) {
  FW_REQUIRE_GPU();
  const ModelCase mc = cases()[0];
  const fw::Config cfg = fw::config_from_json(mc.cfg);
  fw::Model cpu = cpu_model<float>(cfg, 47);
  fw::TrainConfig tc;
  tc.lr = 1e-3;
  tc.total_steps = 10;
  tc.grad_accum = 2;
  fw::cuda::Blas blas;
  fw::cuda::CudaModel<bf16> a(cfg, blas), b(cfg, blas);
  a.load_params(cpu.params.data());
  b.load_params(cpu.params.data());
  fw::cuda::CudaTrainer<bf16> ta(a, tc), tb(b, tc);
  fw::cuda::OpProfiler prof;
  b.set_profiler(&prof);
  std::vector<int32_t> tok, tgt;
  const int steps = 2;
  cudaEvent_t t0, t1;  // the profiled steps' whole GPU span, on the same stream
  ASSERT_EQ(cudaEventCreate(&t0), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&t1), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(t0, b.stream()), cudaSuccess);
  for (int s = 0; s < steps; s++) {
    batch(tok, tgt, 4, mc.T, cfg.vocab_size, 700 + s);
    fw::StepResult ra = ta.step(tok.data(), tgt.data(), 4, mc.T);
    fw::StepResult rb = tb.step(tok.data(), tgt.data(), 4, mc.T);
    EXPECT_EQ(ra.loss, rb.loss);  // bit for bit: marks are events, not work
    EXPECT_EQ(ra.grad_norm, rb.grad_norm);
  }
  ASSERT_EQ(cudaEventRecord(t1, b.stream()), cudaSuccess);
  ASSERT_EQ(cudaEventSynchronize(t1), cudaSuccess);
  float span = 0;
  ASSERT_EQ(cudaEventElapsedTime(&span, t0, t1), cudaSuccess);
  cudaEventDestroy(t0);
  cudaEventDestroy(t1);
  b.set_profiler(nullptr);
  const auto ops = prof.collect();
  std::map<std::string, double> ms(ops.begin(), ops.end());
  double total = 0;
  for (const auto& [name, t] : ops) total += t;
  // the ops' intervals do not overlap and lie inside the steps' span
  EXPECT_LE(total, span * 1.001 + 1e-3);
  for (const char* op : {"embedding", "rmsnorm", "gemm q/k/v", "rope", "attention", "gemm o", "gemm gate/up", "swiglu",
                         "gemm down", "gemm lm_head", "cross-entropy", "gemm down bwd", "attention bwd",
                         "gemm lm_head bwd", "embedding bwd", "grad norm", "adamw", "zero grads"}) {
    ASSERT_TRUE(ms.count(op)) << op;
    EXPECT_GT(ms[op], 0.0) << op << ": every op launches GPU work";
  }
  const int L = cfg.num_hidden_layers, micro = steps * tc.grad_accum;
  EXPECT_EQ(prof.count("attention"), micro * L);
  EXPECT_EQ(prof.count("attention bwd"), micro * L);
  EXPECT_EQ(prof.count("adamw"), steps);
  EXPECT_EQ(prof.count("rmsnorm"), micro * (2 * L + 1));
  // parameters are identical after profiled and unprofiled steps
  std::vector<float> wa(a.layout.numel), wb(b.layout.numel);
  a.download_params(wa.data());
  b.download_params(wb.data());
  EXPECT_EQ(wa, wb);

  // KV-cache decode: a prompt and three single-token steps on both models,
  // the same logits bit for bit, every decode op marked once per layer and step
  fw::cuda::OpProfiler dprof;
  b.set_profiler(&dprof);
  const int B = 2, P = 5, G = 3;
  fw::cuda::CudaKVCache<bf16> ca(cfg, B, P + G), cb(cfg, B, P + G);
  Dev<bf16> la((size_t)B * cfg.vocab_size), lb((size_t)B * cfg.vocab_size);
  batch(tok, tgt, B, P + G, cfg.vocab_size, 710);
  std::vector<int32_t> prompt((size_t)B * P), one((size_t)B);
  for (int i = 0; i < B; i++)
    for (int t = 0; t < P; t++) prompt[(size_t)i * P + t] = tok[(size_t)i * (P + G) + t];
  a.forward_cached(prompt.data(), B, P, ca, la.get());
  b.forward_cached(prompt.data(), B, P, cb, lb.get());
  for (int g = 0; g < G; g++) {
    for (int i = 0; i < B; i++) one[i] = tok[(size_t)i * (P + G) + P + g];
    a.forward_cached(one.data(), B, 1, ca, la.get());
    b.forward_cached(one.data(), B, 1, cb, lb.get());
    EXPECT_EQ(la.f32(), lb.f32()) << "decode step " << g << ": marks are events, not work";
  }
  b.set_profiler(nullptr);
  const auto dops = dprof.collect();
  std::map<std::string, double> dms(dops.begin(), dops.end());
  for (const char* op : {"decode embedding", "decode q/k/v", "decode attention", "decode o", "decode gate/up",
                         "decode down", "decode final norm + lm_head"}) {
    ASSERT_TRUE(dms.count(op)) << op;
    EXPECT_GT(dms[op], 0.0) << op;
  }
  EXPECT_TRUE(dms.count("decode position"));  // one tiny kernel: near the event timer's resolution
  EXPECT_EQ(dprof.count("decode attention"), (1 + G) * L);  // the prompt's pass and G steps
  EXPECT_EQ(dprof.count("decode down"), (1 + G) * L);
}
