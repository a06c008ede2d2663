// jobspec.h: the worker's job spec (JSON), parsed and validated in one place.
//
// The full format, with defaults, is documented in docs/worker.md. Parsing is
// strict: an unknown key (a typo) or a value of the wrong type or range is a
// kInvalidArgument naming the key, so a bad spec fails before any work.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lora.h"
#include "train.h"

namespace fw {

struct JobSpec {
  // model: exactly one of config (HF config.json object, from scratch) or path
  nlohmann::json model_config;  // null unless from scratch
  std::string model_path;       // HF folder to fine-tune
  uint64_t init_seed = 0;       // from scratch: weight init seed (default: seed)
  double init_std = 0.02;
  std::string tokenizer;        // tokenizer.json to copy into the output ("" = model_path's if present)

  bool use_lora = false;
  LoraConfig lora;
  bool lora_merge = false;      // also write merged full weights (output_dir/merged)

  std::vector<std::string> train_shards, val_shards;
  bool shuffle = true;

  TrainConfig train;            // lr, schedule, AdamW, clip, accum, recompute, distill_*
  bool zero1 = false;           // cuda: shard the AdamW state (and fp32 master) over the ranks
  int batch_size = 8;           // B (rows per optimizer step, split into grad_accum micro-batches)
  int seq_len = 256;            // T

  std::string teacher_path;     // distillation teacher folder ("" = none)

  std::string checkpoint_dir;   // "" = no checkpoints
  int64_t checkpoint_interval = 0;  // steps; 0 = only on SIGTERM and at the end
  int keep_last = 2;
  bool resume = true;           // continue from the latest checkpoint in checkpoint_dir

  int64_t eval_interval = 0;    // steps; 0 = only at the end (when val shards are given)
  int eval_batches = 8;
  int64_t log_interval = 1;

  std::string output_dir;
  bool save_bf16 = false;       // model.safetensors in bf16 instead of fp32
  uint64_t seed = 1337;
  int rank = 0, world_size = 1;
  std::string device = "cpu";     // "cpu" or "cuda" (the GPU chosen by LOCAL_RANK)
  std::string precision = "fp32"; // "fp32"; cuda only: "bf16" (its default there) or "fp16" (loss scaling)

  nlohmann::json source;        // the spec as given (echoed in the started event)

  // The identity a checkpoint must match to be resumed by this spec.
  nlohmann::json identity(const nlohmann::json& model_config_json) const;
};

JobSpec jobspec_parse(const nlohmann::json& j);
JobSpec jobspec_parse_text(const std::string& text);  // kInvalidArgument on bad JSON

}  // namespace fw
