// checkpoint.h: crash-safe training checkpoints.
//
// A checkpoint is a directory <root>/step_<10-digit step>/ holding
//   model.safetensors  the trainable tensors (the model's, or the LoRA
//                      adapter's with PEFT names), fp32, by name
//   optim.safetensors  AdamW moments as "m.<name>" and "v.<name>"
//   state.json         {"format", "step", "config", "data_position", "rng", ...}
//   manifest.json      {"format", "step", "files": {name: {"bytes", "sha256"}}}
// It is written into <root>/.tmp-step_<step>-<pid>/, every file fsynced, the
// directory fsynced, then renamed into place and the root fsynced: a crash at
// any point leaves either the previous checkpoints only or the new one
// complete. Stale .tmp-* directories are ignored by readers and removed by the
// next save. Opening verifies every file's size and sha256 from the manifest
// (a flipped byte or a truncated file is kCorrupt) and compares the stored
// "config" with the caller's (another config is kInvalidArgument).
//
// Resume is bit-identical when the caller restores all of: trainable
// tensors, moments, step count, data position and RNG state (the trainer's
// LoRA dropout is a function of step and seed, see train.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "safetensors.h"
#include "shards.h"
#include "train.h"

namespace fw {

// Generic save: returns the final directory. meta must hold "config" (the
// identity a resumed run is checked against); "step" and "format" are added.
// keep_last > 0 removes older complete checkpoints beyond that many.
std::string checkpoint_save(const std::string& root, int64_t step, const nlohmann::json& meta,
                            const std::vector<TensorView>& weights, const std::vector<TensorView>& optim, int keep_last = 0);

// Directory of the complete checkpoint with the highest step under root, ""
// when there is none (a missing root is fine). Does not verify checksums.
std::string checkpoint_latest(const std::string& root);

struct LoadedCheckpoint {
  std::string dir;
  nlohmann::json meta;  // state.json
  std::unique_ptr<SafeTensorsReader> weights, optim;
};

// Verifies the manifest checksums and the config, then opens the tensors.
LoadedCheckpoint checkpoint_open(const std::string& dir, const nlohmann::json& expected_config);

// Rng <-> {"key": u64, "counter": u64}
nlohmann::json rng_to_json(const Rng& r);
Rng rng_from_json(const nlohmann::json& j);

// Training state in flat fp32 host buffers laid out by `layout` (trainable
// tensors and their AdamW moments), for trainers that keep their state
// elsewhere (the CUDA trainer downloads into these). Same files as the
// Trainer helpers below, so a checkpoint moves between backends.
struct TrainState {
  const ParamLayout* layout = nullptr;
  float* params = nullptr;
  float* m = nullptr;
  float* v = nullptr;
  int64_t step = 0;
  Rng rng;
};
std::string checkpoint_save_state(const std::string& root, const TrainState& st, const nlohmann::json& identity,
                                  const DataPosition& pos, int keep_last = 0, const nlohmann::json& extra = {});
// Fills st.params, st.m, st.v (layout.numel each), st.step and st.rng.
DataPosition checkpoint_restore_state(const LoadedCheckpoint& ck, TrainState& st, nlohmann::json* extra = nullptr);

// Trainer-level helpers: everything a bit-identical resume needs.
// identity: the run's config (model config, LoRA config, ...) checked on load.
std::string checkpoint_save_trainer(const std::string& root, Trainer& tr, const nlohmann::json& identity,
                                    const DataPosition& pos, int keep_last = 0, const nlohmann::json& extra = {});
// Restores tensors, moments, step count and RNG into tr; returns the data
// position. extra (if not null) receives state.json's "extra".
DataPosition checkpoint_restore_trainer(const LoadedCheckpoint& ck, Trainer& tr, nlohmann::json* extra = nullptr);

}  // namespace fw
