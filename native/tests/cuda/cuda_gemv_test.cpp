// cuda_gemv_test.cpp: the decode GEMVs (gemv.cuh) against the CPU's
// fw::linear_forward and fw::swiglu_forward, for 1 to 8 rows, fp32 / bf16 /
// fp16: three projections with biases in one launch, in-place accumulation
// into a residual buffer, the fused gate/up/SwiGLU, and refusal of shapes
// that do not fit.
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "gemv.cuh"
#include "ops_linear.h"
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
}

}  // namespace

TEST(cuda_gemv, projections_accumulation_and_swiglu_match_cpu) {
  FW_REQUIRE_GPU();
  check_gemv<float>();
  check_gemv<bf16>();
  check_gemv<f16>();
}
