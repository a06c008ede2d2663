// train.h: one optimizer step over a batch; what the worker calls in its loop.
//
//   fw::Model model(cfg); model.init_random(seed);    // or load weights
//   fw::Trainer tr(model, tcfg);                      // full fine-tune
//   fw::Trainer tr(model, tcfg, &lora);               // LoRA: base frozen
//   fw::Trainer tr(model, tcfg, nullptr, &teacher);   // + distillation
//   StepResult r = tr.step(tokens, targets, B, T);    // r.loss, r.grad_norm, r.lr
//
// A step splits the (B, T) batch into grad_accum micro-batches of B/grad_accum
// rows, accumulates their gradients, normalises the loss by the number of
// non-ignored targets in the WHOLE batch (so k micro-batches give the same
// gradient as one batch of kB rows), clips by global norm, takes the lr from
// the schedule and applies AdamW. A non-finite gradient norm (overflow,
// NaN loss) skips the update so the weights and moments are never poisoned;
// the result says so (skipped) and the caller decides what to do.
//
// Checkpointing: trainable_params()/grads and adam().m/v share
// trainable_layout(); step_count() is the number of completed steps (the next
// step uses lr schedule.at(step_count())). LoRA dropout masks are a pure
// function of (LoraConfig::seed, step), so restoring step_count() and the
// tensors resumes bit-identically; rng() is a spare serialisable generator
// (key, counter) the worker may use for data order, saved with the rest.
#pragma once

#include <cstdint>
#include <vector>

#include "distill.h"
#include "lora.h"
#include "model.h"
#include "optim.h"
#include "train_rng.h"

namespace fw {

class Collective;  // collective.h

struct TrainConfig {
  double lr = 3e-4;             // peak learning rate
  double min_lr = 3e-5;         // floor of the cosine decay
  int64_t warmup_steps = 0;
  int64_t total_steps = 1000;   // end of the cosine
  double weight_decay = 0.1;    // decoupled; matrices only unless decay_norms_and_biases
  bool decay_norms_and_biases = false;
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double grad_clip = 1.0;       // max global grad norm; <= 0 disables clipping
  int grad_accum = 1;           // micro-batches per step; must divide B
  bool recompute = false;       // activation recomputation per layer
  double distill_alpha = 0.5;   // weight of the KL term (with a teacher)
  double distill_temperature = 2.0;
  uint64_t seed = 1337;         // rng() key
};

// Throws kInvalidArgument for learning rates < 0, grad_accum < 1, a
// negative warmup or total_steps < 1. Shared by the CPU and CUDA trainers.
void check_train_config(const TrainConfig& cfg);
// The warmup + cosine schedule the config describes.
LrSchedule lr_schedule(const TrainConfig& cfg);
// step()'s checks on a batch: targets given, B > 0 and a multiple of
// grad_accum (kInvalidArgument). Returns the count of non-ignored targets.
int64_t check_step_batch(const TrainConfig& cfg, const int32_t* targets, int B, int T);

// Data parallel: the step's loss and its distillation parts (each rank's
// already divided by the global target count) summed over the ranks, on
// every rank; parts.total becomes the summed loss. Shared by the CPU and CUDA
// trainers.
void allreduce_loss_parts(Collective& c, double& loss, DistillLoss& parts);

// The factor gradients are multiplied by to clip their global norm to
// grad_clip (1 when clipping is off or the norm is already within it).
inline double clip_scale(double grad_clip, double grad_norm) {
  return grad_clip > 0 && grad_norm > grad_clip ? grad_clip / (grad_norm + 1e-6) : 1.0;
}

struct StepResult {
  double loss = 0;       // mean over the batch's non-ignored targets (mixed loss when distilling)
  double grad_norm = 0;  // before clipping
  double lr = 0;         // the lr this step used
  int64_t tokens = 0;    // non-ignored targets in the batch
  bool skipped = false;  // gradient norm was NaN/inf: no update, step_count unchanged
};

template <typename T>
class TrainerT {
 public:
  // Full fine-tuning when lora == nullptr (allocates the model's grads),
  // else only the adapter is trained (the model must have no grads). The
  // teacher (forward only, same vocab) is switched to recomputation to
  // keep just one layer of activations.
  TrainerT(ModelT<T>& model, const TrainConfig& cfg, LoraT<T>* lora = nullptr, ModelT<T>* teacher = nullptr);

  StepResult step(const int32_t* tokens, const int32_t* targets, int B, int T_);
  // Mean loss without updating anything (no dropout). Cross-entropy only.
  double eval_loss(const int32_t* tokens, const int32_t* targets, int B, int T_);

  // Data parallelism: with a collective of world_size > 1, every rank calls
  // step() with its own shard of the global batch (same B, T). The loss is
  // normalised by the non-ignored target count summed over ALL ranks, the
  // gradients are summed across ranks (bucketed allreduce) before clipping,
  // and the returned loss / tokens are the global ones, so every rank applies
  // the same update and the weights stay identical. nullptr or world_size 1:
  // single process. Not owned.
  void set_collective(Collective* c) { coll_ = c; }
  const TrainConfig& config() const { return cfg_; }
  int64_t step_count() const { return step_; }
  void set_step_count(int64_t s) { step_ = s; }
  LrSchedule schedule() const { return sched_; }
  T* trainable_params() { return lora_ ? lora_->params.data() : model_.params.data(); }
  T* trainable_grads() { return lora_ ? lora_->grads.data() : model_.grads.data(); }
  const ParamLayout& trainable_layout() const { return lora_ ? lora_->layout : model_.layout; }
  size_t trainable_param_count() const { return trainable_layout().count_params(); }
  AdamWT<T>& adam() { return adam_; }
  Rng& rng() { return rng_; }
  // Last step's loss parts when distilling.
  const DistillLoss& last_distill() const { return last_distill_; }

 private:
  ModelT<T>& model_;
  TrainConfig cfg_;
  LoraT<T>* lora_;
  ModelT<T>* teacher_;
  Collective* coll_ = nullptr;
  AdamWT<T> adam_;
  LrSchedule sched_;
  Rng rng_;
  int64_t step_ = 0;
  DistillLoss last_distill_;
  std::vector<T> dlogits_;  // (B/k, T, V) distillation gradient
  std::vector<T> tlogits_;  // (B/k, T, V) teacher logits
};

using Trainer = TrainerT<float>;

}  // namespace fw
