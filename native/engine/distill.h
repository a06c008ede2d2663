// distill.h: knowledge distillation loss on logits.
//
//   loss = (1 - a) * CE(student, targets) + a * T^2 * KL(p_teacher^T || p_student^T)
// with p^T = softmax(logits / T). Both terms are summed over the positions
// whose target is not -100 (prompt tokens excluded from both) and divided by
// `normalizer` (the number of such positions, over all micro-batches of a
// step). The T^2 factor keeps the KL gradient's scale independent of T
// (Hinton et al.): d loss / d z = (1-a)(p - onehot) + a T (p_s^T - p_t^T),
// each divided by normalizer.
#pragma once

#include <cstdint>

namespace fw {

struct DistillLoss {
  double total = 0;  // the mixed loss
  double ce = 0;     // mean cross-entropy
  double kl = 0;     // mean KL (without the T^2 factor)
  // One more micro-batch's parts (each already divided by the step's
  // normalizer, so the sum is the step's).
  DistillLoss& operator+=(const DistillLoss& o) {
    total += o.total;
    ce += o.ce;
    kl += o.kl;
    return *this;
  }
};

// student, teacher: (N, V) logits; targets (N); dlogits (N, V) written
// (nullptr: loss only). Throws kInvalidArgument for alpha outside [0, 1] or
// temperature <= 0.
template <typename T>
DistillLoss distill_loss(T* dlogits, const T* student, const T* teacher, const int32_t* targets, int N, int V,
                         double alpha, double temperature, double normalizer);

}  // namespace fw
