// cuda_ops_test.cpp: every CUDA op against its CPU implementation, in fp32
// (relative error <= 1e-4) and bf16 (<= 1e-2); see cuda_test_util.h for the
// error measure. Shapes are small and deliberately ragged (not multiples of
// the kernels' tile sizes) so the edges are exercised; they double as the
// tiny config for compute-sanitizer.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cast.cuh"
#include "cuda_test_util.h"
#include "distill.h"
#include "embedding_plan.h"
#include "model.h"
#include "ops_embedding.cuh"
#include "ops_embedding.h"
#include "ops_loss.cuh"
#include "ops_loss.h"
#include "ops_rmsnorm.cuh"
#include "ops_rmsnorm.h"
#include "ops_rope.cuh"
#include "ops_rope.h"
#include "ops_swiglu.cuh"
#include "ops_swiglu.h"
#include "optim.cuh"
#include "optim.h"
#include "quant.cuh"
#include "quant.h"

using namespace fwcuda_test;

namespace {

template <typename T>
std::string label(const std::string& what) {
  return std::string(what) + " [" + type_name<T>() + "]";
}

template <typename T>
void check_embedding() {
  const int N = 29, C = 70, V = 11;
  std::vector<int32_t> tokens(N);
  for (int n = 0; n < N; n++) tokens[n] = (n * 7 + 3) % V;  // repeated ids
  tokens[5] = 2;  // an id that is not in any ascending run
  std::vector<float> wte = rounded<T>(randn((size_t)V * C, 1));
  std::vector<float> dout = rounded<T>(randn((size_t)N * C, 2));
  std::vector<float> dwte0 = rounded<T>(randn((size_t)V * C, 3));

  std::vector<float> out_ref((size_t)N * C), dwte_ref = dwte0;
  fw::embedding_forward(out_ref.data(), tokens.data(), wte.data(), N, C);
  fw::embedding_backward(dwte_ref.data(), dout.data(), tokens.data(), N, C);

  Dev<int32_t> d_tok(tokens);
  auto d_wte = dev<T>(wte), d_dout = dev<T>(dout), d_dwte = dev<T>(dwte0);
  Dev<T> d_out((size_t)N * C);
  fw::cuda::embedding_forward(d_out.get(), d_tok.get(), d_wte->get(), N, C, 0);
  fw::cuda::EmbeddingPlan plan;
  fw::cuda::embedding_plan(tokens.data(), N, plan);
  Dev<int32_t> d_ids(plan.ids), d_offsets(plan.offsets), d_positions(plan.positions);
  fw::cuda::embedding_backward(d_dwte->get(), d_dout->get(), d_ids.get(), d_offsets.get(), d_positions.get(),
                               plan.distinct(), C, 0);
  expect_parity(label<T>("embedding_forward out"), d_out.f32(), out_ref, tol<T>());
  expect_parity(label<T>("embedding_backward dwte"), d_dwte->f32(), dwte_ref, tol<T>());
  // fp32: the CPU's order of additions, so the same bits
  if (std::is_same<T, float>::value) {
    EXPECT_EQ(d_dwte->f32(), dwte_ref) << "embedding_backward fp32";
  }
}

template <typename T>
void check_rmsnorm() {
  // 19 rows: one partial sum for dweight; 600: three, the last one short
  for (const int N : {19, 600}) {
    const int C = 100;
    const std::string shape = " N" + std::to_string(N);
    std::vector<float> x = rounded<T>(randn((size_t)N * C, 4, 2.0));
    std::vector<float> w = rounded<T>(randn(C, 5));
    std::vector<float> dout = rounded<T>(randn((size_t)N * C, 6));
    std::vector<float> dx0 = rounded<T>(randn((size_t)N * C, 7));  // backward accumulates
    std::vector<float> dw0 = rounded<T>(randn(C, 8));

    std::vector<float> out_ref((size_t)N * C), rstd_ref(N), dx_ref = dx0, dw_ref = dw0;
    fw::rmsnorm_forward(out_ref.data(), rstd_ref.data(), x.data(), w.data(), N, C, 1e-5);
    fw::rmsnorm_backward(dx_ref.data(), dw_ref.data(), dout.data(), x.data(), w.data(), rstd_ref.data(), N, C);

    auto d_x = dev<T>(x), d_w = dev<T>(w), d_dout = dev<T>(dout), d_dx = dev<T>(dx0), d_dw = dev<T>(dw0);
    Dev<T> d_out((size_t)N * C);
    Dev<float> d_rstd(N);
    Dev<float> d_scratch(fw::cuda::rmsnorm_backward_scratch_floats(N, C));
    fw::cuda::rmsnorm_forward(d_out.get(), d_rstd.get(), d_x->get(), d_w->get(), N, C, 1e-5, 0);
    fw::cuda::rmsnorm_backward(d_dx->get(), d_dw->get(), d_dout->get(), d_x->get(), d_w->get(), d_rstd.get(), N, C,
                               d_scratch.get(), 0);
    expect_parity(label<T>("rmsnorm_forward out" + shape), d_out.f32(), out_ref, tol<T>());
    expect_parity(label<T>("rmsnorm_forward rstd" + shape), d_rstd.f32(), rstd_ref, 1e-4);
    expect_parity(label<T>("rmsnorm_backward dinp" + shape), d_dx->f32(), dx_ref, tol<T>());
    expect_parity(label<T>("rmsnorm_backward dweight" + shape), d_dw->f32(), dw_ref, tol<T>());
    // deterministic: the same call again adds exactly the same dweight
    std::vector<float> once = d_dw->f32();
    fw::cuda::rmsnorm_backward(d_dx->get(), d_dw->get(), d_dout->get(), d_x->get(), d_w->get(), d_rstd.get(), N, C,
                               d_scratch.get(), 0);
    std::vector<float> twice = d_dw->f32();
    auto d_dw_b = dev<T>(once);
    fw::cuda::rmsnorm_backward(d_dx->get(), d_dw_b->get(), d_dout->get(), d_x->get(), d_w->get(), d_rstd.get(), N, C,
                               d_scratch.get(), 0);
    EXPECT_EQ(d_dw_b->f32(), twice) << "rmsnorm_backward dweight is not deterministic" << shape;
  }
}

template <typename T>
void check_rope() {
  const int B = 2, Tn = 9, H = 3, HS = 48, pos0 = 5, S = 64;
  const double theta = 10000.0;
  std::vector<float> cos_ref((size_t)S * HS / 2), sin_ref((size_t)S * HS / 2);
  fw::rope_tables(cos_ref.data(), sin_ref.data(), S, HS, theta);
  std::vector<float> x = rounded<T>(randn((size_t)B * Tn * H * HS, 9));
  std::vector<float> y_ref = x, dx_ref = x;
  fw::rope_forward(y_ref.data(), cos_ref.data(), sin_ref.data(), B, Tn, H, HS, pos0);
  fw::rope_backward(dx_ref.data(), cos_ref.data(), sin_ref.data(), B, Tn, H, HS, pos0);

  Dev<float> d_cos(cos_ref.size()), d_sin(sin_ref.size());
  fw::cuda::rope_tables(d_cos.get(), d_sin.get(), S, HS, theta, 0);
  expect_parity("rope_tables cos", d_cos.f32(), cos_ref, 1e-6);
  expect_parity("rope_tables sin", d_sin.f32(), sin_ref, 1e-6);
  auto d_y = dev<T>(x), d_dx = dev<T>(x);
  fw::cuda::rope_forward(d_y->get(), d_cos.get(), d_sin.get(), B, Tn, H, HS, pos0, 0);
  fw::cuda::rope_backward(d_dx->get(), d_cos.get(), d_sin.get(), B, Tn, H, HS, pos0, 0);
  expect_parity(label<T>("rope_forward"), d_y->f32(), y_ref, tol<T>());
  expect_parity(label<T>("rope_backward"), d_dx->f32(), dx_ref, tol<T>());
}

template <typename T>
void check_swiglu() {
  // 1000: the 16-byte packed path; 1003: the scalar one. Same math, same bits.
  std::vector<std::vector<float>> outs;
  for (const size_t N : {size_t(1000), size_t(1003)}) {
    const std::string shape = " N" + std::to_string(N);
    std::vector<float> g = rounded<T>(randn(N, 10, 3.0)), u = rounded<T>(randn(N, 11));
    std::vector<float> dout = rounded<T>(randn(N, 12));
    std::vector<float> out_ref(N), dg_ref(N), du_ref(N);
    fw::swiglu_forward(out_ref.data(), g.data(), u.data(), N);
    fw::swiglu_backward(dg_ref.data(), du_ref.data(), dout.data(), g.data(), u.data(), N);
    auto d_g = dev<T>(g), d_u = dev<T>(u), d_dout = dev<T>(dout);
    Dev<T> d_out(N), d_dg(N), d_du(N);
    fw::cuda::swiglu_forward(d_out.get(), d_g->get(), d_u->get(), N, 0);
    fw::cuda::swiglu_backward(d_dg.get(), d_du.get(), d_dout->get(), d_g->get(), d_u->get(), N, 0);
    expect_parity(label<T>("swiglu_forward" + shape), d_out.f32(), out_ref, tol<T>());
    expect_parity(label<T>("swiglu_backward dgate" + shape), d_dg.f32(), dg_ref, tol<T>());
    expect_parity(label<T>("swiglu_backward dup" + shape), d_du.f32(), du_ref, tol<T>());
    std::vector<float> all = g;  // inputs, then the three outputs, first 1000 elements each
    for (const auto& v : {u, dout, d_out.f32(), d_dg.f32(), d_du.f32()}) all.insert(all.end(), v.begin(), v.end());
    std::vector<float> head;
    for (int k = 0; k < 6; k++) head.insert(head.end(), all.begin() + k * N, all.begin() + k * N + 1000);
    outs.push_back(head);
  }
  // the inputs' first 1000 elements agree between the two sizes, so must the outputs'
  ASSERT_TRUE(std::equal(outs[0].begin(), outs[0].begin() + 3000, outs[1].begin()));
  EXPECT_TRUE(std::equal(outs[0].begin() + 3000, outs[0].end(), outs[1].begin() + 3000))
      << label<T>("swiglu packed and scalar paths differ");
}

template <typename T>
void check_crossentropy() {
  // V 1037: rows read element by element; 1040: 16-byte packs (rows aligned)
  for (const int V : {1037, 1040}) {
    const int N = 13;
    const std::string shape = " V" + std::to_string(V);
    std::vector<float> logits = rounded<T>(randn((size_t)N * V, 13, 3.0));
    std::vector<int32_t> targets(N);
    for (int n = 0; n < N; n++) targets[n] = n % 4 == 1 ? fw::kIgnoreIndex : (n * 131) % V;
    const float scale = 1.0f / 10;  // 1 / (non-ignored count), as the model does
    std::vector<float> loss_ref(N), lse_ref(N), dlogits_ref((size_t)N * V);
    fw::crossentropy_forward(loss_ref.data(), lse_ref.data(), logits.data(), targets.data(), N, V);
    fw::crossentropy_backward(dlogits_ref.data(), logits.data(), lse_ref.data(), targets.data(), N, V, scale);

    Dev<int32_t> d_t(targets);
    auto d_logits = dev<T>(logits);
    Dev<float> d_loss(N), d_lse(N);
    Dev<T> d_dlogits((size_t)N * V);
    fw::cuda::crossentropy_forward(d_loss.get(), d_lse.get(), d_logits->get(), d_t.get(), N, V, 0);
    fw::cuda::crossentropy_backward(d_dlogits.get(), d_logits->get(), d_lse.get(), d_t.get(), N, V, scale, 0);
    // losses and lse are fp32 whatever T is; only the logits were rounded.
    expect_parity(label<T>("crossentropy_forward losses" + shape), d_loss.f32(), loss_ref, 1e-4);
    expect_parity(label<T>("crossentropy_forward lse" + shape), d_lse.f32(), lse_ref, 1e-4);
    expect_parity(label<T>("crossentropy_backward dlogits" + shape), d_dlogits.f32(), dlogits_ref, tol<T>());

    Dev<float> d_loss2(N);
    fw::cuda::crossentropy_forward_backward(d_logits->get(), d_loss2.get(), nullptr, d_t.get(), N, V, scale, 0);
    expect_parity(label<T>("crossentropy_forward_backward losses" + shape), d_loss2.f32(), loss_ref, 1e-4);
    expect_parity(label<T>("crossentropy_forward_backward dlogits" + shape), d_logits->f32(), dlogits_ref, tol<T>());
  }
}

// Distillation: the per-row ce / kl and the gradient written over the
// student's logits against distill_loss on the CPU (same rounded inputs),
// with ignored rows, and alpha at both ends of its range too.
template <typename T>
void check_distill() {
  const int N = 11, V = 1037;
  std::vector<float> student = rounded<T>(randn((size_t)N * V, 21, 3.0));
  std::vector<float> teacher = rounded<T>(randn((size_t)N * V, 22, 3.0));
  std::vector<int32_t> targets(N);
  for (int n = 0; n < N; n++) targets[n] = n % 5 == 2 ? fw::kIgnoreIndex : (n * 97) % V;
  const double normalizer = 9.0;  // the non-ignored rows
  for (const double alpha : {0.0, 0.4, 1.0}) {
    const double tau = 2.5;
    const std::string what = " alpha " + std::to_string(alpha).substr(0, 3);
    std::vector<float> d_ref((size_t)N * V);
    const fw::DistillLoss ref =
        fw::distill_loss(d_ref.data(), student.data(), teacher.data(), targets.data(), N, V, alpha, tau, normalizer);
    Dev<int32_t> d_t(targets);
    auto d_s = dev<T>(student);
    auto d_te = dev<T>(teacher);
    Dev<float> ce(N), kl(N);
    fw::cuda::distill_forward_backward(d_s->get(), ce.get(), kl.get(), d_te->get(), d_t.get(), N, V, (float)alpha,
                                       (float)tau, (float)(1.0 / normalizer), 0);
    double ce_sum = 0, kl_sum = 0;
    const std::vector<float> ce_h = ce.f32(), kl_h = kl.f32();
    for (int n = 0; n < N; n++) {
      ce_sum += ce_h[n];
      kl_sum += kl_h[n];
      if (targets[n] == fw::kIgnoreIndex) {
        EXPECT_EQ(ce_h[n], 0.0f);
        EXPECT_EQ(kl_h[n], 0.0f);
      }
    }
    expect_parity(label<T>("distill ce" + what), {(float)(ce_sum / normalizer)}, {(float)ref.ce}, 1e-4);
    expect_parity(label<T>("distill kl" + what), {(float)(kl_sum / normalizer)}, {(float)ref.kl}, 1e-4);
    expect_parity(label<T>("distill dlogits" + what), d_s->f32(), d_ref, tol<T>());
  }
  // out-of-range hyper-parameters are refused before any launch
  Dev<int32_t> d_t(targets);
  auto d_s = dev<T>(student);
  Dev<float> ce(N), kl(N);
  EXPECT_THROW(fw::cuda::distill_forward_backward(d_s->get(), ce.get(), kl.get(), d_s->get(), d_t.get(), N, V, 1.5f,
                                                  2.0f, 1.0f, 0),
               fw::Error);
  EXPECT_THROW(fw::cuda::distill_forward_backward(d_s->get(), ce.get(), kl.get(), d_s->get(), d_t.get(), N, V, 0.5f,
                                                  0.0f, 1.0f, 0),
               fw::Error);
}

// AdamW: two tensors, one with weight decay and one without, three steps.
// TC: the 16-bit working copy AdamW writes (bf16, or fp16 for fp16 training).
template <typename TG, typename TC = bf16>
void check_adamw() {
  fw::ParamLayout layout;
  layout.add("w", {40, 37}, true);
  layout.add("norm", {37}, false);
  fw::AdamWConfig cfg;
  fw::AdamWT<float> cpu;
  cpu.init(cfg, layout);
  std::vector<float> params = randn(layout.numel, 14);
  Dev<float> d_master(params), d_m(layout.numel), d_v(layout.numel);
  Dev<TC> d_bf(layout.numel);
  const double lr = 1e-2, gscale = 0.5;
  for (int64_t t = 1; t <= 3; t++) {
    std::vector<float> grads = rounded<TG>(randn(layout.numel, 100 + t));
    cpu.step(params.data(), grads.data(), layout, lr, t, gscale);
    auto d_g = dev<TG>(grads);
    for (const fw::TensorInfo& ti : layout.tensors) {
      fw::cuda::AdamWStep s;
      s.lr = (float)lr;
      s.beta1 = (float)cfg.beta1;
      s.beta2 = (float)cfg.beta2;
      s.eps = (float)cfg.eps;
      s.weight_decay = ti.decay ? (float)cfg.weight_decay : 0.0f;
      s.grad_scale = (float)gscale;
      s.t = t;
      fw::cuda::adamw_update<TG>(d_master.get() + ti.offset, d_bf.get() + ti.offset, d_m.get() + ti.offset,
                                 d_v.get() + ti.offset, d_g->get() + ti.offset, ti.numel, s, 0);
    }
  }
  // The update math is fp32 on both sides; only the grads' storage differs.
  expect_parity(label<TG>("adamw master"), d_master.f32(), params, 1e-4);
  expect_parity(label<TG>("adamw m"), d_m.f32(), cpu.m, 1e-4);
  expect_parity(label<TG>("adamw v"), d_v.f32(), cpu.v, 1e-4);
  // The bf16 working copy is written per tensor: compare tensor elements,
  // not the alignment padding between them (never touched by an update).
  std::vector<float> bf = d_bf.f32(), master = d_master.f32(), bf_got, bf_want, master_got;
  for (const fw::TensorInfo& ti : layout.tensors) {
    bf_got.insert(bf_got.end(), bf.begin() + ti.offset, bf.begin() + ti.offset + ti.numel);
    bf_want.insert(bf_want.end(), params.begin() + ti.offset, params.begin() + ti.offset + ti.numel);
    master_got.insert(master_got.end(), master.begin() + ti.offset, master.begin() + ti.offset + ti.numel);
  }
  expect_parity(label<TG>(std::string("adamw 16-bit copy ") + type_name<TC>()), bf_got, bf_want, 1e-2);
  EXPECT_EQ(bf_got, rounded<TC>(master_got)) << "the copy is the GPU's master rounded to nearest";
}

template <typename T>
void check_grad_norm() {
  const size_t n = 300001;
  std::vector<float> g = rounded<T>(randn(n, 15));
  const double ref = fw::grad_global_norm(g.data(), n);
  auto d_g = dev<T>(g);
  Dev<float> d_out(1), d_scratch(fw::cuda::global_norm_scratch_floats());
  fw::cuda::grad_sumsq<T>(d_out.get(), d_scratch.get(), d_g->get(), n, 0);
  const float s1 = d_out.f32()[0];
  expect_parity(label<T>("grad_sumsq"), {std::sqrt(s1)}, {(float)ref}, 1e-4);
  fw::cuda::grad_sumsq<T>(d_out.get(), d_scratch.get(), d_g->get(), n, 0);
  EXPECT_EQ(s1, d_out.f32()[0]) << "grad_sumsq is not deterministic";
}

template <typename T>
void check_matmul_q8(int N, int OC, int IC) {
  std::vector<float> w = randn((size_t)OC * IC, 16);
  fw::QuantMatrix qm = fw::quantize_q8(w.data(), OC, IC);
  std::vector<float> in = rounded<T>(randn((size_t)N * IC, 17)), bias = rounded<T>(randn(OC, 18));
  std::vector<float> out_ref((size_t)N * OC);
  fw::matmul_q8(out_ref.data(), in.data(), qm, bias.data(), N);
  Dev<int8_t> d_q(qm.q);
  Dev<float> d_scale(qm.scale);
  auto d_in = dev<T>(in), d_bias = dev<T>(bias);
  Dev<T> d_out((size_t)N * OC);
  fw::cuda::matmul_q8(d_out.get(), d_in->get(), d_q.get(), d_scale.get(), d_bias->get(), N, OC, IC, 0);
  expect_parity(label<T>(("matmul_q8 N=" + std::to_string(N) + " IC=" + std::to_string(IC)).c_str()), d_out.f32(),
                out_ref, tol<T>());
}

}  // namespace

TEST(cuda_ops, embedding_matches_cpu) {
  FW_REQUIRE_GPU();
  check_embedding<float>();
  check_embedding<bf16>();
  check_embedding<f16>();
}

TEST(cuda_ops, rmsnorm_matches_cpu) {
  FW_REQUIRE_GPU();
  check_rmsnorm<float>();
  check_rmsnorm<bf16>();
  check_rmsnorm<f16>();
}

TEST(cuda_ops, rope_matches_cpu) {
  FW_REQUIRE_GPU();
  check_rope<float>();
  check_rope<bf16>();
  check_rope<f16>();
}

TEST(cuda_ops, swiglu_matches_cpu) {
  FW_REQUIRE_GPU();
  check_swiglu<float>();
  check_swiglu<bf16>();
  check_swiglu<f16>();
}

TEST(cuda_ops, crossentropy_matches_cpu_with_ignore_index) {
  FW_REQUIRE_GPU();
  check_crossentropy<float>();
  check_crossentropy<bf16>();
  check_crossentropy<f16>();
}

TEST(cuda_ops, distillation_matches_cpu) {
  FW_REQUIRE_GPU();
  check_distill<float>();
  check_distill<bf16>();
  check_distill<f16>();
}

TEST(cuda_ops, adamw_matches_cpu) {
  FW_REQUIRE_GPU();
  check_adamw<float>();
  check_adamw<bf16>();
  check_adamw<f16, f16>();
}

TEST(cuda_ops, grad_norm_matches_cpu_and_is_deterministic) {
  FW_REQUIRE_GPU();
  check_grad_norm<float>();
  check_grad_norm<bf16>();
  check_grad_norm<f16>();  // every fp16 step's norm
}

TEST(cuda_ops, matmul_q8_matches_cpu) {
  FW_REQUIRE_GPU();
  for (int N : {1, 5, 64}) {
    check_matmul_q8<float>(N, 45, 132);
    check_matmul_q8<bf16>(N, 45, 132);
    check_matmul_q8<f16>(N, 45, 132);
  }
  check_matmul_q8<float>(3, 20, 67);  // IC not a multiple of 4: scalar path
}

TEST(cuda_ops, casts_round_trip) {
  FW_REQUIRE_GPU();
  const size_t n = 5000;
  std::vector<float> x = randn(n, 19);
  Dev<float> d_x(x), d_back(n);
  Dev<bf16> d_b(n);
  fw::cuda::cast_f32_to_bf16(d_b.get(), d_x.get(), n, 0);
  fw::cuda::cast_bf16_to_f32(d_back.get(), d_b.get(), n, 0);
  expect_parity("cast f32 -> bf16 -> f32 vs host rounding", d_back.f32(), rounded<bf16>(x), 0.0);
  expect_parity("cast f32 -> bf16 -> f32 vs input", d_back.f32(), x, 1e-2);
}

TEST(cuda_ops, grad_unscale_check_finds_overflow) {
  FW_REQUIRE_GPU();
  const size_t n = 100000;
  const float scale = 1024.0f;
  std::vector<float> g = randn(n, 20);
  std::vector<float> scaled(n);
  for (size_t i = 0; i < n; i++) scaled[i] = g[i] * scale;
  Dev<float> d_g(scaled);
  Dev<int> d_found(1);
  fw::cuda::grad_unscale_check(d_g.get(), n, 1.0f / scale, d_found.get(), 0);
  expect_parity("grad_unscale_check fp32", d_g.f32(), g, 1e-6);
  EXPECT_EQ(d_found.host()[0], 0);

  // fp16 grads: one inf in the middle must be found.
  std::vector<__half> h(n);
  for (size_t i = 0; i < n; i++) h[i] = __float2half_rn(scaled[i]);
  h[n / 2] = __float2half_rn(INFINITY);
  Dev<__half> d_h(h);
  fw::cuda::grad_unscale_check(d_h.get(), n, 1.0f / scale, d_found.get(), 0);
  EXPECT_EQ(d_found.host()[0], 1);
}

TEST(cuda_ops, loss_scaler_backs_off_and_grows) {
  fw::cuda::LossScaler s;
  s.scale = 1024.0f;
  s.growth_interval = 3;
  EXPECT_FALSE(s.update(true));  // overflow: skip the step, halve the scale
  EXPECT_EQ(s.scale, 512.0f);
  EXPECT_TRUE(s.update(false));
  EXPECT_TRUE(s.update(false));
  EXPECT_EQ(s.scale, 512.0f);
  EXPECT_TRUE(s.update(false));  // third good step in a row: grow
  EXPECT_EQ(s.scale, 1024.0f);
  for (int i = 0; i < 20; i++) s.update(true);
  EXPECT_EQ(s.scale, 1.0f);  // never below 1
}
