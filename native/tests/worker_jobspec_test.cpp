// worker_jobspec_test.cpp: job spec defaults and strict validation.
#include <gtest/gtest.h>

#include "io_testutil.h"
#include "jobspec.h"

using fw::ErrorKind;
using fwtest::expect_error;
using json = nlohmann::json;

static json minimal() {
  return {{"model", {{"config", {{"model_type", "llama"}}}}}, {"data", {{"train", "a.bin"}}}, {"output_dir", "/tmp/out"}};
}

TEST(worker_jobspec, minimal_spec_gets_documented_defaults) {
  fw::JobSpec s = fw::jobspec_parse(minimal());
  EXPECT_EQ(s.train_shards, std::vector<std::string>{"a.bin"});
  EXPECT_EQ(s.seed, 1337u);
  EXPECT_EQ(s.init_seed, 1337u);
  EXPECT_DOUBLE_EQ(s.train.lr, 3e-4);
  EXPECT_DOUBLE_EQ(s.train.min_lr, 3e-5);
  EXPECT_EQ(s.train.total_steps, 1000);
  EXPECT_EQ(s.batch_size, 8);
  EXPECT_EQ(s.seq_len, 256);
  EXPECT_FALSE(s.use_lora);
  EXPECT_TRUE(s.resume);
  EXPECT_EQ(s.keep_last, 2);
  EXPECT_TRUE(s.checkpoint_dir.empty());
  EXPECT_EQ(s.device, "cpu");
  EXPECT_EQ(s.precision, "fp32");
}

TEST(worker_jobspec, lora_distill_and_train_sections_parse) {
  json j = minimal();
  j["seed"] = 5;
  j["lora"] = {{"r", 16}, {"alpha", 32}, {"dropout", 0.1}, {"target_modules", {"q_proj", "k_proj"}}, {"merge", true}};
  j["distill"] = {{"teacher", "/m/champion"}, {"alpha", 0.25}, {"temperature", 3}};
  j["train"] = {{"lr", 1e-3}, {"min_lr", 0}, {"batch_size", 8}, {"grad_accum", 4}, {"recompute", true}, {"grad_clip", 0}};
  fw::JobSpec s = fw::jobspec_parse(j);
  EXPECT_TRUE(s.use_lora);
  EXPECT_EQ(s.lora.rank, 16);
  EXPECT_EQ(s.lora.seed, 5u);
  EXPECT_TRUE(s.lora_merge);
  EXPECT_EQ(s.teacher_path, "/m/champion");
  EXPECT_DOUBLE_EQ(s.train.distill_alpha, 0.25);
  EXPECT_DOUBLE_EQ(s.train.distill_temperature, 3.0);
  EXPECT_EQ(s.train.grad_accum, 4);
  EXPECT_TRUE(s.train.recompute);
  // the resume identity changes with what makes a checkpoint incompatible
  json cfg = {{"hidden_size", 8}};
  fw::JobSpec t = s;
  t.seq_len = 128;
  EXPECT_NE(s.identity(cfg), t.identity(cfg));
  t = s;
  t.train.lr = 5e-4;  // lr may change across restarts
  EXPECT_EQ(s.identity(cfg), t.identity(cfg));
}

TEST(worker_jobspec, bad_specs_name_the_offending_key) {
  struct Case {
    std::function<void(json&)> edit;
    std::string needle;
  };
  std::vector<Case> cases = {
      {[](json& j) { j.erase("model"); }, "\"model\" is required"},
      {[](json& j) { j["model"]["path"] = "/m"; }, "exactly one of"},
      {[](json& j) { j.erase("output_dir"); }, "\"output_dir\" is required"},
      {[](json& j) { j["data"]["train"] = json::array(); }, "data.train needs at least one"},
      {[](json& j) { j["train"] = {{"batch_size", 6}, {"grad_accum", 4}}; }, "multiple of train.grad_accum"},
      {[](json& j) { j["train"] = {{"lr", "fast"}}; }, "train.lr must be a number"},
      {[](json& j) { j["train"] = {{"total_steps", 0}}; }, "train.total_steps = 0 is outside"},
      {[](json& j) { j["train"] = {{"lr", 1e-4}, {"min_lr", 1e-3}}; }, "min_lr must be <= train.lr"},
      {[](json& j) { j["lora"] = {{"rank", 8}}; }, "unknown key lora.rank"},
      {[](json& j) { j["checkpoint"] = {{"interval", -1}}; }, "checkpoint.interval = -1"},
      {[](json& j) { j["distill"] = {{"alpha", 0.5}}; }, "distill.teacher"},
      {[](json& j) { j["seed"] = -3; }, "seed must be a non-negative integer"},
      {[](json& j) { j["rank"] = 2; }, "rank 2 must be < world_size 1"},
      {[](json& j) { j["device"] = "gpu"; }, "device must be \"cpu\" or \"cuda\""},
      {[](json& j) { j["precision"] = "int8"; }, "precision must be \"fp32\", \"bf16\" or \"fp16\""},
  };
  for (const Case& c : cases) {
    json j = minimal();
    c.edit(j);
    SCOPED_TRACE(j.dump());
    expect_error([&] { fw::jobspec_parse(j); }, ErrorKind::kInvalidArgument, c.needle);
  }
  expect_error([] { fw::jobspec_parse_text("[1,"); }, ErrorKind::kInvalidArgument, "not valid JSON");
  expect_error([] { fw::jobspec_parse_text("[1]"); }, ErrorKind::kInvalidArgument, "must be an object");
}

TEST(worker_jobspec, device_and_precision) {
  json j = minimal();
  j["device"] = "cuda";
  fw::JobSpec s = fw::jobspec_parse(j);
  EXPECT_EQ(s.device, "cuda");
  EXPECT_EQ(s.precision, "bf16");  // the GPU's default: mixed precision
  j["precision"] = "fp32";
  EXPECT_EQ(fw::jobspec_parse(j).precision, "fp32");
  j["precision"] = "fp16";
  EXPECT_EQ(fw::jobspec_parse(j).precision, "fp16");
  // the device may change between restarts: checkpoints are fp32 on both
  fw::JobSpec cpu = fw::jobspec_parse(minimal());
  json cfg = {{"hidden_size", 8}};
  EXPECT_EQ(cpu.identity(cfg), s.identity(cfg));

  // valid requests the engine cannot serve: kUnsupported (worker exit 5)
  json b = minimal();
  b["precision"] = "bf16";
  expect_error([&] { fw::jobspec_parse(b); }, ErrorKind::kUnsupported, "needs device \"cuda\"");
  b["precision"] = "fp16";
  expect_error([&] { fw::jobspec_parse(b); }, ErrorKind::kUnsupported, "precision \"fp16\" needs device \"cuda\"");

  // LoRA, distillation and recomputation train on either device
  json l = minimal();
  l["device"] = "cuda";
  l["precision"] = "fp16";
  l["lora"] = {{"r", 4}};
  l["distill"] = {{"teacher", "/m"}, {"alpha", 0.25}};
  l["train"] = {{"recompute", true}, {"zero1", true}};
  fw::JobSpec g = fw::jobspec_parse(l);
  EXPECT_TRUE(g.zero1);
  EXPECT_EQ(g.device, "cuda");
  EXPECT_EQ(g.precision, "fp16");
  EXPECT_TRUE(g.use_lora);
  EXPECT_EQ(g.lora.rank, 4);
  EXPECT_EQ(g.teacher_path, "/m");
  EXPECT_DOUBLE_EQ(g.train.distill_alpha, 0.25);
  EXPECT_TRUE(g.train.recompute);
  // ZeRO-1 shards the GPU trainer's state; the cpu engine has no such mode
  json z = minimal();
  z["train"] = {{"zero1", true}};
  expect_error([&] { fw::jobspec_parse(z); }, ErrorKind::kUnsupported, "train.zero1 needs device \"cuda\"");
  EXPECT_FALSE(fw::jobspec_parse(minimal()).zero1);
}
