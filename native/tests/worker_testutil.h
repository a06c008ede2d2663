// worker_testutil.h: fw_worker as a child process for the tests (cpu ones in
// native/tests, the GPU ones in native/tests/cuda): run it on a spec and
// collect its JSON-lines events; a tiny model config, shards and a spec.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fileio.h"
#include "hf_io.h"
#include "io_testutil.h"
#include "model.h"
#include "shards.h"
#include "train_rng.h"

namespace fwtest {

using json = nlohmann::json;

// fw_worker next to the test binary, or FW_WORKER_BIN when the build says
// where it is (the GPU tests live in another folder).
inline std::string worker_path() {
#ifdef FW_WORKER_BIN
  return FW_WORKER_BIN;
#endif
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
inline WorkerResult run_worker(const std::string& spec_path, const std::function<bool(const json&)>& on_event = nullptr) {
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

// run_worker, sending SIGTERM once the worker reports finishing `step` (a
// preemption mid-run; the worker checkpoints and exits 143).
inline WorkerResult run_worker_until_step(const std::string& spec_path, int64_t step) {
  return run_worker(spec_path, [step](const json& e) { return e.value("event", "") == "step" && e["step"] == step; });
}

inline json tiny_config() {
  return {{"model_type", "llama"},        {"vocab_size", 64},        {"hidden_size", 32},
          {"intermediate_size", 64},      {"num_hidden_layers", 2},  {"num_attention_heads", 4},
          {"num_key_value_heads", 2},     {"max_position_embeddings", 64}, {"eos_token_id", 1}};
}

inline void write_shards(const TempDir& d) {
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

inline json base_spec(const TempDir& d, const std::string& tag, int steps) {
  return {{"model", {{"config", tiny_config()}, {"tokenizer", d / "tokenizer.json"}}},
          {"data", {{"train", {d / "train.bin"}}, {"val", {d / "val.bin"}}}},
          {"train", {{"lr", 5e-3}, {"warmup_steps", 2}, {"total_steps", steps}, {"batch_size", 4}, {"seq_len", 16}, {"grad_accum", 2}}},
          {"checkpoint", {{"dir", d / ("ck-" + tag)}, {"interval", 5}, {"keep_last", 2}}},
          {"eval", {{"interval", 5}, {"batches", 2}}},
          {"output_dir", d / ("out-" + tag)},
          {"seed", 42}};
}

// A base model (d/base, with the tokenizer) and a distillation teacher
// (d/teacher) of tiny_config() with different random weights, saved as HF
// folders for LoRA / distillation runs. Returns the base model.
inline fw::Model write_base_and_teacher(const TempDir& d) {
  fw::Model base(fw::config_from_json(tiny_config()));
  base.init_random(5);
  fw::model_save_hf(base, d / "base", d / "tokenizer.json");
  fw::Model teacher(fw::config_from_json(tiny_config()));
  teacher.init_random(6);
  fw::model_save_hf(teacher, d / "teacher");
  return base;
}

inline std::string write_spec(const TempDir& d, const std::string& name, const json& spec) {
  fwtest::write_bytes(d / name, spec.dump(2));
  return d / name;
}

}  // namespace fwtest
