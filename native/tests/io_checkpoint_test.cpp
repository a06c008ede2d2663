// io_checkpoint_test.cpp: checkpoints are atomic, verified and resume a run
// bit for bit.
#include <gtest/gtest.h>

#include "checkpoint.h"
#include "io_testutil.h"
#include "model.h"
#include "shards.h"
#include "train.h"

using fw::ErrorKind;
using fwtest::expect_error;
using fwtest::TempDir;

static fw::Config tiny_config(int layers = 2) {
  return fw::config_from_json({{"model_type", "llama"},      {"vocab_size", 80},  {"hidden_size", 32},
                               {"intermediate_size", 64},    {"num_hidden_layers", layers},
                               {"num_attention_heads", 4},   {"num_key_value_heads", 2},
                               {"max_position_embeddings", 64}});
}

static void write_data(const std::string& path) {
  std::vector<std::vector<uint32_t>> docs;
  fw::Rng rng(5);
  for (int d = 0; d < 60; d++) {
    std::vector<uint32_t> doc;
    int len = 5 + (int)(rng.next_u64() % 20);
    for (int i = 0; i + 1 < len; i++) doc.push_back(2 + (uint32_t)(rng.next_u64() % 78));
    doc.push_back(1);
    docs.push_back(doc);
  }
  fw::shard_write(path, docs, 80);
}

// One training run's state, built fresh (as a new process would).
struct TrainRun {
  fw::Model model;
  std::unique_ptr<fw::Lora> lora;
  std::unique_ptr<fw::Trainer> tr;
  fw::ShardLoader loader;
  nlohmann::json identity;
  std::vector<int32_t> in, tg;
  TrainRun(const std::string& shard, bool use_lora)
      : model(tiny_config()), loader({shard}, 4, 16, 0, 1, 99), in(64), tg(64) {
    model.init_random(1234);
    fw::TrainConfig tc;
    tc.lr = 1e-2;
    tc.warmup_steps = 2;
    tc.total_steps = 20;
    tc.grad_accum = 2;
    if (use_lora) {
      fw::LoraConfig lc;
      lc.rank = 4;
      lc.dropout = 0.1;  // dropout masks must also resume exactly
      lc.target_modules = {"q_proj", "v_proj", "up_proj"};
      lc.seed = 7;
      lora = std::make_unique<fw::Lora>(model.cfg, lc);
      lora->init(7);
    }
    tr = std::make_unique<fw::Trainer>(model, tc, lora.get());
    identity = {{"model", model.cfg.to_json()}, {"lora", use_lora}};
  }
  void steps(int n) {
    for (int i = 0; i < n; i++) {
      loader.next_batch(in.data(), tg.data());
      tr->step(in.data(), tg.data(), 4, 16);
    }
  }
  std::vector<float> trainable() const {
    const float* p = lora ? lora->params.data() : model.params.data();
    return std::vector<float>(p, p + (lora ? lora->layout.numel : model.layout.numel));
  }
};

static void check_resume(bool use_lora) {
  TempDir d;
  write_data(d / "s.bin");
  const int N = 4;
  TrainRun straight(d / "s.bin", use_lora);
  straight.steps(2 * N);

  std::string ck;
  {
    TrainRun first(d / "s.bin", use_lora);
    first.steps(N);
    ck = fw::checkpoint_save_trainer(d / "ck", *first.tr, first.identity, first.loader.position());
  }
  TrainRun second(d / "s.bin", use_lora);  // fresh objects, nothing shared with `first`
  fw::LoadedCheckpoint lc = fw::checkpoint_open(fw::checkpoint_latest(d / "ck"), second.identity);
  EXPECT_EQ(lc.dir, ck);
  second.loader.set_position(fw::checkpoint_restore_trainer(lc, *second.tr));
  EXPECT_EQ(second.tr->step_count(), N);
  second.steps(N);

  EXPECT_EQ(second.trainable(), straight.trainable());  // bit for bit
  EXPECT_EQ(second.tr->adam().m, straight.tr->adam().m);
  EXPECT_EQ(second.tr->adam().v, straight.tr->adam().v);
  EXPECT_EQ(second.loader.position().batch, straight.loader.position().batch);
}

TEST(io_checkpoint, resume_is_bit_identical_full_finetune) { check_resume(false); }
TEST(io_checkpoint, resume_is_bit_identical_lora_with_dropout) { check_resume(true); }

TEST(io_checkpoint, failed_write_leaves_previous_checkpoint_intact) {
  TempDir d;
  write_data(d / "s.bin");
  TrainRun run(d / "s.bin", false);
  run.steps(1);
  std::string first = fw::checkpoint_save_trainer(d / "ck", *run.tr, run.identity, run.loader.position());
  std::vector<float> saved = run.trainable();
  run.steps(1);
  const int64_t mb = (int64_t)fwtest::read_bytes(first + "/model.safetensors").size();
  const int64_t ob = (int64_t)fwtest::read_bytes(first + "/optim.safetensors").size();
  const int64_t sb = (int64_t)fwtest::read_bytes(first + "/state.json").size();
  // A crash injected after N bytes, N swept over the whole write: every file
  // boundary and its neighbours, 48 points spread over the bytes, and one
  // inside the manifest (written last).
  const int64_t body = mb + ob + sb;
  std::vector<int64_t> sweep = {0, 1, mb - 1, mb, mb + 1, mb + ob - 1, mb + ob, mb + ob + 1, body - 1, body, body + 5};
  for (int i = 1; i < 48; ++i) sweep.push_back(body * i / 48);
  for (int64_t fail_at : sweep) {
    SCOPED_TRACE(fail_at);
    fw::io_set_fail_after_bytes(fail_at);
    expect_error([&] { fw::checkpoint_save_trainer(d / "ck", *run.tr, run.identity, run.loader.position()); }, ErrorKind::kIo,
                 "injected");
    fw::io_set_fail_after_bytes(-1);
    EXPECT_EQ(fw::checkpoint_latest(d / "ck"), first);
  }
  // a crash (no cleanup) leaves a .tmp- directory: readers ignore it
  fw::make_dirs(d / "ck/.tmp-step_0000000009-1");
  fwtest::write_bytes(d / "ck/.tmp-step_0000000009-1/manifest.json", "{}");
  EXPECT_EQ(fw::checkpoint_latest(d / "ck"), first);
  TrainRun fresh(d / "s.bin", false);
  fw::checkpoint_restore_trainer(fw::checkpoint_open(first, fresh.identity), *fresh.tr);
  EXPECT_EQ(fresh.trainable(), saved);
  // the next successful save cleans the leftovers and prunes to keep_last
  run.steps(1);
  std::string third = fw::checkpoint_save_trainer(d / "ck", *run.tr, run.identity, run.loader.position(), 1);
  EXPECT_EQ(fw::list_dir(d / "ck"), (std::vector<std::string>{"step_0000000003"}));
  EXPECT_EQ(fw::checkpoint_latest(d / "ck"), third);
}

TEST(io_checkpoint, flipped_byte_truncation_and_other_config_are_refused) {
  TempDir d;
  write_data(d / "s.bin");
  TrainRun run(d / "s.bin", false);
  run.steps(1);
  std::string ck = fw::checkpoint_save_trainer(d / "ck", *run.tr, run.identity, run.loader.position());
  fw::checkpoint_open(ck, run.identity);  // fine as written

  std::string opt = fwtest::read_bytes(ck + "/optim.safetensors");
  std::string flipped = opt;
  flipped[flipped.size() / 2] ^= 0x01;
  fwtest::write_bytes(ck + "/optim.safetensors", flipped);
  expect_error([&] { fw::checkpoint_open(ck, run.identity); }, ErrorKind::kCorrupt, "sha256 does not match");
  fwtest::write_bytes(ck + "/optim.safetensors", opt.substr(0, opt.size() - 100));
  expect_error([&] { fw::checkpoint_open(ck, run.identity); }, ErrorKind::kCorrupt, "truncated");
  fwtest::write_bytes(ck + "/optim.safetensors", opt);

  nlohmann::json other = {{"model", tiny_config(3).to_json()}, {"lora", false}};
  expect_error([&] { fw::checkpoint_open(ck, other); }, ErrorKind::kInvalidArgument, "another config");
  std::remove((ck + "/manifest.json").c_str());
  expect_error([&] { fw::checkpoint_open(ck, run.identity); }, ErrorKind::kIo, "manifest not found");
  EXPECT_EQ(fw::checkpoint_latest(d / "ck"), "");  // incomplete directories are not checkpoints
}
