// cuda_worker_test.cpp: fw_worker with "device": "cuda" end to end, as the
// trainer runs it: the same tiny run on the GPU and on the CPU, a bf16 run,
// SIGTERM -> checkpoint -> resume on the GPU (bit-identical to an
// uninterrupted GPU run), a GPU checkpoint resumed on the CPU, a LoRA run
// with distillation and recomputation (against the CPU's, and resumed), and
// two ZeRO-1 ranks sharing the GPU over Gloo (FW_CUDA_COLLECTIVE=gloo).
// The binary comes from FW_WORKER_BIN (set by CMake); one GPU is enough.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "../collective_test_store.h"
#include "../io_testutil.h"
#include "../worker_ranks.h"
#include "../worker_testutil.h"
#include "cuda_test_util.h"
#include "fileio.h"
#include "hf_io.h"
#include "lora.h"
#include "model.h"

using json = nlohmann::json;
using fwtest::base_spec;
using fwtest::rel_l2;
using fwtest::run_worker;
using fwtest::TempDir;
using fwtest::WorkerResult;
using fwtest::write_shards;
using fwtest::write_spec;

namespace {

uint32_t f32_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

void copy_tree(const std::string& from, const std::string& to) {
  fw::make_dirs(to);
  for (const std::string& name : fw::list_dir(from)) {
    const std::string a = fw::path_join(from, name), b = fw::path_join(to, name);
    if (fw::is_directory(a))
      copy_tree(a, b);
    else
      fwtest::write_bytes(b, fwtest::read_bytes(a));
  }
}

json on_gpu(json spec, const char* precision) {
  spec["device"] = "cuda";
  spec["precision"] = precision;
  return spec;
}

std::string last_event(const WorkerResult& r) { return r.events.empty() ? "" : r.events.back().dump(); }

// The same run on the CPU (out-cpu) and on the GPU in `precision` (out-gpu).
std::pair<WorkerResult, WorkerResult> cpu_and_gpu_runs(const TempDir& d, int steps, const char* precision) {
  WorkerResult cpu = run_worker(write_spec(d, "cpu.json", base_spec(d, "cpu", steps)));
  EXPECT_EQ(cpu.code, 0) << last_event(cpu);
  WorkerResult gpu = run_worker(write_spec(d, "gpu.json", on_gpu(base_spec(d, "gpu", steps), precision)));
  EXPECT_EQ(gpu.code, 0) << last_event(gpu);
  return {cpu, gpu};
}

}  // namespace

TEST(cuda_worker, fp32_run_matches_the_cpu_run) {
  FW_REQUIRE_GPU();
  TempDir d;
  write_shards(d);
  const auto [cpu, gpu] = cpu_and_gpu_runs(d, 12, "fp32");
  ASSERT_FALSE(cpu.of("completed").empty() || gpu.of("completed").empty());
  const json started = gpu.of("started")[0];
  EXPECT_EQ(started["device"], "cuda");
  EXPECT_EQ(started["precision"], "fp32");
  EXPECT_TRUE(started.contains("gpu"));
  EXPECT_EQ(started["collective"], "local");

  // every step's loss and gradient norm, then the final weights
  auto cs = cpu.of("step"), gs = gpu.of("step");
  ASSERT_EQ(cs.size(), gs.size());
  for (size_t i = 0; i < cs.size(); i++) {
    const double lc = cs[i]["loss"].get<double>(), lg = gs[i]["loss"].get<double>();
    EXPECT_NEAR(lg, lc, 1e-4 * std::fabs(lc)) << "step " << i + 1;
    const double nc = cs[i]["grad_norm"].get<double>(), ng = gs[i]["grad_norm"].get<double>();
    EXPECT_NEAR(ng, nc, 1e-3 * nc) << "step " << i + 1;
  }
  auto mc = fw::model_load_hf(d / "out-cpu"), mg = fw::model_load_hf(d / "out-gpu");
  EXPECT_LT(rel_l2(mg->params, mc->params), 1e-4);
  EXPECT_NEAR(gpu.of("completed")[0]["val_loss"].get<double>(), cpu.of("completed")[0]["val_loss"].get<double>(), 1e-3);
}

TEST(cuda_worker, bf16_run_trains_and_writes_fp32_master_weights) {
  FW_REQUIRE_GPU();
  TempDir d;
  write_shards(d);
  const int steps = 20;
  const auto [cpu, gpu] = cpu_and_gpu_runs(d, steps, "bf16");
  ASSERT_FALSE(cpu.of("completed").empty() || gpu.of("completed").empty());
  EXPECT_EQ(gpu.of("started")[0]["precision"], "bf16");
  auto gs = gpu.of("step");
  ASSERT_EQ(gs.size(), (size_t)steps);
  // one batch per step is noisy (fp32 on the cpu: 4.11 -> 3.15, +-0.15 step to step)
  EXPECT_LT(gs.back()["loss"].get<double>(), 0.85 * gs.front()["loss"].get<double>());
  // mixed precision follows the fp32 run closely, not exactly
  const double vc = cpu.of("completed")[0]["val_loss"].get<double>();
  const double vg = gpu.of("completed")[0]["val_loss"].get<double>();
  EXPECT_NEAR(vg, vc, 0.05 * vc);
  // the output is the fp32 master, not its bf16 working copy: values off the bf16 grid exist
  auto mg = fw::model_load_hf(d / "out-gpu");
  size_t off_grid = 0;
  for (float x : mg->params) off_grid += (f32_bits(x) & 0xffffu) != 0;
  EXPECT_GT(off_grid, mg->params.size() / 2);
}

TEST(cuda_worker, sigterm_checkpoint_resumes_bit_identically_and_moves_to_the_cpu) {
  FW_REQUIRE_GPU();
  TempDir d;
  write_shards(d);
  const int steps = 16;
  WorkerResult straight = run_worker(write_spec(d, "s.json", on_gpu(base_spec(d, "s", steps), "bf16")));
  ASSERT_EQ(straight.code, 0);

  const std::string spec = write_spec(d, "i.json", on_gpu(base_spec(d, "i", steps), "bf16"));
  WorkerResult cut = fwtest::run_worker_until_step(spec, 3);
  ASSERT_EQ(cut.code, 143);
  auto ck = cut.of("checkpoint");
  ASSERT_FALSE(ck.empty());
  EXPECT_EQ(ck.back()["reason"], "signal");
  const int64_t stopped_at = ck.back()["step"].get<int64_t>();

  // a copy of the checkpoint folder for the cpu resume below
  json cpu_spec = base_spec(d, "i", steps);
  cpu_spec["checkpoint"]["dir"] = d / "ck-cpu";
  cpu_spec["output_dir"] = d / "out-cpu";
  copy_tree(d / "ck-i", d / "ck-cpu");

  WorkerResult resumed = run_worker(spec);
  ASSERT_EQ(resumed.code, 0) << last_event(resumed);
  EXPECT_EQ(resumed.of("started")[0]["step"], stopped_at);
  EXPECT_EQ(fwtest::read_bytes(d / "out-i/model.safetensors"), fwtest::read_bytes(d / "out-s/model.safetensors"));

  // the GPU's checkpoint is an ordinary fp32 checkpoint: the cpu engine resumes it
  WorkerResult on_cpu = run_worker(write_spec(d, "c.json", cpu_spec));
  ASSERT_EQ(on_cpu.code, 0) << last_event(on_cpu);
  EXPECT_EQ(on_cpu.of("started")[0]["step"], stopped_at);
  EXPECT_EQ(on_cpu.of("started")[0]["device"], "cpu");
  EXPECT_EQ(on_cpu.of("completed")[0]["step"], steps);
}

// fp16: loss scaling on, and the scale is part of what a checkpoint resumes.
TEST(cuda_worker, fp16_run_trains_and_resumes_bit_identically) {
  FW_REQUIRE_GPU();
  TempDir d;
  write_shards(d);
  const int steps = 16;
  WorkerResult straight = run_worker(write_spec(d, "s.json", on_gpu(base_spec(d, "s", steps), "fp16")));
  ASSERT_EQ(straight.code, 0) << last_event(straight);
  EXPECT_EQ(straight.of("started")[0]["precision"], "fp16");
  auto ss = straight.of("step");
  ASSERT_FALSE(ss.empty());
  EXPECT_LT(ss.back()["loss"].get<double>(), ss.front()["loss"].get<double>());
  const std::string spec = write_spec(d, "i.json", on_gpu(base_spec(d, "i", steps), "fp16"));
  WorkerResult cut = fwtest::run_worker_until_step(spec, 3);
  ASSERT_EQ(cut.code, 143);
  const std::string ckdir = cut.of("checkpoint").back()["path"].get<std::string>();
  const json state = json::parse(fwtest::read_bytes(fw::path_join(ckdir, "state.json")));
  EXPECT_GT(state["extra"]["loss_scale"]["scale"].get<double>(), 0.0);
  WorkerResult resumed = run_worker(spec);
  ASSERT_EQ(resumed.code, 0) << last_event(resumed);
  EXPECT_EQ(fwtest::read_bytes(d / "out-i/model.safetensors"), fwtest::read_bytes(d / "out-s/model.safetensors"));
  // The scaler's state went through the checkpoint: the last checkpoints of
  // the two runs hold the same scale and the same count of good steps (a
  // resume that dropped it would restart good_steps at 0).
  ASSERT_FALSE(straight.of("checkpoint").empty());
  ASSERT_FALSE(resumed.of("checkpoint").empty());
  auto final_scaler = [](const WorkerResult& r) {
    const std::string dir = r.of("checkpoint").back()["path"].get<std::string>();
    return json::parse(fwtest::read_bytes(fw::path_join(dir, "state.json")))["extra"]["loss_scale"];
  };
  EXPECT_EQ(straight.of("checkpoint").back()["step"], resumed.of("checkpoint").back()["step"]);
  EXPECT_EQ(final_scaler(resumed), final_scaler(straight));
  EXPECT_GT(final_scaler(straight)["good_steps"].get<int>(), 0);
}

TEST(cuda_worker, a_rank_beyond_the_visible_gpus_is_refused) {
  FW_REQUIRE_GPU();
  TempDir d;
  write_shards(d);
  int n = 0;
  ASSERT_EQ(cudaGetDeviceCount(&n), cudaSuccess);
  setenv("LOCAL_RANK", std::to_string(n).c_str(), 1);
  WorkerResult r = run_worker(write_spec(d, "x.json", on_gpu(base_spec(d, "x", 2), "bf16")));
  unsetenv("LOCAL_RANK");
  EXPECT_EQ(r.code, 2);
  ASSERT_FALSE(r.of("error").empty());
  EXPECT_NE(r.of("error")[0]["message"].get<std::string>().find("CUDA device(s) are visible"), std::string::npos);
}

// LoRA (with dropout) + distillation + recomputation: the GPU's fp32 run
// follows the CPU's step by step and writes the same adapter; a bf16 run cut
// by SIGTERM resumes from its checkpoint (the adapter's tensors) to the same
// adapter bytes as an uninterrupted one.
TEST(cuda_worker, lora_distillation_run_matches_the_cpu_and_resumes) {
  FW_REQUIRE_GPU();
  TempDir d;
  write_shards(d);
  const fw::Model base = fwtest::write_base_and_teacher(d);
  auto spec_for = [&](const std::string& tag, int steps) {
    json spec = base_spec(d, tag, steps);
    spec["model"] = {{"path", d / "base"}};
    spec["lora"] = {{"r", 4}, {"alpha", 8}, {"dropout", 0.05}, {"target_modules", {"q_proj", "v_proj", "down_proj"}},
                    {"merge", true}};
    spec["distill"] = {{"teacher", d / "teacher"}, {"alpha", 0.5}, {"temperature", 2.0}};
    spec["train"]["recompute"] = true;
    return spec;
  };
  WorkerResult cpu = run_worker(write_spec(d, "cpu.json", spec_for("cpu", 8)));
  ASSERT_EQ(cpu.code, 0) << last_event(cpu);
  WorkerResult gpu = run_worker(write_spec(d, "gpu.json", on_gpu(spec_for("gpu", 8), "fp32")));
  ASSERT_EQ(gpu.code, 0) << last_event(gpu);
  EXPECT_EQ(gpu.of("started")[0]["trainable_params"], cpu.of("started")[0]["trainable_params"]);
  auto cs = cpu.of("step"), gs = gpu.of("step");
  ASSERT_EQ(cs.size(), gs.size());
  for (size_t i = 0; i < cs.size(); i++) {
    for (const char* k : {"loss", "ce", "kl"}) {
      const double c = cs[i][k].get<double>(), g = gs[i][k].get<double>();
      EXPECT_NEAR(g, c, 1e-4 * std::fabs(c) + 1e-7) << k << " at step " << i + 1;
    }
  }
  auto ac = fw::adapter_load(d / "out-cpu", base.cfg), ag = fw::adapter_load(d / "out-gpu", base.cfg);
  EXPECT_LT(rel_l2(ag->params, ac->params), 1e-4);
  auto merged = fw::model_load_hf(d / "out-gpu/merged");
  EXPECT_NE(merged->params, base.params);

  const int steps = 10;
  WorkerResult straight = run_worker(write_spec(d, "s.json", on_gpu(spec_for("s", steps), "bf16")));
  ASSERT_EQ(straight.code, 0) << last_event(straight);
  const std::string spec = write_spec(d, "i.json", on_gpu(spec_for("i", steps), "bf16"));
  WorkerResult cut = fwtest::run_worker_until_step(spec, 3);
  ASSERT_EQ(cut.code, 143);
  WorkerResult resumed = run_worker(spec);
  ASSERT_EQ(resumed.code, 0) << last_event(resumed);
  EXPECT_GT(resumed.of("started")[0]["step"].get<int64_t>(), 0);
  EXPECT_EQ(fwtest::read_bytes(d / "out-i/adapter_model.safetensors"),
            fwtest::read_bytes(d / "out-s/adapter_model.safetensors"));
}

// train.zero1 on one rank: the shard is the whole buffer, so the run must be
// bit-identical to the plain one (the ZeRO-1 reduce-scatter / AdamW-on-shard /
// all-gather step on one rank). The cross-rank gather of the shards for
// checkpoints (gather_state's sum) needs one GPU per rank to run at all.
TEST(cuda_worker, zero1_run_on_one_rank_equals_the_plain_run) {
  FW_REQUIRE_GPU();
  TempDir d;
  write_shards(d);
  const int steps = 8;
  WorkerResult plain = run_worker(write_spec(d, "p.json", on_gpu(base_spec(d, "p", steps), "bf16")));
  ASSERT_EQ(plain.code, 0) << last_event(plain);
  json z = on_gpu(base_spec(d, "z", steps), "bf16");
  z["train"]["zero1"] = true;
  WorkerResult zero1 = run_worker(write_spec(d, "z.json", z));
  ASSERT_EQ(zero1.code, 0) << last_event(zero1);
  EXPECT_EQ(fwtest::read_bytes(d / "out-z/model.safetensors"), fwtest::read_bytes(d / "out-p/model.safetensors"));
  EXPECT_FALSE(zero1.of("checkpoint").empty());
}

// Two ranks on ONE GPU (FW_CUDA_COLLECTIVE=gloo: Gloo over TCP, device
// buffers staged through the host; NCCL would refuse) with ZeRO-1 and batch
// B reach the model one rank writes with batch 2B, and the checkpoint at
// step 5 gathers both ranks' shards of the master and moments (gather_state)
// on the way. Needs a build with Gloo.
TEST(cuda_worker, two_zero1_ranks_sharing_the_gpu_over_gloo_match_one_rank_of_twice_the_batch) {
  FW_REQUIRE_GPU();
#ifndef FW_HAVE_GLOO
  GTEST_SKIP() << "built without Gloo (Debian libgloo-dev)";
#endif
  TempDir d;
  write_shards(d);
  const int steps = 8;
  auto spec_for = [&](const char* tag, int batch) {
    json s = on_gpu(base_spec(d, tag, steps), "fp32");
    s["train"]["batch_size"] = batch;
    s["train"]["zero1"] = true;
    return write_spec(d, std::string(tag) + ".json", s);
  };
  WorkerResult one = run_worker(spec_for("w1", 8));
  ASSERT_EQ(one.code, 0) << last_event(one);
  fw_test::TestStore store;
  const std::string spec2 = spec_for("w2", 4);
  const std::map<std::string, std::string> gloo = {{"FW_CUDA_COLLECTIVE", "gloo"}};
  std::vector<fwtest::Rank> two = {fwtest::spawn_worker(d, spec2, 0, 2, store.url("w2/0"), 60000, 60000, gloo),
                                   fwtest::spawn_worker(d, spec2, 1, 2, store.url("w2/0"), 60000, 60000, gloo)};
  fwtest::ReapGuard guard{two};
  for (fwtest::Rank& r : two) EXPECT_TRUE(fwtest::wait_exit(r, 240));
  fwtest::reap(two);
  for (fwtest::Rank& r : two) ASSERT_EQ(fwtest::code_of(r), 0) << fw::read_file_text(r.err);
  std::vector<double> l0, l1;
  for (const json& e : fwtest::events(two[0]))
    if (e["event"] == "step") l0.push_back(e["loss"].get<double>());
  for (const json& e : fwtest::events(two[1]))
    if (e["event"] == "step") l1.push_back(e["loss"].get<double>());
  EXPECT_EQ(l0.size(), (size_t)steps);
  EXPECT_EQ(l0, l1) << "the ranks report different global losses";
  const json started = fwtest::events(two[1]).front();
  EXPECT_EQ(started["world_size"], 2);
  EXPECT_EQ(started["collective"], "staged:gloo");
  EXPECT_EQ(started["cuda_device"], 0) << "rank 1 wraps around to the one GPU";
  int checkpoints = 0;
  for (const json& e : fwtest::events(two[0])) checkpoints += e["event"] == "checkpoint";
  EXPECT_GE(checkpoints, 1) << "rank 0 writes the gathered ZeRO-1 state";
  auto m1 = fw::model_load_hf(d / "out-w1");
  auto m2 = fw::model_load_hf(d / "out-w2");
  const double rel = rel_l2(m2->params, m1->params);
  std::printf("OK       two ZeRO-1 ranks on one GPU (B=4) vs one rank (B=8), 8 steps: relative L2 %.3g\n", rel);
  EXPECT_LE(rel, 1e-4);
}
