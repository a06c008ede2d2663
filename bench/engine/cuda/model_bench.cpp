// model_bench.cpp: the engine's CUDA model loop (native/cuda/model_cuda.h) on
// the benchmark config of bench.py: training tokens/s, MFU and peak memory of
// CudaTrainer::step, and greedy KV-cache decode tokens/s at several batch
// sizes with the share of the HBM bound at batch 1. bench.py runs it
// (--model-bench) and puts the numbers in its "engine" column; the JSON keys
// are bench.py's (train_engine, decode1_engine, decode64_engine: tokens_per_s,
// step_ms / ms_per_token, mfu, peak_bytes, fraction_of_bound, ...). Built by
// native/tests/cuda/CMakeLists.txt as fw_cuda_model_bench (needs fw_cuda).
//
//   fw_cuda_model_bench [--config 124m|tiny] [--batch 8] [--seq 1024]
//       [--steps 20] [--warmup 3] [--precision bf16|fp16|fp32] [--tf32]
//       [--decode-batches 1,64] [--prompt 128] [--gen 128] [--graph]
//       [--peak-tflops 989] [--hbm-tbps 3.35] [--grad-clip 1.0] [--seed 1]
//       [--no-train] [--no-decode] [--profile N] [--json out.json]
//
// Training: random tokens and targets (B, T), warm-up steps, then `steps`
// full steps (forward, backward, global grad norm + clip, AdamW with fp32
// master weights in bf16 mode) timed with cudaEvents on the model's stream.
// FLOPs per token 6 N + 12 L T C (bench.py's count), MFU against
// --peak-tflops (dense bf16 tensor-core peak; 989 = H100 SXM).
//
// Decode: prefill `prompt` random tokens (forward_cached from the host, timed
// separately), then `gen` greedy steps, each forward_cached_device on the
// previous step's argmax (argmax_rows, decode.cuh) straight from device memory:
// no host copy and no synchronisation per token; the generated ids stay on the
// device, (gen + 1, B), and are checked once at the end. A complete untimed
// run first (allocations, cuBLAS heuristics), then the timed one. --graph
// additionally captures ONE decode step (CudaModel::capture_decode) as a
// CUDA graph and replays it `gen` times, as a server's decode loop would (the
// step reads its position from the cache's device-side length, so one graph
// serves every position): the difference to the plain loop is the launch
// overhead; the graph's last tokens are checked against the plain loop's. HBM bound at batch B: B * bandwidth / (parameter bytes + B * KV
// cache bytes read at the mean position prompt + gen / 2), bench.py's formula.
//
// --profile N: after the timed steps, N more steps with an OpProfiler
// attached (native/cuda/op_profiler.h): GPU milliseconds per step for each
// op family of forward, backward and the optimizer, largest first, as
// train_engine.profile in the JSON and as a table on stderr; the step time
// minus the GPU time of all ops is time the GPU waited for the host. With
// decode on, each decode batch also runs its `gen` plain steps once more with
// the profiler attached: GPU time per decode op and step, and for the
// projections the weight bytes read per second (decode<B>_engine.profile).
//
// Peak memory: cudaMemGetInfo (total - free) sampled after every phase
// (model built, parameters loaded, trainer built, first step, timed steps;
// per decode batch: cache allocated, warm-up run, timed run), its maximum
// minus the value sampled before the phase's model was built. It includes
// cuBLAS workspaces and allocation granularity (which torch's
// max_memory_allocated does not) and misses allocations made and freed within
// a phase; "accounted_bytes" is what the model reports it holds (parameters,
// gradients, activations, optimizer, KV cache) as a cross-check.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <utility>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "cuda_check.h"
#include "decode.cuh"
#include "launch.h"
#include "gemm_cublas.h"
#include "model.h"
#include "model_cuda.h"
#include "op_profiler.h"
#include "train.h"

namespace {

using bf16 = __nv_bfloat16;
using json = nlohmann::json;

struct Args {
  std::string config = "124m";
  int batch = 8, seq = 1024, steps = 20, warmup = 3;
  std::string precision = "bf16";
  bool tf32 = false;
  std::vector<int> decode_batches = {1, 64};
  int prompt = 128, gen = 128;
  bool graph = false;
  int profile = 0;  // steps run with an OpProfiler attached (0: none)
  double peak_tflops = 989, hbm_tbps = 3.35, grad_clip = 1.0;
  uint64_t seed = 1;
  bool train = true, decode = true;
  std::string json_path;
};

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "fw_cuda_model_bench: %s\n"
               "usage: fw_cuda_model_bench [--config 124m|tiny] [--batch B] [--seq T] [--steps N] [--warmup N]\n"
               "  [--precision bf16|fp16|fp32] [--tf32] [--decode-batches 1,64] [--prompt N] [--gen N] [--graph]\n"
               "  [--peak-tflops F] [--hbm-tbps F] [--grad-clip F] [--seed N] [--no-train] [--no-decode]\n"
               "  [--profile N] [--json PATH]\n",
               msg);
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; i++) {
    const std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value for " + k).c_str());
      return argv[++i];
    };
    if (k == "--config") a.config = val();
    else if (k == "--batch") a.batch = std::stoi(val());
    else if (k == "--seq") a.seq = std::stoi(val());
    else if (k == "--steps") a.steps = std::stoi(val());
    else if (k == "--warmup") a.warmup = std::stoi(val());
    else if (k == "--precision") a.precision = val();
    else if (k == "--tf32") a.tf32 = true;
    else if (k == "--decode-batches") {
      a.decode_batches.clear();
      std::stringstream ss(val());
      std::string part;
      while (std::getline(ss, part, ','))
        if (!part.empty()) a.decode_batches.push_back(std::stoi(part));
    } else if (k == "--prompt") a.prompt = std::stoi(val());
    else if (k == "--gen") a.gen = std::stoi(val());
    else if (k == "--graph") a.graph = true;
    else if (k == "--peak-tflops") a.peak_tflops = std::stod(val());
    else if (k == "--hbm-tbps") a.hbm_tbps = std::stod(val());
    else if (k == "--grad-clip") a.grad_clip = std::stod(val());
    else if (k == "--seed") a.seed = std::stoull(val());
    else if (k == "--no-train") a.train = false;
    else if (k == "--no-decode") a.decode = false;
    else if (k == "--profile") a.profile = std::stoi(val());
    else if (k == "--json") a.json_path = val();
    else if (k == "-h" || k == "--help") usage("help");
    else usage(("unknown argument " + k).c_str());
  }
  if (a.config != "124m" && a.config != "tiny") usage("--config is 124m or tiny");
  if (a.precision != "bf16" && a.precision != "fp16" && a.precision != "fp32")
    usage("--precision is bf16, fp16 or fp32");
  if (a.batch < 1 || a.seq < 1 || a.steps < 1 || a.warmup < 0 || a.prompt < 1 || a.gen < 1)
    usage("batch, seq, steps, prompt and gen must be >= 1, warmup >= 0");
  for (int b : a.decode_batches)
    if (b < 1) usage("decode batches must be >= 1");
  return a;
}

// bench.py's CONFIG / TINY (keep in sync).
fw::Config make_config(const Args& a) {
  fw::Config c;
  c.model_type = "llama";
  const bool tiny = a.config == "tiny";
  c.vocab_size = tiny ? 128 : 50304;
  c.hidden_size = tiny ? 64 : 768;
  c.intermediate_size = tiny ? 128 : 2048;
  c.num_hidden_layers = tiny ? 2 : 12;
  c.num_attention_heads = tiny ? 4 : 12;
  c.num_key_value_heads = tiny ? 2 : 12;
  c.head_dim = c.hidden_size / c.num_attention_heads;
  c.rope_theta = 10000.0;
  c.rms_norm_eps = 1e-5;
  c.max_position_embeddings = std::max(a.seq, a.prompt + a.gen) + 8;  // bench.py's max_pos
  c.tie_word_embeddings = true;
  c.validate();
  return c;
}

size_t device_used() {
  size_t free_b = 0, total_b = 0;
  FW_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  return total_b - free_b;
}

// Peak of cudaMemGetInfo's (total - free) over samples, relative to a baseline.
struct MemTracker {
  size_t base = 0, peak = 0;
  void begin() {
    FW_CUDA_CHECK(cudaDeviceSynchronize());
    base = peak = device_used();
  }
  void sample() {
    FW_CUDA_CHECK(cudaDeviceSynchronize());
    peak = std::max(peak, device_used());
  }
  size_t peak_bytes() const { return peak - base; }
};

struct Events {
  cudaEvent_t a = nullptr, b = nullptr, c = nullptr;
  Events() {
    FW_CUDA_CHECK(cudaEventCreate(&a));
    FW_CUDA_CHECK(cudaEventCreate(&b));
    FW_CUDA_CHECK(cudaEventCreate(&c));
  }
  ~Events() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaEventDestroy(c);
  }
  static float ms(cudaEvent_t x, cudaEvent_t y) {
    float v = 0;
    FW_CUDA_CHECK(cudaEventElapsedTime(&v, x, y));
    return v;
  }
};

std::string gib(double b) {
  char s[32];
  std::snprintf(s, sizeof s, "%.2f GiB", b / (1024.0 * 1024.0 * 1024.0));
  return s;
}

std::vector<int32_t> random_ids(size_t n, int V, uint64_t seed) {
  std::mt19937_64 r(seed);
  std::vector<int32_t> v(n);
  for (int32_t& x : v) x = (int32_t)(r() % (uint64_t)V);
  return v;
}

template <typename T>
json bench_train(const Args& a, const fw::Config& cfg, const std::vector<float>& host, cudaStream_t stream,
                 double flops_per_token) {
  const int B = a.batch, T_ = a.seq, V = cfg.vocab_size;
  MemTracker mem;
  mem.begin();
  fw::cuda::Blas blas;
  blas.allow_tf32 = a.tf32;
  fw::cuda::CudaModel<T> model(cfg, blas, stream);
  mem.sample();
  model.load_params(host.data());
  mem.sample();
  fw::TrainConfig tc;
  tc.lr = 3e-4;  // bench.py's AdamW: lr 3e-4, betas (0.9, 0.95), weight decay 0.1
  tc.min_lr = 3e-5;
  tc.warmup_steps = 0;
  tc.total_steps = a.warmup + a.steps + 1;
  tc.weight_decay = 0.1;
  tc.beta1 = 0.9;
  tc.beta2 = 0.95;
  tc.grad_clip = a.grad_clip;
  fw::cuda::CudaTrainer<T> tr(model, tc);
  mem.sample();

  const std::vector<int32_t> tokens = random_ids((size_t)B * T_, V, a.seed + 100);
  const std::vector<int32_t> targets = random_ids((size_t)B * T_, V, a.seed + 101);
  fw::StepResult r;
  double first_loss = NAN;
  for (int i = 0; i < a.warmup; i++) {
    r = tr.step(tokens.data(), targets.data(), B, T_);
    if (i == 0) first_loss = r.loss;
    mem.sample();
  }
  FW_CUDA_CHECK(cudaDeviceSynchronize());
  Events ev;
  int skipped = 0;
  const auto w0 = std::chrono::steady_clock::now();
  FW_CUDA_CHECK(cudaEventRecord(ev.a, stream));
  for (int i = 0; i < a.steps; i++) {
    r = tr.step(tokens.data(), targets.data(), B, T_);
    if (std::isnan(first_loss)) first_loss = r.loss;
    skipped += r.skipped;
  }
  FW_CUDA_CHECK(cudaEventRecord(ev.b, stream));
  FW_CUDA_CHECK(cudaEventSynchronize(ev.b));
  const double wall_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - w0).count() / a.steps;
  const double step_ms = Events::ms(ev.a, ev.b) / a.steps;
  mem.sample();

  const size_t accounted = 2 * model.layout.numel * sizeof(T) + model.activation_bytes() + tr.optimizer_bytes();
  const double tps = (double)B * T_ / (step_ms * 1e-3);
  json j = {{"tokens_per_s", tps},
            {"step_ms", step_ms},
            {"wall_step_ms", wall_ms},
            {"peak_bytes", mem.peak_bytes()},
            {"accounted_bytes", accounted},
            {"activation_bytes", model.activation_bytes()},
            {"optimizer_bytes", tr.optimizer_bytes()},
            {"loss", r.loss},
            {"first_loss", first_loss},
            {"grad_norm", r.grad_norm},
            {"skipped_steps", skipped},
            {"grad_clip", a.grad_clip}};
  j["mfu"] = a.peak_tflops > 0 ? json(tps * flops_per_token / (a.peak_tflops * 1e12)) : json(nullptr);
  if (a.profile > 0) {
    fw::cuda::OpProfiler prof;
    model.set_profiler(&prof);
    FW_CUDA_CHECK(cudaEventRecord(ev.a, stream));
    for (int i = 0; i < a.profile; i++) tr.step(tokens.data(), targets.data(), B, T_);
    FW_CUDA_CHECK(cudaEventRecord(ev.b, stream));
    FW_CUDA_CHECK(cudaEventSynchronize(ev.b));
    model.set_profiler(nullptr);
    const double prof_step_ms = Events::ms(ev.a, ev.b) / a.profile;
    double busy = 0;
    json ops = json::array();
    std::fprintf(stderr, "\nper-op GPU time, %d profiled steps (B %d, T %d), %.2f ms per step:\n", a.profile, B, T_,
                 prof_step_ms);
    for (const auto& [name, ms] : prof.collect()) {
      const double per = ms / a.profile;
      busy += per;
      ops.push_back({{"op", name}, {"ms_per_step", per}, {"share", per / prof_step_ms},
                     {"intervals_per_step", (double)prof.count(name) / a.profile}});
      std::fprintf(stderr, "  %-28s %8.3f ms  %5.1f%%\n", name.c_str(), per, 100.0 * per / prof_step_ms);
    }
    std::fprintf(stderr, "  %-28s %8.3f ms  %5.1f%%\n", "(GPU waiting for the host)", prof_step_ms - busy,
                 100.0 * (prof_step_ms - busy) / prof_step_ms);
    j["profile"] = {{"steps", a.profile}, {"step_ms", prof_step_ms}, {"gpu_ops_ms", busy},
                    {"host_wait_ms", prof_step_ms - busy}, {"ops", ops}};
  }
  return j;
}

template <typename T>
json bench_decode(const Args& a, const fw::Config& cfg, const std::vector<float>& host, cudaStream_t stream,
                  size_t n_params) {
  const int V = cfg.vocab_size, S = a.prompt + a.gen;
  MemTracker mem;
  mem.begin();
  fw::cuda::Blas blas;
  blas.allow_tf32 = a.tf32;
  fw::cuda::CudaModel<T> model(cfg, blas, stream);
  model.load_params(host.data());
  mem.sample();
  const size_t model_peak = mem.peak;

  json out = json::array();
  for (int Bd : a.decode_batches) {
    mem.peak = model_peak;  // this batch's peak: the model plus what this batch adds
    fw::cuda::CudaKVCache<T> cache(cfg, Bd, S);
    T* logits = nullptr;
    int32_t* seq = nullptr;  // (gen + 1, Bd): row 0 from the prefill, row i + 1 from step i
    FW_CUDA_CHECK(cudaMalloc(&logits, (size_t)Bd * V * sizeof(T)));
    FW_CUDA_CHECK(cudaMalloc(&seq, (size_t)(a.gen + 1) * Bd * sizeof(int32_t)));
    mem.sample();
    const std::vector<int32_t> prompt = random_ids((size_t)Bd * a.prompt, V, a.seed + 200 + Bd);
    Events ev;

    auto prefill = [&] {
      cache.reset();
      model.forward_cached(prompt.data(), Bd, a.prompt, cache, logits);
      fw::cuda::argmax_rows(seq, logits, Bd, V, stream);
    };
    auto steps = [&] {
      for (int i = 0; i < a.gen; i++) {
        model.forward_cached_device(seq + (size_t)i * Bd, Bd, 1, cache, logits);
        fw::cuda::argmax_rows(seq + (size_t)(i + 1) * Bd, logits, Bd, V, stream);
      }
    };
    auto run = [&](float* prefill_ms, float* gen_ms) {
      FW_CUDA_CHECK(cudaEventRecord(ev.a, stream));
      prefill();
      FW_CUDA_CHECK(cudaEventRecord(ev.b, stream));
      steps();
      FW_CUDA_CHECK(cudaEventRecord(ev.c, stream));
      FW_CUDA_CHECK(cudaEventSynchronize(ev.c));
      *prefill_ms = Events::ms(ev.a, ev.b);
      *gen_ms = Events::ms(ev.b, ev.c);
    };
    float pre_ms = 0, gen_ms = 0;
    run(&pre_ms, &gen_ms);  // warm-up: allocations, cuBLAS heuristics
    mem.sample();
    run(&pre_ms, &gen_ms);
    mem.sample();

    // The generated ids: in range, and the first sequence's start for the log.
    std::vector<int32_t> ids((size_t)(a.gen + 1) * Bd);
    FW_CUDA_CHECK(cudaMemcpy(ids.data(), seq, ids.size() * sizeof(int32_t), cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int32_t x : ids) bad += x < 0 || x >= V;
    std::string first;
    for (int i = 0; i < std::min(a.gen + 1, 8); i++) first += (i ? " " : "") + std::to_string(ids[(size_t)i * Bd]);
    if (bad) std::fprintf(stderr, "decode batch %d: %d generated ids out of [0, %d)\n", Bd, bad, V);

    // HBM bound: parameters once per step plus every sequence's KV cache at
    // the mean position (bench.py's formula; at batch 1 exactly its number).
    const double kv_per_seq = 2.0 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim *
                              (a.prompt + a.gen / 2.0) * sizeof(T);
    const double bytes_per_step = (double)n_params * sizeof(T) + Bd * kv_per_seq;
    const double bound = a.hbm_tbps > 0 ? Bd * a.hbm_tbps * 1e12 / bytes_per_step : 0;
    const double tps = (double)Bd * a.gen / (gen_ms * 1e-3);
    json d = {{"batch", Bd},
              {"tokens_per_s", tps},
              {"ms_per_token", gen_ms / a.gen},
              {"prefill_tokens_per_s", (double)Bd * a.prompt / (pre_ms * 1e-3)},
              {"prefill_ms", pre_ms},
              {"peak_bytes", mem.peak_bytes()},
              {"accounted_bytes", model.layout.numel * sizeof(T) + cache.bytes() + (size_t)Bd * V * sizeof(T)},
              {"kv_cache_bytes", cache.bytes()},
              {"bytes_per_step", bytes_per_step},
              {"bad_ids", bad},
              {"first_sequence", first}};
    if (bound > 0) {
      d["bound_tokens_per_s"] = bound;
      d["fraction_of_bound"] = tps / bound;
    }

    if (a.graph) {  // one decode step captured as a CUDA graph, replayed `gen` times
      // Timed with programmatic dependent launch (launch.h) on and off, side
      // by side; "graph_*" is the default setting's figure.
      const bool pdl_default = fw::cuda::programmatic_launch();
      auto time_graph = [&](bool pdl, double* tokens_per_s, int* mismatch) {
        fw::cuda::set_programmatic_launch(pdl);
        int32_t* tok = nullptr;  // (Bd): the step reads it and its argmax overwrites it
        FW_CUDA_CHECK(cudaMalloc(&tok, (size_t)Bd * sizeof(int32_t)));
        prefill();
        FW_CUDA_CHECK(cudaMemcpyAsync(tok, seq, (size_t)Bd * sizeof(int32_t), cudaMemcpyDeviceToDevice, stream));
        fw::cuda::CudaDecodeGraph step = model.capture_decode(tok, Bd, 1, cache, logits, [&](cudaStream_t st) {
          fw::cuda::argmax_rows(tok, logits, Bd, V, st);
        });
        float best = 1e30f;
        for (int rep = 0; rep < 3; rep++) {
          prefill();
          FW_CUDA_CHECK(cudaMemcpyAsync(tok, seq, (size_t)Bd * sizeof(int32_t), cudaMemcpyDeviceToDevice, stream));
          FW_CUDA_CHECK(cudaEventRecord(ev.a, stream));
          for (int i = 0; i < a.gen; i++) step.launch(cache, stream);
          FW_CUDA_CHECK(cudaEventRecord(ev.b, stream));
          FW_CUDA_CHECK(cudaEventSynchronize(ev.b));
          best = std::min(best, Events::ms(ev.a, ev.b));
        }
        // the graph's last token must be the plain loop's last token
        std::vector<int32_t> last((size_t)Bd);
        FW_CUDA_CHECK(cudaMemcpy(last.data(), tok, last.size() * sizeof(int32_t), cudaMemcpyDeviceToHost));
        *mismatch = 0;
        for (int b = 0; b < Bd; b++) *mismatch += last[b] != ids[(size_t)a.gen * Bd + b];
        cudaFree(tok);
        *tokens_per_s = (double)Bd * a.gen / (best * 1e-3);
      };
      try {
        double gtps = 0, off_tps = 0;
        int mismatch = 0, off_mismatch = 0;
        time_graph(false, &off_tps, &off_mismatch);
        time_graph(pdl_default, &gtps, &mismatch);
        d["graph_tokens_per_s"] = gtps;
        d["graph_ms_per_token"] = 1e3 * Bd / gtps;
        d["graph_programmatic_launch"] = pdl_default;
        d["graph_last_token_mismatches"] = mismatch + off_mismatch;
        d["graph_no_pdl_tokens_per_s"] = off_tps;
        if (mismatch + off_mismatch)
          std::fprintf(stderr, "decode batch %d: graph and plain loop disagree on %d sequences\n", Bd,
                       mismatch + off_mismatch);
        if (bound > 0) {
          d["graph_fraction_of_bound"] = gtps / bound;
          d["graph_no_pdl_fraction_of_bound"] = off_tps / bound;
        }
      } catch (const std::exception& e) {
        (void)cudaGetLastError();
        d["graph_error"] = e.what();
        std::fprintf(stderr, "decode batch %d: CUDA graph capture failed: %s\n", Bd, e.what());
      }
      fw::cuda::set_programmatic_launch(pdl_default);
    }
    if (a.profile > 0) {
      // GPU time per decode op and token: the plain steps again with an
      // OpProfiler attached (an event between ops, so a little slower than
      // the timed loop), and for the projections the weight bytes they read
      // over that time: how far each kernel is from the HBM bandwidth.
      fw::cuda::OpProfiler prof;
      prefill();
      model.set_profiler(&prof);
      steps();
      model.set_profiler(nullptr);
      FW_CUDA_CHECK(cudaStreamSynchronize(stream));
      const double tb = sizeof(T), C = cfg.hidden_size, I = cfg.intermediate_size, L = cfg.num_hidden_layers;
      const double QD = (double)cfg.num_attention_heads * cfg.head_dim,
                   KD = (double)cfg.num_key_value_heads * cfg.head_dim;
      const std::vector<std::pair<std::string, double>> weight_bytes = {
          {"decode q/k/v", L * (QD + 2 * KD) * C * tb}, {"decode o", L * QD * C * tb},
          {"decode gate/up", L * 2 * I * C * tb},        {"decode down", L * I * C * tb},
          {"decode final norm + lm_head", (double)V * C * tb}};
      std::fprintf(stderr, "\ndecode batch %d: GPU time per op and step (%d plain steps, profiled):\n", Bd, a.gen);
      json ops = json::array();
      double busy = 0;
      for (const auto& [name, ms] : prof.collect()) {
        const double per = ms / a.gen;
        busy += per;
        json op = {{"op", name}, {"ms_per_step", per}};
        double gbps = 0;
        for (const auto& [n, bytes] : weight_bytes)
          if (n == name && per > 0) gbps = bytes / (per * 1e-3) / 1e9;
        if (gbps > 0) op["weight_gb_per_s"] = gbps;
        ops.push_back(op);
        std::fprintf(stderr, "  %-30s %8.4f ms", name.c_str(), per);
        if (gbps > 0) std::fprintf(stderr, "  %7.0f GB/s of weights", gbps);
        std::fprintf(stderr, "\n");
      }
      std::fprintf(stderr, "  %-30s %8.4f ms (the timed loop: %.4f ms per step)\n", "sum", busy, gen_ms / a.gen);
      d["profile"] = {{"steps", a.gen}, {"gpu_ops_ms_per_step", busy}, {"ops", ops}};
    }
    cudaFree(logits);
    cudaFree(seq);
    out.push_back(d);
  }
  return out;
}

template <typename T>
json run(const Args& a) {
  const fw::Config cfg = make_config(a);
  cudaDeviceProp prop{};
  int dev = 0;
  FW_CUDA_CHECK(cudaGetDevice(&dev));
  FW_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  FW_CUDA_CHECK(cudaFree(nullptr));  // create the context before any baseline

  const auto t0 = std::chrono::steady_clock::now();
  std::vector<float> host;
  size_t n_params = 0;
  {
    fw::Model cpu(cfg);
    cpu.init_random(a.seed);  // HF init: normal(0, 0.02) matrices, norms 1 (bench.py's)
    n_params = cpu.layout.count_params();
    host = std::move(cpu.params);
  }
  const double init_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int L = cfg.num_hidden_layers, C = cfg.hidden_size;
  const double flops_per_token = 6.0 * (double)n_params + 12.0 * L * (double)a.seq * C;

  cudaStream_t stream = nullptr;
  FW_CUDA_CHECK(cudaStreamCreate(&stream));  // blocking: ordered with the legacy default stream
  json res = {{"device", prop.name},
              {"config", a.config},
              {"precision", a.precision},
              {"params", n_params},
              {"batch", a.batch},
              {"seq", a.seq},
              {"prompt", a.prompt},
              {"gen", a.gen},
              {"flops_per_token", flops_per_token},
              {"peak_tflops", a.peak_tflops},
              {"hbm_tbps", a.hbm_tbps},
              {"host_init_s", init_s},
              {"memory_method",
               "cudaMemGetInfo (total - free) sampled after each phase, max minus the value before the "
               "phase's model was built (includes cuBLAS workspace and allocation granularity)"}};
  if (a.train) res["train_engine"] = bench_train<T>(a, cfg, host, stream, flops_per_token);
  if (a.decode) {
    json ds = bench_decode<T>(a, cfg, host, stream, n_params);
    res["decode"] = ds;
    for (const json& d : ds) res["decode" + std::to_string(d["batch"].get<int>()) + "_engine"] = d;
  }
  FW_CUDA_CHECK(cudaStreamDestroy(stream));
  return res;
}

void print_table(const json& r) {
  auto num = [](const json& j, const char* k, const char* fmt, double scale = 1) -> std::string {
    if (!j.contains(k) || j[k].is_null()) return "-";
    char s[64];
    std::snprintf(s, sizeof s, fmt, j[k].get<double>() * scale);
    return s;
  };
  std::printf("\n# fw_cuda_model_bench on %s: %s %s, %.1fM params, B=%d T=%d, %.2f GFLOP/token\n",
              r["device"].get<std::string>().c_str(), r["config"].get<std::string>().c_str(),
              r["precision"].get<std::string>().c_str(), r["params"].get<double>() / 1e6, r["batch"].get<int>(),
              r["seq"].get<int>(), r["flops_per_token"].get<double>() / 1e9);
  std::printf("| %-40s | %14s |\n", "metric", "engine");
  std::printf("|%s|%s|\n", std::string(42, '-').c_str(), std::string(16, '-').c_str());
  auto row = [](const std::string& label, const std::string& v) { std::printf("| %-40s | %14s |\n", label.c_str(), v.c_str()); };
  if (r.contains("train_engine")) {
    const json& t = r["train_engine"];
    row("train tokens/s", num(t, "tokens_per_s", "%.0f"));
    row("train step ms (events / wall)", num(t, "step_ms", "%.1f") + " / " + num(t, "wall_step_ms", "%.1f"));
    row("train MFU", num(t, "mfu", "%.1f%%", 100));
    row("train peak memory", gib(t["peak_bytes"].get<double>()));
    row("train accounted memory", gib(t["accounted_bytes"].get<double>()));
    row("train loss first / last", num(t, "first_loss", "%.3f") + " / " + num(t, "loss", "%.3f"));
  }
  if (r.contains("decode")) {
    for (const json& d : r["decode"]) {
      const std::string b = "batch " + std::to_string(d["batch"].get<int>());
      row("decode tokens/s, " + b, num(d, "tokens_per_s", "%.0f"));
      row("decode " + b + ", share of BW bound", num(d, "fraction_of_bound", "%.1f%%", 100));
      if (d.contains("graph_tokens_per_s")) {
        row("decode tokens/s, " + b + ", CUDA graph", num(d, "graph_tokens_per_s", "%.0f"));
        row("decode " + b + ", CUDA graph, share of BW", num(d, "graph_fraction_of_bound", "%.1f%%", 100));
      }
      row("prefill tokens/s, " + b, num(d, "prefill_tokens_per_s", "%.0f"));
      row("decode peak memory, " + b, gib(d["peak_bytes"].get<double>()));
    }
  }
  std::printf("peak memory: %s\n", r["memory_method"].get<std::string>().c_str());
  if (r.contains("decode"))
    for (const json& d : r["decode"])
      std::printf("decode batch %d: first sequence %s ...%s\n", d["batch"].get<int>(),
                  d["first_sequence"].get<std::string>().c_str(),
                  d["bad_ids"].get<int>() ? "  (OUT-OF-RANGE IDS)" : "");
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    const json r = a.precision == "bf16"   ? run<bf16>(a)
                   : a.precision == "fp16" ? run<__half>(a)
                                           : run<float>(a);
    print_table(r);
    if (!a.json_path.empty()) {
      std::ofstream f(a.json_path);
      f << r.dump(2) << "\n";
      if (!f) throw std::runtime_error("cannot write " + a.json_path);
    }
    int bad = 0;
    if (r.contains("decode"))
      for (const json& d : r["decode"]) bad += d["bad_ids"].get<int>();
    return bad ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fw_cuda_model_bench: %s\n", e.what());
    return 1;
  }
}
