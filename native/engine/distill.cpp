// distill.cpp: one pass per row: three log-sum-exps (student at 1 and at T,
// teacher at T), then the loss terms and the gradient in a second sweep.
#include "distill.h"

#include <cmath>
#include <vector>

#include "common.h"

namespace fw {

template <typename T>
static double lse_scaled(const T* x, int V, double inv) {
  double mx = x[0] * inv;
  for (int i = 1; i < V; i++) mx = std::max(mx, (double)x[i] * inv);
  double s = 0;
  for (int i = 0; i < V; i++) s += std::exp(x[i] * inv - mx);
  return mx + std::log(s);
}

template <typename T>
DistillLoss distill_loss(T* dlogits, const T* student, const T* teacher, const int32_t* targets, int N, int V,
                         double alpha, double temperature, double normalizer) {
  FW_CHECK(alpha >= 0 && alpha <= 1, kInvalidArgument, "distillation alpha must be in [0, 1], got " << alpha);
  FW_CHECK(temperature > 0, kInvalidArgument, "distillation temperature must be > 0, got " << temperature);
  FW_CHECK(normalizer > 0, kInvalidArgument, "distillation normalizer must be > 0");
  std::vector<double> ce_row(N, 0.0), kl_row(N, 0.0);
  const double inv_t = 1.0 / temperature, inv_n = 1.0 / normalizer;
  #pragma omp parallel for
  for (int n = 0; n < N; n++) {
    const T* z = student + (size_t)n * V;
    const T* t = teacher + (size_t)n * V;
    T* d = dlogits ? dlogits + (size_t)n * V : nullptr;
    int32_t y = targets[n];
    if (y == -100) {
      if (d)
        for (int i = 0; i < V; i++) d[i] = 0;
      continue;
    }
    double lz = lse_scaled(z, V, 1.0), lzt = lse_scaled(z, V, inv_t), ltt = lse_scaled(t, V, inv_t);
    double kl = 0;
    for (int i = 0; i < V; i++) {
      double log_ps = z[i] * inv_t - lzt, log_pt = t[i] * inv_t - ltt;
      double pt = std::exp(log_pt);
      kl += pt * (log_pt - log_ps);
      if (d) {
        double p = std::exp(z[i] - lz);
        d[i] = T(((1 - alpha) * (p - (i == y ? 1.0 : 0.0)) + alpha * temperature * (std::exp(log_ps) - pt)) * inv_n);
      }
    }
    ce_row[n] = lz - z[y];
    kl_row[n] = kl;
  }
  DistillLoss out;
  for (int n = 0; n < N; n++) {  // in order: deterministic
    out.ce += ce_row[n];
    out.kl += kl_row[n];
  }
  out.ce *= inv_n;
  out.kl *= inv_n;
  out.total = (1 - alpha) * out.ce + alpha * temperature * temperature * out.kl;
  return out;
}

template DistillLoss distill_loss<float>(float*, const float*, const float*, const int32_t*, int, int, double,
                                         double, double);
template DistillLoss distill_loss<double>(double*, const double*, const double*, const int32_t*, int, int, double,
                                          double, double);

}  // namespace fw
