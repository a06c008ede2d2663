// train.cpp: the step loop: micro-batches -> grads -> clip -> schedule -> AdamW.
#include "train.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "collective.h"

namespace fw {

void check_train_config(const TrainConfig& cfg) {
  FW_CHECK(cfg.lr >= 0 && cfg.min_lr >= 0, kInvalidArgument, "learning rates must be >= 0");
  FW_CHECK(cfg.grad_accum >= 1, kInvalidArgument, "grad_accum must be >= 1, got " << cfg.grad_accum);
  FW_CHECK(cfg.warmup_steps >= 0 && cfg.total_steps >= 1, kInvalidArgument,
           "need warmup_steps >= 0 and total_steps >= 1");
}

void allreduce_loss_parts(Collective& c, double& loss, DistillLoss& parts) {
  double v[3] = {loss, parts.ce, parts.kl};
  c.allreduce_sum(v, 3);
  loss = v[0];
  parts.total = v[0];
  parts.ce = v[1];
  parts.kl = v[2];
}

LrSchedule lr_schedule(const TrainConfig& cfg) {
  LrSchedule s;
  s.lr = cfg.lr;
  s.min_lr = cfg.min_lr;
  s.warmup = cfg.warmup_steps;
  s.total = cfg.total_steps;
  return s;
}

int64_t check_step_batch(const TrainConfig& cfg, const int32_t* targets, int B, int T) {
  FW_CHECK(targets, kInvalidArgument, "step() needs targets");
  FW_CHECK_HINT(B > 0 && B % cfg.grad_accum == 0, kInvalidArgument,
                "batch size " << B << " is not a multiple of grad_accum " << cfg.grad_accum,
                "make batch_size divisible by grad_accum");
  int64_t n = 0;
  for (size_t i = 0; i < (size_t)B * T; i++) n += targets[i] != kIgnoreIndex;
  return n;
}

template <typename T>
TrainerT<T>::TrainerT(ModelT<T>& model, const TrainConfig& cfg, LoraT<T>* lora, ModelT<T>* teacher)
    : model_(model), cfg_(cfg), lora_(lora), teacher_(teacher), rng_(cfg.seed) {
  check_train_config(cfg);
  if (lora) {
    FW_CHECK_HINT(!model.has_grads(), kInvalidArgument, "LoRA training needs a frozen base model",
                  "do not call enable_grads() on the base model");
    model.set_lora(lora);
  } else {
    model.set_lora(nullptr);
    if (!model.has_grads()) model.enable_grads();
  }
  if (teacher) {
    FW_CHECK(teacher->cfg.vocab_size == model.cfg.vocab_size, kInvalidArgument,
             "teacher vocab " << teacher->cfg.vocab_size << " != student vocab " << model.cfg.vocab_size);
    teacher->set_recompute(true);
    teacher->set_training(false);
  }
  model.set_recompute(cfg.recompute);
  AdamWConfig ac;
  ac.beta1 = cfg.beta1;
  ac.beta2 = cfg.beta2;
  ac.eps = cfg.eps;
  ac.weight_decay = cfg.weight_decay;
  ac.decay_norms_and_biases = cfg.decay_norms_and_biases;
  adam_.init(ac, trainable_layout());
  sched_ = lr_schedule(cfg);
}

template <typename T>
StepResult TrainerT<T>::step(const int32_t* tokens, const int32_t* targets, int B, int T_) {
  StepResult r;
  r.tokens = check_step_batch(cfg_, targets, B, T_);
  int k = cfg_.grad_accum, mb = B / k, V = model_.cfg.vocab_size;
  size_t mbn = (size_t)mb * T_;
  bool dp = coll_ && coll_->world_size() > 1;
  if (dp) {
    // The global target count, so that summing the ranks' gradients gives
    // the gradient of the mean over the global batch.
    double count = (double)r.tokens;
    coll_->allreduce_sum(&count, 1);
    r.tokens = (int64_t)count;
  }
  double norm = (double)std::max<int64_t>(r.tokens, 1);
  model_.zero_grad();
  model_.set_training(true);
  model_.set_dropout_step((uint64_t)step_);
  last_distill_ = DistillLoss{};
  for (int i = 0; i < k; i++) {
    const int32_t* tok = tokens + i * mbn;
    const int32_t* tgt = targets + i * mbn;
    if (!teacher_) {
      r.loss += (double)model_.forward(tok, tgt, mb, T_, norm);
      model_.backward();
      continue;
    }
    model_.forward(tok, tgt, mb, T_, norm);
    teacher_->forward(tok, nullptr, mb, T_);
    dlogits_.resize(mbn * V);
    DistillLoss d = distill_loss(dlogits_.data(), model_.logits(), teacher_->logits(), tgt, (int)mbn, V,
                                 cfg_.distill_alpha, cfg_.distill_temperature, norm);
    last_distill_ += d;
    r.loss += d.total;
    model_.backward(dlogits_.data());
  }
  T* g = trainable_grads();
  if (dp) {
    allreduce_sum_bucketed(*coll_, g, trainable_layout().numel);
    allreduce_loss_parts(*coll_, r.loss, last_distill_);
  }
  r.grad_norm = grad_global_norm(g, trainable_layout().numel);
  r.lr = sched_.at(step_);
  if (!std::isfinite(r.grad_norm)) {
    r.skipped = true;
    return r;
  }
  // Clipping is applied inside the AdamW pass (grads * clip / norm).
  adam_.step(trainable_params(), g, trainable_layout(), r.lr, step_ + 1, clip_scale(cfg_.grad_clip, r.grad_norm));
  step_++;
  return r;
}

template <typename T>
double TrainerT<T>::eval_loss(const int32_t* tokens, const int32_t* targets, int B, int T_) {
  model_.set_training(false);
  double loss = (double)model_.forward(tokens, targets, B, T_);
  model_.set_training(true);
  return loss;
}

template class TrainerT<float>;
template class TrainerT<double>;

}  // namespace fw
