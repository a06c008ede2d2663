// cuda_gemv_test.cpp: the decode GEMVs (gemv.cuh) against the CPU's
// fw::linear_forward and fw::swiglu_forward, for 1 to 8 rows, fp32 / bf16 /
// fp16: three projections with biases in one launch, in-place accumulation
// into a residual buffer, the fused gate/up/SwiGLU, the RMSNorm folded into
// both (bit for bit the unfused pair), the q/k/v projections with RoPE and
// the cache append folded in (bit for bit gemv_rmsnorm + rope_append_dpos),
// and refusal of shapes that do not fit.
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "decode.cuh"
#include "gemv.cuh"
#include "ops_linear.h"
#include "ops_rmsnorm.cuh"
#include "ops_rmsnorm.h"
#include "ops_rope.cuh"
#include "ops_swiglu.h"

using namespace fwcuda_test;

namespace {

template <typename T>
void check_gemv_rows(int N) {
  const int IC = 96;
  const int oc[3] = {40, 24, 24};  // q, k, v-like
  const std::string tag = " N" + std::to_string(N) + " [" + type_name<T>() + "]";
  std::vector<float> x = rounded<T>(randn((size_t)N * IC, 60 + N));
  std::vector<std::unique_ptr<Dev<T>>> dw, db, dout;
  std::vector<std::vector<float>> want;
  std::vector<fw::cuda::GemvOut<T>> outs;
  for (int s = 0; s < 3; s++) {
    std::vector<float> w = rounded<T>(randn((size_t)oc[s] * IC, 70 + s));
    std::vector<float> b = rounded<T>(randn(oc[s], 80 + s));
    std::vector<float> ref((size_t)N * oc[s]);
    fw::linear_forward(ref.data(), x.data(), w.data(), s == 1 ? nullptr : b.data(), N, IC, oc[s]);
    want.push_back(ref);
    dw.push_back(dev<T>(w));
    db.push_back(dev<T>(b));
    dout.push_back(std::make_unique<Dev<T>>((size_t)N * oc[s]));
    outs.push_back({dw[s]->get(), s == 1 ? nullptr : db[s]->get(), dout[s]->get(), oc[s]});
  }
  auto dx = dev<T>(x);
  fw::cuda::gemv(dx->get(), N, IC, outs.data(), 3, false, 0);
  for (int s = 0; s < 3; s++)
    expect_parity("gemv projection " + std::to_string(s) + tag, dout[s]->f32(), want[s], tol<T>());

  // accumulate: y += x @ w^T (the residual stream)
  std::vector<float> y0 = rounded<T>(randn((size_t)N * oc[0], 90));
  auto dy = dev<T>(y0);
  const fw::cuda::GemvOut<T> acc = {dw[0]->get(), nullptr, dy->get(), oc[0]};
  fw::cuda::gemv(dx->get(), N, IC, &acc, 1, true, 0);
  std::vector<float> nobias((size_t)N * oc[0]);
  std::vector<float> w0 = dw[0]->f32();
  fw::linear_forward(nobias.data(), x.data(), w0.data(), (const float*)nullptr, N, IC, oc[0]);
  for (size_t i = 0; i < y0.size(); i++) y0[i] += nobias[i];
  expect_parity("gemv accumulate" + tag, dy->f32(), y0, tol<T>());

  // gate / up / SwiGLU fused: the gate and up values are rounded to T as
  // the unfused path stores them
  const int I = 56;
  std::vector<float> wg = rounded<T>(randn((size_t)I * IC, 91)), wu = rounded<T>(randn((size_t)I * IC, 92));
  std::vector<float> g((size_t)N * I), u((size_t)N * I), h((size_t)N * I);
  fw::linear_forward(g.data(), x.data(), wg.data(), (const float*)nullptr, N, IC, I);
  fw::linear_forward(u.data(), x.data(), wu.data(), (const float*)nullptr, N, IC, I);
  g = rounded<T>(g);
  u = rounded<T>(u);
  fw::swiglu_forward(h.data(), g.data(), u.data(), h.size());
  auto dwg = dev<T>(wg), dwu = dev<T>(wu);
  Dev<T> dh((size_t)N * I);
  fw::cuda::gemv_swiglu(dh.get(), dx->get(), dwg->get(), dwu->get(), N, IC, I, 0);
  expect_parity("gemv_swiglu" + tag, dh.f32(), h, tol<T>());

  // RMSNorm folded in: the same bits as rmsnorm_forward, then the GEMV on
  // its stored output, and the CPU's rmsnorm + linear within tolerance
  std::vector<float> nw = rounded<T>(randn(IC, 93, 0.5));
  for (float& v : nw) v = to_float(from_float<T>(v + 1.0f));
  auto dnw = dev<T>(nw);
  Dev<T> ln((size_t)N * IC);
  Dev<float> rstd(N);
  const float eps = 1e-5f;
  fw::cuda::rmsnorm_forward(ln.get(), rstd.get(), dx->get(), dnw->get(), N, IC, eps, 0);
  Dev<T> two_q((size_t)N * oc[0]), two_k((size_t)N * oc[1]), one_q((size_t)N * oc[0]), one_k((size_t)N * oc[1]);
  const fw::cuda::GemvOut<T> two[2] = {{dw[0]->get(), db[0]->get(), two_q.get(), oc[0]},
                                       {dw[1]->get(), nullptr, two_k.get(), oc[1]}};
  const fw::cuda::GemvOut<T> one[2] = {{dw[0]->get(), db[0]->get(), one_q.get(), oc[0]},
                                       {dw[1]->get(), nullptr, one_k.get(), oc[1]}};
  fw::cuda::gemv(ln.get(), N, IC, two, 2, false, 0);
  fw::cuda::gemv_rmsnorm(dx->get(), dnw->get(), eps, N, IC, one, 2, 0);
  expect_parity("gemv_rmsnorm == rmsnorm_forward + gemv" + tag, one_q.f32(), two_q.f32(), 0.0);
  expect_parity("gemv_rmsnorm == rmsnorm_forward + gemv (2nd)" + tag, one_k.f32(), two_k.f32(), 0.0);
  std::vector<float> ln_ref((size_t)N * IC), rstd_ref(N), q_ref((size_t)N * oc[0]);
  fw::rmsnorm_forward(ln_ref.data(), rstd_ref.data(), x.data(), nw.data(), N, IC, eps);
  ln_ref = rounded<T>(ln_ref);
  std::vector<float> w0q = dw[0]->f32(), b0 = db[0]->f32();
  fw::linear_forward(q_ref.data(), ln_ref.data(), w0q.data(), b0.data(), N, IC, oc[0]);
  expect_parity("gemv_rmsnorm vs cpu rmsnorm + linear" + tag, one_q.f32(), q_ref, tol<T>());
  Dev<T> h_two((size_t)N * I), h_one((size_t)N * I);
  fw::cuda::gemv_swiglu(h_two.get(), ln.get(), dwg->get(), dwu->get(), N, IC, I, 0);
  fw::cuda::gemv_swiglu_rmsnorm(h_one.get(), dx->get(), dnw->get(), eps, dwg->get(), dwu->get(), N, IC, I, 0);
  expect_parity("gemv_swiglu_rmsnorm == rmsnorm_forward + gemv_swiglu" + tag, h_one.f32(), h_two.f32(), 0.0);

  // an lm_head-like projection: more channels than one wave of blocks
  // holds, so each block loops (and computes 1/rms once)
  const int V = 20011;
  auto wl = dev<T>(rounded<T>(randn((size_t)V * IC, 94)));
  Dev<T> l_two((size_t)N * V), l_one((size_t)N * V);
  const fw::cuda::GemvOut<T> lm_two = {wl->get(), nullptr, l_two.get(), V}, lm_one = {wl->get(), nullptr, l_one.get(), V};
  fw::cuda::gemv(ln.get(), N, IC, &lm_two, 1, false, 0);
  fw::cuda::gemv_rmsnorm(dx->get(), dnw->get(), eps, N, IC, &lm_one, 1, 0);
  expect_parity("gemv_rmsnorm == rmsnorm_forward + gemv, " + std::to_string(V) + " channels" + tag, l_one.f32(),
                l_two.f32(), 0.0);
  std::vector<float> l_ref((size_t)N * V), wl_h = wl->f32();
  fw::linear_forward(l_ref.data(), ln_ref.data(), wl_h.data(), (const float*)nullptr, N, IC, V);
  expect_parity("gemv_rmsnorm vs cpu, " + std::to_string(V) + " channels" + tag, l_one.f32(), l_ref, tol<T>());
}

// gemv_rmsnorm_qkv_rope against gemv_rmsnorm + rope_append_dpos from the
// same inputs and caches: q, k, v and both caches must be the same bits.
template <typename T>
void check_qkv_rope(int B, int Tq, int pos) {
  const int IC = 96, NH = 4, KVH = 2, HS = 16, S = 40, QD = NH * HS, KD = KVH * HS, N = B * Tq;
  const std::string tag = " B" + std::to_string(B) + " Tq" + std::to_string(Tq) + " pos" + std::to_string(pos) +
                          " [" + type_name<T>() + "]";
  const uint64_t seed = 300 + 10 * N + pos;
  auto x = dev<T>(rounded<T>(randn((size_t)N * IC, seed)));
  std::vector<float> nw = rounded<T>(randn(IC, seed + 1, 0.5));
  for (float& v : nw) v = to_float(from_float<T>(v + 1.0f));
  auto dnw = dev<T>(nw);
  auto wq = dev<T>(rounded<T>(randn((size_t)QD * IC, seed + 2))), bq = dev<T>(rounded<T>(randn(QD, seed + 3)));
  auto wk = dev<T>(rounded<T>(randn((size_t)KD * IC, seed + 4)));  // no k bias
  auto wv = dev<T>(rounded<T>(randn((size_t)KD * IC, seed + 5))), bv = dev<T>(rounded<T>(randn(KD, seed + 6)));
  const std::vector<float> kc0 = rounded<T>(randn((size_t)B * KVH * S * HS, seed + 7)),
                           vc0 = rounded<T>(randn((size_t)B * KVH * S * HS, seed + 8));
  auto kc1 = dev<T>(kc0), vc1 = dev<T>(vc0), kc2 = dev<T>(kc0), vc2 = dev<T>(vc0);
  Dev<float> cos_t((size_t)S * HS / 2), sin_t((size_t)S * HS / 2);
  fw::cuda::rope_tables(cos_t.get(), sin_t.get(), S, HS, 10000.0, 0);
  Dev<int> d_pos(std::vector<int>{pos});
  const float eps = 1e-5f;

  Dev<T> q1((size_t)N * QD), k1((size_t)N * KD), v1((size_t)N * KD);
  const fw::cuda::GemvOut<T> qkv[3] = {
      {wq->get(), bq->get(), q1.get(), QD}, {wk->get(), nullptr, k1.get(), KD}, {wv->get(), bv->get(), v1.get(), KD}};
  fw::cuda::gemv_rmsnorm(x->get(), dnw->get(), eps, N, IC, qkv, 3, 0);
  fw::cuda::rope_append_dpos<T>(q1.get(), k1.get(), v1.get(), kc1->get(), vc1->get(), cos_t.get(), sin_t.get(), B,
                                Tq, NH, KVH, S, HS, d_pos.get(), 0);

  Dev<T> q2((size_t)N * QD), k2((size_t)N * KD), v2((size_t)N * KD);
  fw::cuda::QkvRope<T> a;
  a.wq = wq->get(), a.bq = bq->get(), a.wk = wk->get(), a.bk = nullptr, a.wv = wv->get(), a.bv = bv->get();
  a.q = q2.get(), a.k = k2.get(), a.v = v2.get(), a.k_cache = kc2->get(), a.v_cache = vc2->get();
  a.cos_t = cos_t.get(), a.sin_t = sin_t.get(), a.d_pos = d_pos.get();
  a.NH = NH, a.KVH = KVH, a.HS = HS, a.Tq = Tq, a.S = S;
  fw::cuda::gemv_rmsnorm_qkv_rope(x->get(), dnw->get(), eps, N, IC, a, 0);

  expect_parity("qkv_rope q" + tag, q2.f32(), q1.f32(), 0.0);
  expect_parity("qkv_rope k" + tag, k2.f32(), k1.f32(), 0.0);
  expect_parity("qkv_rope v" + tag, v2.f32(), v1.f32(), 0.0);
  expect_parity("qkv_rope key cache" + tag, kc2->f32(), kc1->f32(), 0.0);
  expect_parity("qkv_rope value cache" + tag, vc2->f32(), vc1->f32(), 0.0);
}

template <typename T>
void check_gemv() {
  for (int N = 1; N <= fw::cuda::kGemvMaxRows; N++) check_gemv_rows<T>(N);
  EXPECT_FALSE(fw::cuda::gemv_fits<T>(fw::cuda::kGemvMaxRows + 1, 96));
  EXPECT_FALSE(fw::cuda::gemv_fits<T>(1, 97));  // rows not 16-byte aligned
  EXPECT_TRUE(fw::cuda::gemv_fits<T>(1, 96));
  Dev<T> x(9 * 96), w(96 * 4), out(9 * 4);
  const fw::cuda::GemvOut<T> o = {w.get(), nullptr, out.get(), 4};
  EXPECT_THROW(fw::cuda::gemv(x.get(), 9, 96, &o, 1, false, 0), fw::Error);
  // (B, Tq, position): one token, a batch, several tokens per sequence, the
  // last cache slots
  check_qkv_rope<T>(1, 1, 0);
  check_qkv_rope<T>(3, 1, 17);
  check_qkv_rope<T>(2, 4, 9);
  check_qkv_rope<T>(1, 8, 32);
  check_qkv_rope<T>(8, 1, 39);
}

}  // namespace

TEST(cuda_gemv, projections_accumulation_swiglu_folded_rmsnorm_and_rope_match) {
  FW_REQUIRE_GPU();
  check_gemv<float>();
  check_gemv<bf16>();
  check_gemv<f16>();
}
