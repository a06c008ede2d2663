// worker_run_test.cpp: fw_worker end to end as a child process: events, the
// output folders, SIGTERM -> checkpoint -> bit-identical resume, exit codes.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <functional>

#include "hf_io.h"
#include "io_testutil.h"
#include "model.h"
#include "worker_testutil.h"

using json = nlohmann::json;
using fwtest::base_spec;
using fwtest::run_worker;
using fwtest::TempDir;
using fwtest::tiny_config;
using fwtest::WorkerResult;
using fwtest::write_shards;
using fwtest::write_spec;

TEST(worker_run, full_finetune_from_config_reports_and_writes_a_model_folder) {
  TempDir d;
  write_shards(d);
  WorkerResult r = run_worker(write_spec(d, "a.json", base_spec(d, "a", 12)));
  ASSERT_EQ(r.code, 0);
  ASSERT_FALSE(r.of("started").empty());
  EXPECT_EQ(r.of("started")[0]["step"], 0);
  auto steps = r.of("step");
  ASSERT_EQ(steps.size(), 12u);
  for (const char* k : {"step", "loss", "lr", "grad_norm", "tokens_per_s"}) EXPECT_TRUE(steps[0].contains(k)) << k;
  EXPECT_LT(steps.back()["loss"].get<double>(), steps.front()["loss"].get<double>());
  EXPECT_EQ(r.of("eval").size(), 3u);  // steps 5, 10 and the end
  EXPECT_EQ(r.of("checkpoint").size(), 3u);
  auto done = r.of("completed");
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0]["step"], 12);
  auto m = fw::model_load_hf(d / "out-a");
  EXPECT_EQ(m->cfg.hidden_size, 32);
  EXPECT_EQ(fwtest::read_bytes(d / "out-a/tokenizer.json"), "{\"version\":\"1.0\"}");
  EXPECT_EQ(fw::list_dir(d / "ck-a").size(), 2u);  // keep_last
}

TEST(worker_run, sigterm_checkpoints_and_resume_matches_uninterrupted_bit_for_bit) {
  TempDir d;
  write_shards(d);
  const int steps = 20;
  WorkerResult straight = run_worker(write_spec(d, "s.json", base_spec(d, "s", steps)));
  ASSERT_EQ(straight.code, 0);

  std::string spec = write_spec(d, "i.json", base_spec(d, "i", steps));
  WorkerResult cut = fwtest::run_worker_until_step(spec, 3);
  ASSERT_EQ(cut.code, 143);
  auto ck = cut.of("checkpoint");
  ASSERT_FALSE(ck.empty());
  EXPECT_EQ(ck.back()["reason"], "signal");
  int64_t stopped_at = ck.back()["step"].get<int64_t>();
  EXPECT_LT(stopped_at, steps);
  EXPECT_TRUE(cut.of("completed").empty());
  EXPECT_FALSE(fw::path_exists(d / "out-i"));

  WorkerResult resumed = run_worker(spec);
  ASSERT_EQ(resumed.code, 0);
  EXPECT_EQ(resumed.of("started")[0]["step"], stopped_at);
  EXPECT_FALSE(resumed.of("started")[0]["resumed_from"].is_null());
  EXPECT_EQ(resumed.of("step").front()["step"], stopped_at + 1);
  EXPECT_EQ(fwtest::read_bytes(d / "out-i/model.safetensors"), fwtest::read_bytes(d / "out-s/model.safetensors"));
  EXPECT_EQ(resumed.of("completed")[0]["val_loss"], straight.of("completed")[0]["val_loss"]);
}

TEST(worker_run, lora_with_distillation_writes_adapter_and_merged_folders) {
  TempDir d;
  write_shards(d);
  const fw::Model base = fwtest::write_base_and_teacher(d);
  json spec = base_spec(d, "l", 6);
  spec["model"] = {{"path", d / "base"}};
  spec["lora"] = {{"r", 4}, {"alpha", 8}, {"dropout", 0.05}, {"target_modules", {"q_proj", "v_proj"}}, {"merge", true}};
  spec["distill"] = {{"teacher", d / "teacher"}, {"alpha", 0.5}, {"temperature", 2.0}};
  WorkerResult r = run_worker(write_spec(d, "l.json", spec));
  ASSERT_EQ(r.code, 0) << (r.events.empty() ? "" : r.events.back().dump());
  EXPECT_TRUE(r.of("step")[0].contains("kl"));
  auto ad = fw::adapter_load(d / "out-l", base.cfg);
  EXPECT_EQ(ad->cfg.rank, 4);
  auto merged = fw::model_load_hf(d / "out-l/merged");
  EXPECT_NE(merged->params, base.params);  // the adapter changed the weights
  EXPECT_TRUE(fw::path_exists(d / "out-l/tokenizer.json"));
  EXPECT_TRUE(fw::path_exists(d / "out-l/merged/tokenizer.json"));
}

TEST(worker_run, bad_inputs_exit_with_documented_codes_and_an_error_event) {
  TempDir d;
  write_shards(d);
  auto expect_code = [&](const std::string& spec_path, int code, const std::string& needle) {
    WorkerResult r = run_worker(spec_path);
    EXPECT_EQ(r.code, code) << spec_path;
    ASSERT_FALSE(r.of("error").empty());
    json e = r.of("error").back();
    EXPECT_EQ(e["code"], code);
    EXPECT_NE(e["message"].get<std::string>().find(needle), std::string::npos) << e.dump();
  };
  fwtest::write_bytes(d / "bad.json", "{\"model\": ");
  expect_code(d / "bad.json", 2, "not valid JSON");
  json s = base_spec(d, "x", 3);
  s["train"]["learning_rate"] = 1;
  expect_code(write_spec(d, "typo.json", s), 2, "unknown key train.learning_rate");
  s = base_spec(d, "x", 3);
  s["data"]["train"] = {d / "missing.bin"};
  expect_code(write_spec(d, "missing.json", s), 3, "not found");
  // a model folder whose weights are truncated
  fw::Model m(fw::config_from_json(tiny_config()));
  fw::model_save_hf(m, d / "broken");
  std::string w = fwtest::read_bytes(d / "broken/model.safetensors");
  fwtest::write_bytes(d / "broken/model.safetensors", w.substr(0, w.size() / 2));
  s = base_spec(d, "x", 3);
  s["model"] = {{"path", d / "broken"}};
  expect_code(write_spec(d, "broken.json", s), 4, "truncated");
  s = base_spec(d, "x", 3);
  s["model"]["config"]["model_type"] = "gpt2";
  expect_code(write_spec(d, "gpt2.json", s), 5, "unsupported model_type");
  // a checkpoint dir that belongs to another run config
  s = base_spec(d, "y", 2);
  ASSERT_EQ(run_worker(write_spec(d, "y.json", s)).code, 0);
  s["train"]["seq_len"] = 8;
  expect_code(write_spec(d, "y2.json", s), 2, "another config");
  expect_code(d / "nope.json", 3, "not found");
}

TEST(worker_run, reports_its_device_and_refuses_cuda_without_the_cuda_backend) {
  TempDir d;
  write_shards(d);
  WorkerResult r = run_worker(write_spec(d, "c.json", base_spec(d, "c", 1)));
  ASSERT_EQ(r.code, 0);
  EXPECT_EQ(r.of("started")[0]["device"], "cpu");
  EXPECT_EQ(r.of("started")[0]["precision"], "fp32");
  // --version lists the devices this build trains on
  WorkerResult v = run_worker("--version");
  ASSERT_EQ(v.code, 0);
  ASSERT_EQ(v.events.size(), 1u);
  const json devices = v.events[0]["devices"];
  ASSERT_TRUE(devices.is_array());
  EXPECT_EQ(devices[0], "cpu");
  const bool has_cuda = devices.size() > 1 && devices[1] == "cuda";
  if (has_cuda) GTEST_SKIP() << "this fw_worker has the CUDA backend: native/tests/cuda/cuda_worker_test covers it";
  json s = base_spec(d, "g", 2);
  s["device"] = "cuda";
  WorkerResult g = run_worker(write_spec(d, "g.json", s));
  EXPECT_EQ(g.code, 5);
  ASSERT_FALSE(g.of("error").empty());
  EXPECT_EQ(g.of("error")[0]["kind"], "unsupported");
  EXPECT_NE(g.of("error")[0]["message"].get<std::string>().find("built without the CUDA backend"), std::string::npos);
  EXPECT_FALSE(fw::path_exists(d / "out-g"));
}
