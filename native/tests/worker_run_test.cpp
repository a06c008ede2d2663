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
#include "shards.h"
#include "train_rng.h"

using json = nlohmann::json;
using fwtest::TempDir;

static std::string worker_path() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  std::string self(buf, n > 0 ? (size_t)n : 0);
  return self.substr(0, self.find_last_of('/')) + "/fw_worker";
}

struct WorkerResult {
  int code = -1;
  std::vector<json> events;
  std::vector<json> of(const std::string& name) const {
    std::vector<json> out;
    for (const json& e : events)
      if (e.value("event", "") == name) out.push_back(e);
    return out;
  }
};

// Runs fw_worker on spec; on_event may return true to send SIGTERM.
static WorkerResult run_worker(const std::string& spec_path, const std::function<bool(const json&)>& on_event = nullptr) {
  const std::string bin = worker_path();
  if (!fw::path_exists(bin)) throw std::runtime_error("fw_worker not built next to the tests: " + bin);
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    execl(bin.c_str(), bin.c_str(), spec_path.c_str(), (char*)nullptr);
    _exit(127);
  }
  close(fds[1]);
  WorkerResult r;
  FILE* f = fdopen(fds[0], "r");
  char* line = nullptr;
  size_t cap = 0;
  bool signalled = false;
  while (getline(&line, &cap, f) > 0) {
    json e = json::parse(line);  // every stdout line must be one JSON object
    r.events.push_back(e);
    if (on_event && !signalled && on_event(e)) {
      kill(pid, SIGTERM);
      signalled = true;
    }
  }
  free(line);
  fclose(f);
  int status = 0;
  waitpid(pid, &status, 0);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

static json tiny_config() {
  return {{"model_type", "llama"},        {"vocab_size", 64},        {"hidden_size", 32},
          {"intermediate_size", 64},      {"num_hidden_layers", 2},  {"num_attention_heads", 4},
          {"num_key_value_heads", 2},     {"max_position_embeddings", 64}, {"eos_token_id", 1}};
}

static void write_shards(const TempDir& d) {
  fw::Rng rng(3);
  for (const char* name : {"train.bin", "val.bin"}) {
    std::vector<std::vector<uint32_t>> docs;
    std::vector<uint32_t> prompts;
    for (int i = 0; i < (std::string(name) == "train.bin" ? 200 : 20); i++) {
      std::vector<uint32_t> doc;
      uint32_t x = 2 + (uint32_t)(rng.next_u64() % 62);
      int len = 8 + (int)(rng.next_u64() % 24);
      for (int t = 0; t + 1 < len; t++) {
        doc.push_back(x);
        x = 2 + (x * 5 + 3) % 62;
      }
      doc.push_back(1);
      docs.push_back(doc);
      prompts.push_back(i % 3 == 0 ? 3 : 0);
    }
    fw::shard_write(d / name, docs, 64, prompts);
  }
  fwtest::write_bytes(d / "tokenizer.json", "{\"version\":\"1.0\"}");
}

static json base_spec(const TempDir& d, const std::string& tag, int steps) {
  return {{"model", {{"config", tiny_config()}, {"tokenizer", d / "tokenizer.json"}}},
          {"data", {{"train", {d / "train.bin"}}, {"val", {d / "val.bin"}}}},
          {"train", {{"lr", 5e-3}, {"warmup_steps", 2}, {"total_steps", steps}, {"batch_size", 4}, {"seq_len", 16}, {"grad_accum", 2}}},
          {"checkpoint", {{"dir", d / ("ck-" + tag)}, {"interval", 5}, {"keep_last", 2}}},
          {"eval", {{"interval", 5}, {"batches", 2}}},
          {"output_dir", d / ("out-" + tag)},
          {"seed", 42}};
}

static std::string write_spec(const TempDir& d, const std::string& name, const json& spec) {
  fwtest::write_bytes(d / name, spec.dump(2));
  return d / name;
}

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
  WorkerResult cut = run_worker(spec, [](const json& e) { return e.value("event", "") == "step" && e["step"] == 3; });
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
  fw::Model base(fw::config_from_json(tiny_config()));
  base.init_random(5);
  fw::model_save_hf(base, d / "base", d / "tokenizer.json");
  fw::Model teacher(fw::config_from_json(tiny_config()));
  teacher.init_random(6);
  fw::model_save_hf(teacher, d / "teacher");
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
