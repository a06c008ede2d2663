// cuda_trainer_dp_test.cpp: CudaTrainer's multi-rank paths on ONE GPU.
//
// NCCL refuses two ranks on one device, and run_gpu_checks.sh has one GPU,
// so cuda_collective_test can only run NCCL with one rank. This test runs
// two ranks as threads of this process, each with its own CudaModel on its
// own stream of the same GPU, joined by the in-process thread collective
// (tests/thread_collective.h) behind the host-staged NcclCollective
// (collective_staged.h). What it checks is the trainer's own multi-rank code,
// which a one-rank run never enters: the global token count, the gradient
// all-reduce handed over bucket by bucket from the last micro-batch's
// backward (on_grads_ready), ZeRO-1's reduce-scatter, sharded AdamW and norm
// and the all-gather of the updated parameters. Not NCCL's transport.
//
//  - fp32: two ranks of batch B reach the weights one rank reaches with
//    batch 2B (plain data parallel with small buckets, and ZeRO-1), with
//    gradient clipping through the sharded norm;
//  - bf16: ZeRO-1 and plain data parallel are the same computation, bit for
//    bit (no clipping: the norm is the one thing they sum differently), and
//    both follow the one-rank run's loss;
//  - fp16 with loss scaling: a scale that overflows skips the step on every
//    rank together (each ZeRO-1 rank sees only its shard), and ZeRO-1 still
//    equals plain data parallel bit for bit.
#include <cmath>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "../io_testutil.h"
#include "../model_cases.h"
#include "../thread_collective.h"
#include "collective_staged.h"
#include "cuda_test_util.h"
#include "model.h"
#include "model_cuda.h"
#include "train.h"

using namespace fwcuda_test;

namespace {

constexpr int kB = 4, kT = 16, kSteps = 3, kWorld = 2;

struct RunOut {
  std::vector<float> params;  // the working copy (bf16 values widened) after the steps
  std::vector<float> master;  // fp32 master (16-bit modes; = params in fp32)
  std::vector<double> losses;  // of the applied steps
  std::vector<int64_t> tokens;
  int skipped = 0;            // fp16: steps skipped on overflow
  int buckets = 0;            // all-reduce buckets handed over during the last step's backward
  size_t opt_bytes = 0;
  std::string error;
};

// Step s's batch of world * kB rows; rank r trains on rows [r kB, (r+1) kB).
// Ignored targets only in the second half, so a rank that normalised its loss
// by its own token count instead of the global one would be caught.
void step_batch(int s, int V, std::vector<int32_t>& tok, std::vector<int32_t>& tgt) {
  fwcases::batch(tok, tgt, kWorld * kB, kT, V, 900 + (uint64_t)s);
  fw::Rng r(950 + (uint64_t)s);
  for (int i = 0; i < 9; i++) tgt[(size_t)kB * kT + (size_t)(r.next_u64() % (kB * kT))] = fw::kIgnoreIndex;
}

// `world` ranks (threads) train kSteps steps from the same weights; world 1
// trains on the whole batch with no collective.
// fp16: the loss scale starts at initial_scale (0: the scaler's default),
// and overflowing steps are retried on the same batch, as the worker's next
// attempt would take a new one; every rank must decide alike.
template <typename T>
std::vector<RunOut> train(const fw::Config& cfg, const fw::TrainConfig& tc, const std::vector<float>& init, int world,
                          bool zero1, size_t bucket_bytes, float initial_scale = 0) {
  std::vector<RunOut> out(world);
  fwtest::ThreadGroup group(world, std::chrono::seconds(120));
  auto rank_main = [&](int rank) {
    RunOut& o = out[rank];
    try {
      FW_CUDA_CHECK(cudaSetDevice(0));
      cudaStream_t st;
      FW_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
      struct StreamGuard {
        cudaStream_t s;
        ~StreamGuard() { cudaStreamDestroy(s); }
      } stream_guard{st};
      {
        fwtest::ThreadCollective host(group, rank);
        std::unique_ptr<fw::cuda::NcclCollective> coll = fw::cuda::make_staged_collective(host);
        fw::cuda::Blas blas;
        fw::cuda::CudaModel<T> m(cfg, blas, st);
        m.load_params(init.data());
        fw::cuda::CudaTrainer<T> tr(m, tc, world > 1 ? coll.get() : nullptr, zero1, bucket_bytes);
        tr.load_master(init.data());
        if (initial_scale > 0) tr.loss_scaler().scale = initial_scale;
        o.opt_bytes = tr.optimizer_bytes();
        std::vector<int32_t> tok, tgt;
        for (int attempt = 0; attempt < 40 && tr.step_count() < kSteps; attempt++) {
          const int s = (int)tr.step_count();
          step_batch(s, cfg.vocab_size, tok, tgt);
          const int rows = world > 1 ? kB : kWorld * kB;
          const size_t off = world > 1 ? (size_t)rank * kB * kT : 0;
          fw::StepResult r = tr.step(tok.data() + off, tgt.data() + off, rows, kT);
          if (r.skipped) {
            o.skipped++;
            continue;
          }
          o.losses.push_back(r.loss);
          o.tokens.push_back(r.tokens);
        }
        o.buckets = tr.last_overlapped_buckets();
        o.params.resize(m.layout.numel);
        o.master.resize(m.layout.numel);
        m.download_params(o.params.data());
        tr.download_master(o.master.data());
      }
    } catch (const std::exception& e) {
      o.error = e.what();
    }
  };
  std::vector<std::thread> ts;
  for (int r = 0; r < world; r++) ts.emplace_back(rank_main, r);
  for (auto& t : ts) t.join();
  for (int r = 0; r < world; r++) EXPECT_EQ(out[r].error, "") << "rank " << r;
  return out;
}

fw::Config dp_config() { return fw::config_from_json(fwcases::cases()[2].cfg); }  // qwen2, GQA, q/k/v biases

std::vector<float> init_params(const fw::Config& cfg) {
  fw::Model m(cfg);
  fwcases::init_case_model(m, 61, 0.1);
  return m.params;
}

std::vector<float> slice(const std::vector<float>& all, const fw::TensorInfo& t) {
  return std::vector<float>(all.begin() + t.offset, all.begin() + t.offset + t.numel);
}

fw::TrainConfig dp_train_config(double clip) {
  fw::TrainConfig tc;
  tc.lr = 1e-2;
  tc.min_lr = 1e-3;
  tc.warmup_steps = 1;
  tc.total_steps = 10;
  tc.grad_accum = 2;
  tc.grad_clip = clip;
  return tc;
}

TEST(cuda_trainer_dp, two_ranks_match_one_rank_fp32_plain_and_zero1) {
  FW_REQUIRE_GPU();
  const fw::Config cfg = dp_config();
  const std::vector<float> init = init_params(cfg);
  const fw::TrainConfig tc = dp_train_config(0.5);  // clipping through the (sharded) global norm
  const fw::ParamLayout layout = fw::llama_param_layout(cfg);
  const std::vector<RunOut> ref = train<float>(cfg, tc, init, 1, false, 25u << 20);
  ASSERT_EQ(ref[0].error, "");
  for (const bool zero1 : {false, true}) {
    const std::string tag = zero1 ? " (ZeRO-1)" : " (all-reduce, buckets of at least 4 KiB)";
    const std::vector<RunOut> dp = train<float>(cfg, tc, init, kWorld, zero1, 4096);
    if (!dp[0].error.empty() || !dp[1].error.empty()) continue;
    EXPECT_EQ(dp[0].params, dp[1].params) << "ranks diverged" << tag;
    EXPECT_EQ(dp[0].losses, dp[1].losses) << "ranks report different global losses" << tag;
    for (int s = 0; s < kSteps; s++) {
      EXPECT_EQ(dp[0].tokens[s], ref[0].tokens[s]) << "global token count, step " << s << tag;
      expect_parity("loss step " + std::to_string(s) + tag, {(float)dp[0].losses[s]}, {(float)ref[0].losses[s]},
                    1e-5);
    }
    if (zero1) {
      // each rank keeps AdamW moments for its half only
      EXPECT_LE(dp[0].opt_bytes, ref[0].opt_bytes / 2 + 2 * 1024 * sizeof(float)) << tag;
      EXPECT_EQ(dp[0].buckets, 0) << "ZeRO-1 reduce-scatters after backward" << tag;
    } else {
      EXPECT_GT(dp[0].buckets, 1) << "the gradient all-reduce should go out in several buckets during backward";
    }
    // AdamW divides by sqrt(v): the tensor-wise norm is the measure (as in
    // cuda_model_test's trainer_steps_match_cpu_fp32). The attention key
    // bias is the exception: softmax ignores a shift of every key alike, so
    // its exact gradient nearly cancels (docs/cuda.md, "bf16 parity"), and
    // AdamW's normalised step turns the two runs' different fp32 summation
    // orders into a relative difference above 1e-4 (1.5e-4 to 1.9e-4 on the
    // emulated backend).
    for (const fw::TensorInfo& t : layout.tensors) {
      const double bound = t.name.find("k_proj.bias") != std::string::npos ? 1e-3 : 1e-4;
      EXPECT_LE(fwtest::rel_l2(slice(dp[0].params, t), slice(ref[0].params, t)), bound) << "trained " << t.name << tag;
    }
    std::printf("OK       fp32 two ranks%s vs one rank of the whole batch: %d buckets, losses %.6f %.6f %.6f\n",
                tag.c_str(), dp[0].buckets, dp[0].losses[0], dp[0].losses[1], dp[0].losses[2]);
  }
}

TEST(cuda_trainer_dp, bf16_zero1_equals_plain_data_parallel_bit_for_bit) {
  FW_REQUIRE_GPU();
  const fw::Config cfg = dp_config();
  const std::vector<float> init = init_params(cfg);
  const fw::TrainConfig tc = dp_train_config(0.0);
  const std::vector<RunOut> plain = train<bf16>(cfg, tc, init, kWorld, false, 4096);
  const std::vector<RunOut> zero1 = train<bf16>(cfg, tc, init, kWorld, true, 4096);
  const std::vector<RunOut> one = train<bf16>(cfg, tc, init, 1, false, 25u << 20);
  for (const auto* run : {&plain, &zero1, &one})
    for (const RunOut& o : *run) ASSERT_EQ(o.error, "");
  for (int r = 0; r < kWorld; r++) {
    EXPECT_EQ(zero1[r].params, plain[r].params) << "rank " << r << ": ZeRO-1 working copy != plain";
    EXPECT_EQ(zero1[r].losses, plain[r].losses) << "rank " << r;
  }
  EXPECT_EQ(plain[0].params, plain[1].params) << "ranks diverged";
  // The master: each ZeRO-1 rank's own shard is current, and equals plain's.
  // (shard_range: rank r owns [r count, (r+1) count) of the padded buffer)
  const size_t n = plain[0].master.size(), count = (n + kWorld - 1) / kWorld;
  for (int r = 0; r < kWorld; r++) {
    const size_t lo = r * count, hi = std::min(n, (r + 1) * count);
    const std::vector<float> a(zero1[r].master.begin() + lo, zero1[r].master.begin() + hi),
        b(plain[r].master.begin() + lo, plain[r].master.begin() + hi);
    EXPECT_EQ(a, b) << "rank " << r << "'s master shard";
  }
  // and the two-rank runs follow the one-rank run on the whole batch (bf16
  // rounds the micro-batches' gradients at different places, so not exactly)
  for (int s = 0; s < kSteps; s++)
    expect_parity("bf16 two ranks vs one, loss step " + std::to_string(s), {(float)plain[0].losses[s]},
                  {(float)one[0].losses[s]}, 2e-2);
  std::printf("OK       bf16 ZeRO-1 == all-reduce over two ranks, bit for bit; losses %.5f %.5f %.5f (one rank %.5f "
              "%.5f %.5f)\n",
              plain[0].losses[0], plain[0].losses[1], plain[0].losses[2], one[0].losses[0], one[0].losses[1],
              one[0].losses[2]);
}

TEST(cuda_trainer_dp, fp16_overflow_skips_on_every_rank_and_zero1_equals_plain) {
  FW_REQUIRE_GPU();
  const fw::Config cfg = dp_config();
  const std::vector<float> init = init_params(cfg);
  const fw::TrainConfig tc = dp_train_config(0.0);
  const float scale = 1u << 24;  // dlogits up to scale / (global tokens) > 65504: the first step overflows
  const std::vector<RunOut> plain = train<f16>(cfg, tc, init, kWorld, false, 4096, scale);
  const std::vector<RunOut> zero1 = train<f16>(cfg, tc, init, kWorld, true, 4096, scale);
  for (const auto* run : {&plain, &zero1})
    for (const RunOut& o : *run) ASSERT_EQ(o.error, "");
  EXPECT_GE(plain[0].skipped, 1) << "a scale of 2^24 should overflow fp16 at first";
  for (int r = 0; r < kWorld; r++) {
    EXPECT_EQ(plain[r].skipped, plain[0].skipped) << "rank " << r << " decided alone";
    EXPECT_EQ(zero1[r].skipped, plain[0].skipped) << "ZeRO-1 rank " << r << " (its shard only) decided differently";
    ASSERT_EQ(plain[r].losses.size(), (size_t)kSteps);
    EXPECT_EQ(zero1[r].params, plain[r].params) << "rank " << r << ": ZeRO-1 fp16 working copy != plain";
    EXPECT_EQ(zero1[r].losses, plain[r].losses) << "rank " << r;
  }
  EXPECT_EQ(plain[0].params, plain[1].params) << "ranks diverged";
  std::printf("OK       fp16 over two ranks: %d step(s) skipped on every rank, ZeRO-1 == all-reduce bit for bit\n",
              plain[0].skipped);
}

}  // namespace
