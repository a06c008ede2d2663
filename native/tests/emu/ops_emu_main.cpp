// ops_emu_main.cpp: training kernels of native/cuda on the CPU (ops_emu.py),
// through their own host launchers, against double-precision references
// with the same semantics (accumulation into dinp / dweight / dwte, ignored
// targets, in-place cross-entropy): RMSNorm forward and backward (the
// dweight split over row chunks), the embedding forward and the
// plan-driven backward (embedding_plan.h, as CudaModel builds it), SwiGLU
// forward and backward (16-byte packed and scalar paths), cross-entropy
// forward, backward and fused (packed and scalar rows), AdamW with the fp32
// master and the 16-bit working copy, the gradient sum of squares, fp16's
// unscale-and-overflow check, the INT8 weight-only matmul, the LoRA dropout
// mask (the CPU's, bit for bit), distillation's loss and gradient, the
// bias add / bias gradient / in-place add, the fp32 upload / download casts,
// the CUDA-core attention (forward, backward, KV-cache append and the
// cached forward) and RoPE (tables, forward, backward), in float, bf16 and
// fp16. float must agree to 1e-5 of the largest reference value; 16-bit
// outputs to a couple of units of their last place. Exit 1 on a mismatch.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "emu_simt.h"
#include "ops_emu_api.h"  // the launchers under test (generated from their headers)

#include "common.h"
#include "embedding_plan.h"
#include "train_rng.h"


using bf16 = __nv_bfloat16;
using f16 = __half;

namespace {

float tof(float x) { return x; }
float tof(bf16 x) { return __bfloat162float(x); }
float tof(f16 x) { return __half2float(x); }
template <typename T>
T fromf(float x);
template <>
float fromf<float>(float x) { return x; }
template <>
bf16 fromf<bf16>(float x) { return __float2bfloat16_rn(x); }
template <>
f16 fromf<f16>(float x) { return __float2half_rn(x); }

uint64_t rng_state = 0x2545F4914F6CDD1Dull;
uint64_t next_u64() {
  rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
  return rng_state;
}
float randn() {
  auto u = [] { return ((next_u64() >> 11) + 0.5) * (1.0 / 9007199254740992.0); };
  return (float)(std::sqrt(-2.0 * std::log(u())) * std::cos(6.283185307179586 * u()));
}
template <typename T>
std::vector<T> rand_vec(size_t n, float scale = 1.0f, float offset = 0.0f) {
  std::vector<T> v(n);
  for (auto& x : v) x = fromf<T>(offset + scale * randn());
  return v;
}
template <typename T>
std::vector<double> widen(const std::vector<T>& v) {
  std::vector<double> d(v.size());
  for (size_t i = 0; i < v.size(); i++) d[i] = tof(v[i]);
  return d;
}

int failures = 0;
// T: the run's storage type; G: the output's (float for losses, lse and
// rstd, which the kernels keep in fp32 whatever T is: bound 1e-5).
template <typename T, typename G>
void expect_near(const std::string& what, const std::vector<G>& got, const std::vector<double>& want) {
  const double tol = std::is_same<G, float>::value ? 1e-5 : std::is_same<G, bf16>::value ? 1.6e-2 : 2e-3;
  double worst = 0, scale = 1e-30;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  for (size_t i = 0; i < want.size(); i++) {
    const double g = tof(got[i]);
    worst = std::max(worst, std::isnan(g) ? INFINITY : std::fabs(g - want[i]) / scale);
  }
  const bool ok = worst <= tol && got.size() == want.size();
  failures += !ok;
  std::printf("%-6s %-62s max err / max ref %.2e (bound %.0e)\n", ok ? "OK" : "NOT OK",
              (what + " [" + std::to_string(sizeof(T)) + "-byte T]").c_str(), worst, tol);
}

template <typename T>
void check_rmsnorm(int N, int C) {
  const double eps = 1e-5;
  auto x = rand_vec<T>((size_t)N * C), w = rand_vec<T>(C, 0.2f, 1.0f), dy = rand_vec<T>((size_t)N * C);
  auto dx = rand_vec<T>((size_t)N * C), dw = rand_vec<T>(C);  // both accumulate
  const std::vector<double> X = widen(x), W = widen(w), DY = widen(dy);
  std::vector<double> out((size_t)N * C), rstd(N), dxw = widen(dx), dww = widen(dw);
  for (int n = 0; n < N; n++) {
    double ss = 0;
    for (int c = 0; c < C; c++) ss += X[(size_t)n * C + c] * X[(size_t)n * C + c];
    const double r = 1.0 / std::sqrt(ss / C + eps);
    rstd[n] = r;
    double dot = 0;
    for (int c = 0; c < C; c++) dot += W[c] * DY[(size_t)n * C + c] * X[(size_t)n * C + c];
    dot *= r / C;
    for (int c = 0; c < C; c++) {
      const size_t i = (size_t)n * C + c;
      out[i] = X[i] * r * W[c];
      dxw[i] += r * (W[c] * DY[i] - X[i] * r * dot);
      dww[c] += DY[i] * X[i] * r;
    }
  }
  std::vector<T> y((size_t)N * C, fromf<T>(NAN));
  std::vector<float> rs(N, NAN), scratch(fw::cuda::rmsnorm_backward_scratch_floats(N, C), NAN);
  fw::cuda::rmsnorm_forward(y.data(), rs.data(), x.data(), w.data(), N, C, eps, nullptr);
  fw::cuda::rmsnorm_backward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), rs.data(), N, C, scratch.data(),
                             nullptr);
  const std::string shape = " N=" + std::to_string(N) + " C=" + std::to_string(C);
  expect_near<T>("rmsnorm forward" + shape, y, out);
  expect_near<T>("rmsnorm rstd" + shape, rs, rstd);
  expect_near<T>("rmsnorm backward dinp (+=)" + shape, dx, dxw);
  expect_near<T>("rmsnorm backward dweight (+=, row chunks)" + shape, dw, dww);
}

template <typename T>
void check_embedding(int N, int V, int C) {
  std::vector<int32_t> tok(N);
  for (auto& t : tok) t = (int32_t)(next_u64() % (uint64_t)V);
  auto wte = rand_vec<T>((size_t)V * C), dy = rand_vec<T>((size_t)N * C), dwte = rand_vec<T>((size_t)V * C);
  std::vector<double> out((size_t)N * C), dw = widen(dwte);
  for (int n = 0; n < N; n++)
    for (int c = 0; c < C; c++) {
      out[(size_t)n * C + c] = tof(wte[(size_t)tok[n] * C + c]);
      dw[(size_t)tok[n] * C + c] += tof(dy[(size_t)n * C + c]);
    }
  std::vector<T> y((size_t)N * C, fromf<T>(NAN));
  fw::cuda::embedding_forward(y.data(), tok.data(), wte.data(), N, C, nullptr);
  fw::cuda::EmbeddingPlan plan;
  fw::cuda::embedding_plan(tok.data(), N, plan);
  fw::cuda::embedding_backward(dwte.data(), dy.data(), plan.ids.data(), plan.offsets.data(), plan.positions.data(),
                               plan.distinct(), C, nullptr);
  const std::string shape = " N=" + std::to_string(N) + " V=" + std::to_string(V) + " C=" + std::to_string(C);
  expect_near<T>("embedding forward" + shape, y, out);
  expect_near<T>("embedding backward from the plan (+=)" + shape, dwte, dw);
}

template <typename T>
void check_swiglu(size_t N) {
  auto g = rand_vec<T>(N, 2.0f), u = rand_vec<T>(N), d = rand_vec<T>(N);
  std::vector<double> h(N), dg(N), du(N);
  for (size_t i = 0; i < N; i++) {
    const double G = tof(g[i]), U = tof(u[i]), D = tof(d[i]), s = 1.0 / (1.0 + std::exp(-G));
    h[i] = G * s * U;
    dg[i] = D * U * s * (1.0 + G * (1.0 - s));
    du[i] = D * G * s;
  }
  std::vector<T> out(N, fromf<T>(NAN)), dgate(N, fromf<T>(NAN)), dup(N, fromf<T>(NAN));
  fw::cuda::swiglu_forward(out.data(), g.data(), u.data(), N, nullptr);
  fw::cuda::swiglu_backward(dgate.data(), dup.data(), d.data(), g.data(), u.data(), N, nullptr);
  const std::string shape = " N=" + std::to_string(N);
  expect_near<T>("swiglu forward" + shape, out, h);
  expect_near<T>("swiglu backward dgate" + shape, dgate, dg);
  expect_near<T>("swiglu backward dup" + shape, dup, du);
}

template <typename T>
void check_crossentropy(int N, int V) {
  auto logits = rand_vec<T>((size_t)N * V, 3.0f);
  std::vector<int32_t> tgt(N);
  for (int n = 0; n < N; n++) tgt[n] = n % 4 == 3 ? -100 : (int32_t)(next_u64() % (uint64_t)V);
  const float scale = 1.0f / 7.0f;
  std::vector<double> loss(N), lse(N), dl((size_t)N * V);
  for (int n = 0; n < N; n++) {
    double m = -INFINITY, s = 0;
    for (int v = 0; v < V; v++) m = std::max(m, (double)tof(logits[(size_t)n * V + v]));
    for (int v = 0; v < V; v++) s += std::exp(tof(logits[(size_t)n * V + v]) - m);
    lse[n] = m + std::log(s);
    loss[n] = tgt[n] == -100 ? 0.0 : lse[n] - tof(logits[(size_t)n * V + tgt[n]]);
    for (int v = 0; v < V; v++)
      dl[(size_t)n * V + v] =
          tgt[n] == -100 ? 0.0 : scale * (std::exp(tof(logits[(size_t)n * V + v]) - lse[n]) - (v == tgt[n] ? 1.0 : 0.0));
  }
  std::vector<float> losses(N, NAN), lses(N, NAN), losses2(N, NAN), lses2(N, NAN);
  std::vector<T> d((size_t)N * V, fromf<T>(NAN)), inplace(logits);
  fw::cuda::crossentropy_forward(losses.data(), lses.data(), logits.data(), tgt.data(), N, V, nullptr);
  fw::cuda::crossentropy_backward(d.data(), logits.data(), lses.data(), tgt.data(), N, V, scale, nullptr);
  fw::cuda::crossentropy_forward_backward(inplace.data(), losses2.data(), lses2.data(), tgt.data(), N, V, scale,
                                          nullptr);
  const std::string shape = " N=" + std::to_string(N) + " V=" + std::to_string(V);
  expect_near<T>("cross-entropy forward losses" + shape, losses, loss);
  expect_near<T>("cross-entropy forward lse" + shape, lses, lse);
  expect_near<T>("cross-entropy backward" + shape, d, dl);
  expect_near<T>("cross-entropy fused losses" + shape, losses2, loss);
  expect_near<T>("cross-entropy fused dlogits, in place" + shape, inplace, dl);
}

// AdamW over n elements with gradients in T: the fp32 master, both moments
// and (16-bit T) the working copy rounded from the new master.
template <typename T>
void check_adamw(size_t n) {
  fw::cuda::AdamWStep st;
  st.lr = 1e-2f, st.weight_decay = 0.1f, st.grad_scale = 0.7f, st.t = 3;
  auto g = rand_vec<T>(n);
  std::vector<float> master(n), m(n), v(n);
  for (size_t i = 0; i < n; i++) master[i] = randn(), m[i] = 0.1f * randn(), v[i] = 0.01f * std::fabs(randn());
  const double c1 = 1.0 / (1.0 - std::pow((double)st.beta1, 3.0)), c2 = 1.0 / (1.0 - std::pow((double)st.beta2, 3.0));
  std::vector<double> wm(n), wv(n), wp(n);
  for (size_t i = 0; i < n; i++) {
    const double gi = (double)tof(g[i]) * st.grad_scale;
    wm[i] = st.beta1 * (double)m[i] + (1.0 - st.beta1) * gi;
    wv[i] = st.beta2 * (double)v[i] + (1.0 - st.beta2) * gi * gi;
    wp[i] = master[i] - st.lr * ((wm[i] * c1) / (std::sqrt(wv[i] * c2) + st.eps) + st.weight_decay * master[i]);
  }
  std::vector<T> copy(n, fromf<T>(NAN));
  if constexpr (std::is_same<T, f16>::value)
    fw::cuda::adamw_update<T>(master.data(), copy.data(), m.data(), v.data(), g.data(), n, st, nullptr);
  else if constexpr (std::is_same<T, bf16>::value)
    fw::cuda::adamw_update<T>(master.data(), copy.data(), m.data(), v.data(), g.data(), n, st, nullptr);
  else
    fw::cuda::adamw_update<T>(master.data(), (bf16*)nullptr, m.data(), v.data(), g.data(), n, st, nullptr);
  const std::string shape = " n=" + std::to_string(n);
  expect_near<T>("adamw master" + shape, master, wp);
  expect_near<T>("adamw m" + shape, m, wm);
  expect_near<T>("adamw v" + shape, v, wv);
  if (!std::is_same<T, float>::value) expect_near<T>("adamw working copy" + shape, copy, wp);
}

// The global norm's sum of squares, and fp16's unscale-and-check: halves
// every gradient and finds nothing, then finds an inf; with 1/scale 1 it
// only checks (the gradients keep their bits).
template <typename T>
void check_norm_and_overflow(size_t n) {
  auto g = rand_vec<T>(n);
  double ss = 0;
  for (const T& x : g) ss += (double)tof(x) * tof(x);
  std::vector<float> out(1, NAN), scratch(fw::cuda::global_norm_scratch_floats(), NAN);
  fw::cuda::grad_sumsq(out.data(), scratch.data(), g.data(), n, nullptr);
  expect_near<T>("grad sum of squares n=" + std::to_string(n), out, std::vector<double>{ss});
  std::vector<double> half(n);
  for (size_t i = 0; i < n; i++) half[i] = 0.5 * tof(g[i]);
  int found = 0;
  fw::cuda::grad_unscale_check(g.data(), n, 0.5f, &found, nullptr);
  expect_near<T>("unscale by 1/2, no overflow n=" + std::to_string(n), g, half);
  failures += found != 0;
  if (found) std::printf("NOT OK  unscale check reported an overflow in finite gradients\n");
  std::vector<T> before(g);
  g[n / 3] = fromf<T>(INFINITY);
  before[n / 3] = g[n / 3];
  fw::cuda::grad_unscale_check(g.data(), n, 1.0f, &found, nullptr);
  const bool same = std::memcmp(g.data(), before.data(), n * sizeof(T)) == 0;
  std::printf("%-6s unscale check finds an inf among %zu, and 1/scale 1 leaves the bits [%zu-byte T]\n",
              found == 1 && same ? "OK" : "NOT OK", n, sizeof(T));
  failures += !(found == 1 && same);
}

// INT8 weight-only matmul: out (N, OC) = in (N, IC) @ (q * scale)^T + bias,
// in passes of 8 rows, the 4-byte path (IC % 4 == 0) and the scalar one.
template <typename T>
void check_matmul_q8(int N, int OC, int IC) {
  auto in = rand_vec<T>((size_t)N * IC), bias = rand_vec<T>(OC);
  std::vector<int8_t> q((size_t)OC * IC);
  for (auto& x : q) x = (int8_t)((int)(next_u64() % 255) - 127);
  std::vector<float> scale(OC);
  for (auto& x : scale) x = 0.01f * (1.0f + std::fabs(randn()));
  std::vector<double> want((size_t)N * OC);
  for (int n = 0; n < N; n++)
    for (int o = 0; o < OC; o++) {
      double a = 0;
      for (int i = 0; i < IC; i++) a += (double)q[(size_t)o * IC + i] * tof(in[(size_t)n * IC + i]);
      want[(size_t)n * OC + o] = a * scale[o] + tof(bias[o]);
    }
  std::vector<T> out((size_t)N * OC, fromf<T>(NAN));
  fw::cuda::matmul_q8(out.data(), in.data(), q.data(), scale.data(), bias.data(), N, OC, IC, nullptr);
  expect_near<T>("int8 matmul N=" + std::to_string(N) + " OC=" + std::to_string(OC) + " IC=" + std::to_string(IC),
                 out, want);
}

// LoRA dropout: the mask must be the CPU's (engine/train_rng.h) bit for bit,
// the kept values scaled by 1 / (1 - p), and backward adds only where kept.
template <typename T>
void check_lora_dropout(size_t n, uint64_t key, double p) {
  auto inp = rand_vec<T>(n), g = rand_vec<T>(n), dinp = rand_vec<T>(n);
  const double keep = (float)(1.0 / (1.0 - p));
  std::vector<double> xd(n), dx = widen(dinp);
  size_t dropped = 0;
  std::vector<bool> mask(n);
  for (size_t e = 0; e < n; e++) {
    mask[e] = fw::rng_u01(fw::rng_at(key, e)) < p;
    dropped += mask[e];
    xd[e] = mask[e] ? 0.0 : tof(inp[e]) * keep;
    if (!mask[e]) dx[e] += tof(g[e]) * keep;
  }
  std::vector<T> out(n, fromf<T>(NAN));
  fw::cuda::lora_dropout_forward(out.data(), inp.data(), n, key, p, nullptr);
  fw::cuda::lora_dropout_backward(dinp.data(), g.data(), n, key, p, nullptr);
  size_t mask_diff = 0;
  for (size_t e = 0; e < n; e++) mask_diff += mask[e] != (tof(out[e]) == 0.0f && tof(inp[e]) != 0.0f);
  const std::string shape = " n=" + std::to_string(n) + " p=" + std::to_string(p).substr(0, 4);
  failures += mask_diff != 0;
  std::printf("%-6s lora dropout mask vs the CPU's%s [%zu-byte T]: %zu of %zu dropped, %zu differ\n",
              mask_diff ? "NOT OK" : "OK", shape.c_str(), sizeof(T), dropped, n, mask_diff);
  expect_near<T>("lora dropout forward" + shape, out, xd);
  expect_near<T>("lora dropout backward (+= where kept)" + shape, dinp, dx);
}

// Distillation over rows (ignored targets included): ce, KL(teacher || student
// at temperature tau) and the mixed gradient written over the student logits.
template <typename T>
void check_distill(int N, int V) {
  const float alpha = 0.4f, tau = 1.5f, scale = 1.0f / 5.0f;
  auto z = rand_vec<T>((size_t)N * V, 2.0f), t = rand_vec<T>((size_t)N * V, 2.0f);
  std::vector<int32_t> tgt(N);
  for (int n = 0; n < N; n++) tgt[n] = n % 3 == 2 ? -100 : (int32_t)(next_u64() % (uint64_t)V);
  std::vector<double> ce(N, 0.0), kl(N, 0.0), dz((size_t)N * V, 0.0);
  auto lse = [&](const std::vector<T>& x, int n, double inv) {
    double m = -INFINITY, s = 0;
    for (int i = 0; i < V; i++) m = std::max(m, (double)tof(x[(size_t)n * V + i]) * inv);
    for (int i = 0; i < V; i++) s += std::exp(tof(x[(size_t)n * V + i]) * inv - m);
    return m + std::log(s);
  };
  for (int n = 0; n < N; n++) {
    if (tgt[n] == -100) continue;
    const double lz = lse(z, n, 1.0), lzt = lse(z, n, 1.0 / tau), ltt = lse(t, n, 1.0 / tau);
    ce[n] = lz - tof(z[(size_t)n * V + tgt[n]]);
    for (int i = 0; i < V; i++) {
      const double zi = tof(z[(size_t)n * V + i]), ti = tof(t[(size_t)n * V + i]);
      const double lps = zi / tau - lzt, lpt = ti / tau - ltt, pt = std::exp(lpt);
      kl[n] += pt * (lpt - lps);
      dz[(size_t)n * V + i] = scale * ((1.0 - alpha) * (std::exp(zi - lz) - (i == tgt[n] ? 1.0 : 0.0)) +
                                       alpha * tau * (std::exp(lps) - pt));
    }
  }
  std::vector<float> ce_out(N, NAN), kl_out(N, NAN);
  fw::cuda::distill_forward_backward(z.data(), ce_out.data(), kl_out.data(), t.data(), tgt.data(), N, V, alpha, tau,
                                     scale, nullptr);
  const std::string shape = " N=" + std::to_string(N) + " V=" + std::to_string(V);
  expect_near<T>("distill ce" + shape, ce_out, ce);
  expect_near<T>("distill KL(teacher || student)" + shape, kl_out, kl);
  expect_near<T>("distill gradient over the student logits" + shape, z, dz);
}

// The small kernels around the cuBLAS matmuls: bias add, the bias gradient
// (+=, column sums in a fixed order) and the in-place add of the INT8 path.
template <typename T>
void check_linear(int N, int OC) {
  auto out = rand_vec<T>((size_t)N * OC), bias = rand_vec<T>(OC), dout = rand_vec<T>((size_t)N * OC),
       dbias = rand_vec<T>(OC), y = rand_vec<T>((size_t)N * OC);
  std::vector<double> want_out((size_t)N * OC), want_db = widen(dbias), want_x((size_t)N * OC);
  for (int n = 0; n < N; n++)
    for (int o = 0; o < OC; o++) {
      const size_t i = (size_t)n * OC + o;
      want_out[i] = (double)tof(out[i]) + tof(bias[o]);
      want_db[o] += tof(dout[i]);
      want_x[i] = want_out[i];
    }
  fw::cuda::bias_add_forward(out.data(), bias.data(), N, OC, nullptr);
  fw::cuda::bias_backward(dbias.data(), dout.data(), N, OC, nullptr);
  std::vector<T> x(out);  // (out + bias) + y, rounded once more
  for (size_t i = 0; i < x.size(); i++) want_x[i] = (double)tof(x[i]) + tof(y[i]);
  fw::cuda::add_inplace(x.data(), y.data(), x.size(), nullptr);
  const std::string shape = " N=" + std::to_string(N) + " OC=" + std::to_string(OC);
  expect_near<T>("bias add" + shape, out, want_out);
  expect_near<T>("bias gradient (+=)" + shape, dbias, want_db);
  expect_near<T>("add in place" + shape, x, want_x);
}

// fp32 host values to T on the device (rounded to nearest even) and back.
template <typename T>
void check_cast(size_t n) {
  std::vector<float> host(n), back(n, NAN);
  for (auto& x : host) x = 100.0f * randn();
  std::vector<T> dev(n, fromf<T>(NAN));
  fw::cuda::upload_f32(dev.data(), host.data(), n, nullptr);
  fw::cuda::download_f32(back.data(), dev.data(), n, nullptr);
  std::vector<double> want(n);
  for (size_t i = 0; i < n; i++) want[i] = tof(fromf<T>(host[i]));  // exactly what T holds
  // the stored bits must be exactly the round-to-nearest-even ones
  std::vector<T> rne(n);
  for (size_t i = 0; i < n; i++) rne[i] = fromf<T>(host[i]);
  const bool exact = std::memcmp(rne.data(), dev.data(), n * sizeof(T)) == 0;
  failures += !exact;
  std::printf("%-6s upload_f32 stores round-to-nearest-even bits, n=%zu [%zu-byte T]\n", exact ? "OK" : "NOT OK", n,
              sizeof(T));
  expect_near<T>("download_f32 (T -> fp32) n=" + std::to_string(n), back, want);
}

// Causal GQA attention on the CUDA-core kernels (every type and head size
// here: bf16 at 64 / 128 would go to the tensor cores, tc_attention_emu's
// subject): forward (out, lse), backward (dq, dk, dv, with D computed by the
// launcher) against double references; then the cached forward: the first
// P tokens appended to a cache of S, the rest attending to it at pos0 = P.
template <typename T>
void check_attention(int B, int Tn, int NH, int KVH, int HS) {
  const int G = NH / KVH;
  const size_t nq = (size_t)B * Tn * NH * HS, nk = (size_t)B * Tn * KVH * HS;
  auto q = rand_vec<T>(nq), k = rand_vec<T>(nk), v = rand_vec<T>(nk), dout = rand_vec<T>(nq);
  const double sc = 1.0 / std::sqrt((double)HS);
  auto Q = [&](int b, int t, int h, int c) { return (double)tof(q[(((size_t)b * Tn + t) * NH + h) * HS + c]); };
  auto K = [&](int b, int t, int h, int c) { return (double)tof(k[(((size_t)b * Tn + t) * KVH + h) * HS + c]); };
  auto Vv = [&](int b, int t, int h, int c) { return (double)tof(v[(((size_t)b * Tn + t) * KVH + h) * HS + c]); };
  auto DO = [&](int b, int t, int h, int c) { return (double)tof(dout[(((size_t)b * Tn + t) * NH + h) * HS + c]); };
  std::vector<double> out(nq), lse((size_t)B * NH * Tn), dq(nq, 0.0), dk(nk, 0.0), dv(nk, 0.0);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++) {
      const int kh = h / G;
      for (int t = 0; t < Tn; t++) {
        std::vector<double> p(t + 1), dp(t + 1);
        double m = -INFINITY, l = 0;
        for (int j = 0; j <= t; j++) {
          double d = 0;
          for (int c = 0; c < HS; c++) d += Q(b, t, h, c) * K(b, j, kh, c);
          p[j] = d * sc;
          m = std::max(m, p[j]);
        }
        for (int j = 0; j <= t; j++) l += (p[j] = std::exp(p[j] - m));
        for (int j = 0; j <= t; j++) p[j] /= l;
        lse[((size_t)b * NH + h) * Tn + t] = m + std::log(l);
        double D = 0;
        for (int c = 0; c < HS; c++) {
          double o = 0;
          for (int j = 0; j <= t; j++) o += p[j] * Vv(b, j, kh, c);
          out[(((size_t)b * Tn + t) * NH + h) * HS + c] = o;
          D += o * DO(b, t, h, c);
        }
        for (int j = 0; j <= t; j++) {
          double d = 0;
          for (int c = 0; c < HS; c++) d += DO(b, t, h, c) * Vv(b, j, kh, c);
          dp[j] = p[j] * (d - D);  // dS
        }
        for (int j = 0; j <= t; j++)
          for (int c = 0; c < HS; c++) {
            dq[(((size_t)b * Tn + t) * NH + h) * HS + c] += dp[j] * K(b, j, kh, c) * sc;
            dk[(((size_t)b * Tn + j) * KVH + kh) * HS + c] += dp[j] * Q(b, t, h, c) * sc;
            dv[(((size_t)b * Tn + j) * KVH + kh) * HS + c] += p[j] * DO(b, t, h, c);
          }
      }
    }
  std::vector<T> o(nq, fromf<T>(NAN)), gq(nq, fromf<T>(NAN)), gk(nk, fromf<T>(NAN)), gv(nk, fromf<T>(NAN));
  std::vector<float> l((size_t)B * NH * Tn, NAN), scratch((size_t)B * NH * Tn, NAN);
  fw::cuda::attention_forward(o.data(), l.data(), q.data(), k.data(), v.data(), B, Tn, NH, KVH, HS, nullptr);
  fw::cuda::attention_backward(gq.data(), gk.data(), gv.data(), scratch.data(), dout.data(), o.data(), l.data(),
                               q.data(), k.data(), v.data(), B, Tn, NH, KVH, HS, nullptr);
  const std::string shape = " B=" + std::to_string(B) + " T=" + std::to_string(Tn) + " NH=" + std::to_string(NH) +
                            " KVH=" + std::to_string(KVH) + " HS=" + std::to_string(HS);
  expect_near<T>("attention forward" + shape, o, out);
  expect_near<T>("attention lse" + shape, l, lse);
  expect_near<T>("attention backward dq" + shape, gq, dq);
  expect_near<T>("attention backward dk" + shape, gk, dk);
  expect_near<T>("attention backward dv" + shape, gv, dv);

  // the cached forward: tokens P.. at pos0 = P over a cache holding 0..P-1
  const int P = Tn / 2, Tq = Tn - P, S = Tn + 3;
  std::vector<T> kc((size_t)B * KVH * S * HS, fromf<T>(NAN)), vc(kc);
  std::vector<T> kp((size_t)B * P * KVH * HS), vp(kp), kq((size_t)B * Tq * KVH * HS), vq(kq), qq((size_t)B * Tq * NH * HS);
  for (int b = 0; b < B; b++) {
    for (int t = 0; t < Tn; t++) {
      T* dk_ = t < P ? &kp[(((size_t)b * P + t) * KVH) * HS] : &kq[(((size_t)b * Tq + t - P) * KVH) * HS];
      T* dv_ = t < P ? &vp[(((size_t)b * P + t) * KVH) * HS] : &vq[(((size_t)b * Tq + t - P) * KVH) * HS];
      std::memcpy(dk_, &k[(((size_t)b * Tn + t) * KVH) * HS], (size_t)KVH * HS * sizeof(T));
      std::memcpy(dv_, &v[(((size_t)b * Tn + t) * KVH) * HS], (size_t)KVH * HS * sizeof(T));
      if (t >= P) std::memcpy(&qq[(((size_t)b * Tq + t - P) * NH) * HS], &q[(((size_t)b * Tn + t) * NH) * HS],
                              (size_t)NH * HS * sizeof(T));
    }
  }
  fw::cuda::kv_cache_append(kc.data(), vc.data(), kp.data(), vp.data(), B, P, KVH, S, HS, 0, nullptr);
  fw::cuda::kv_cache_append(kc.data(), vc.data(), kq.data(), vq.data(), B, Tq, KVH, S, HS, P, nullptr);
  std::vector<T> oc((size_t)B * Tq * NH * HS, fromf<T>(NAN));
  std::vector<float> lc((size_t)B * NH * Tq, NAN);
  fw::cuda::attention_cached_forward(oc.data(), lc.data(), qq.data(), kc.data(), vc.data(), B, Tq, NH, KVH, S, HS, P,
                                     nullptr);
  std::vector<double> want_oc(oc.size());
  for (int b = 0; b < B; b++)
    for (int t = 0; t < Tq; t++)
      for (int h = 0; h < NH; h++)
        for (int c = 0; c < HS; c++)
          want_oc[(((size_t)b * Tq + t) * NH + h) * HS + c] = out[(((size_t)b * Tn + t + P) * NH + h) * HS + c];
  expect_near<T>("attention over a KV cache at pos " + std::to_string(P) + shape, oc, want_oc);
}

// RoPE tables (angle in double, as the CPU's) and the rotation: forward
// against a reference at position pos0 + t, backward (the inverse
// rotation) as the transpose of forward.
template <typename T>
void check_rope(int B, int Tn, int H, int HS, int pos0) {
  const int S = pos0 + Tn, half = HS / 2;
  std::vector<float> cos_t((size_t)S * half, NAN), sin_t((size_t)S * half, NAN);
  fw::cuda::rope_tables(cos_t.data(), sin_t.data(), S, HS, 10000.0, nullptr);
  std::vector<double> want_cos(cos_t.size()), want_sin(sin_t.size());
  for (int p = 0; p < S; p++)
    for (int i = 0; i < half; i++) {
      const double a = p * std::pow(10000.0, -2.0 * i / HS);
      want_cos[(size_t)p * half + i] = std::cos(a), want_sin[(size_t)p * half + i] = std::sin(a);
    }
  const std::string shape = " B=" + std::to_string(B) + " T=" + std::to_string(Tn) + " H=" + std::to_string(H) +
                            " HS=" + std::to_string(HS) + " pos " + std::to_string(pos0);
  expect_near<T>("rope tables cos" + shape, cos_t, want_cos);
  expect_near<T>("rope tables sin" + shape, sin_t, want_sin);
  auto x = rand_vec<T>((size_t)B * Tn * H * HS);
  std::vector<T> y(x), g(x);
  std::vector<double> fwd(x.size()), bwd(x.size());
  for (int b = 0; b < B; b++)
    for (int t = 0; t < Tn; t++)
      for (int h = 0; h < H; h++)
        for (int i = 0; i < half; i++) {
          const size_t o = (((size_t)b * Tn + t) * H + h) * HS;
          const double c = cos_t[(size_t)(pos0 + t) * half + i], sn = sin_t[(size_t)(pos0 + t) * half + i];
          const double x1 = tof(x[o + i]), x2 = tof(x[o + i + half]);
          fwd[o + i] = x1 * c - x2 * sn, fwd[o + i + half] = x2 * c + x1 * sn;
          bwd[o + i] = x1 * c + x2 * sn, bwd[o + i + half] = x2 * c - x1 * sn;
        }
  fw::cuda::rope_forward(y.data(), cos_t.data(), sin_t.data(), B, Tn, H, HS, pos0, nullptr);
  fw::cuda::rope_backward(g.data(), cos_t.data(), sin_t.data(), B, Tn, H, HS, pos0, nullptr);
  expect_near<T>("rope forward" + shape, y, fwd);
  expect_near<T>("rope backward (the inverse rotation)" + shape, g, bwd);
}

template <typename T>
void check_type() {
  check_rope<T>(2, 5, 3, 16, 4);
  check_attention<T>(2, 21, 4, 2, 16);  // partial tiles, GQA, a batch
  check_attention<T>(1, 20, 2, 1, 64);  // HS 64 (fp32 / fp16: CUDA cores)
  check_cast<T>(2049);
  check_distill<T>(6, 77);
  check_linear<T>(45, 70);
  check_lora_dropout<T>(3000, 0x5EEDull, 0.3);
  check_adamw<T>(1500);
  check_norm_and_overflow<T>(2500);
  check_matmul_q8<T>(11, 45, 132);  // two passes of rows, 4-byte weight loads
  check_matmul_q8<T>(3, 21, 67);    // scalar weight loads
  check_rmsnorm<T>(37, 70);
  check_rmsnorm<T>(600, 48);  // three row chunks of 256 for dweight
  check_embedding<T>(50, 13, 24);
  check_embedding<T>(9, 200, 300);  // C over one block of 256
  check_swiglu<T>(1000);           // packed, when 16-byte aligned
  check_swiglu<T>(999);            // scalar
  check_crossentropy<T>(8, 77);    // scalar rows
  check_crossentropy<T>(6, 96);    // packed rows
}

}  // namespace

int main() {
  check_type<float>();
  check_type<bf16>();
  check_type<f16>();
  std::printf("ops_emu: %d check(s) failed\n", failures);
  return failures ? 1 : 0;
}
