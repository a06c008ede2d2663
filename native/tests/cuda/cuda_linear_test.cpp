// cuda_linear_test.cpp: the cuBLAS GEMM (row-major, every transpose case) and
// the Linear layer built on it against the CPU's fw::gemm / linear_*.
#include <vector>

#include "cuda_test_util.h"
#include "gemm_cublas.h"
#include "ops_gemm.h"
#include "ops_linear.h"

using namespace fwcuda_test;

namespace {

template <typename T>
void check_gemm(fw::cuda::Blas& blas, bool ta, bool tb) {
  const int M = 33, N = 47, K = 70;
  // Stored shapes: A (M, K) or (K, M) when transposed; B (K, N) or (N, K).
  const int lda = ta ? M : K, ldb = tb ? K : N, ldc = N;
  std::vector<float> A = rounded<T>(randn((size_t)M * K, 40)), B = rounded<T>(randn((size_t)K * N, 41));
  std::vector<float> C = rounded<T>(randn((size_t)M * N, 42));
  std::vector<float> ref = C;
  fw::gemm(ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 1.0f, ref.data(), ldc);
  auto dA = dev<T>(A), dB = dev<T>(B), dC = dev<T>(C);
  fw::cuda::gemm<T>(blas, ta, tb, M, N, K, 0.5f, dA->get(), lda, dB->get(), ldb, 1.0f, dC->get(), ldc, 0);
  expect_parity(std::string("gemm ta=") + (ta ? "1" : "0") + " tb=" + (tb ? "1" : "0") + " [" + type_name<T>() +
                    "]",
                dC->f32(), ref, tol<T>());
}

template <typename T>
void check_linear(fw::cuda::Blas& blas) {
  const int N = 21, IC = 64, OC = 40;
  std::vector<float> x = rounded<T>(randn((size_t)N * IC, 43)), w = rounded<T>(randn((size_t)OC * IC, 44));
  std::vector<float> b = rounded<T>(randn(OC, 45)), dout = rounded<T>(randn((size_t)N * OC, 46));
  std::vector<float> dx0 = rounded<T>(randn((size_t)N * IC, 47)), dw0 = rounded<T>(randn((size_t)OC * IC, 48));
  std::vector<float> db0 = rounded<T>(randn(OC, 49));
  std::vector<float> out_ref((size_t)N * OC), dx_ref = dx0, dw_ref = dw0, db_ref = db0;
  fw::linear_forward(out_ref.data(), x.data(), w.data(), b.data(), N, IC, OC);
  fw::linear_backward(dx_ref.data(), dw_ref.data(), db_ref.data(), dout.data(), x.data(), w.data(), N, IC, OC, true);

  auto d_x = dev<T>(x), d_w = dev<T>(w), d_b = dev<T>(b), d_dout = dev<T>(dout);
  auto d_dx = dev<T>(dx0), d_dw = dev<T>(dw0), d_db = dev<T>(db0);
  Dev<T> d_out((size_t)N * OC);
  fw::cuda::linear_forward<T>(blas, d_out.get(), d_x->get(), d_w->get(), d_b->get(), N, IC, OC, 0);
  fw::cuda::linear_backward<T>(blas, d_dx->get(), d_dw->get(), d_db->get(), d_dout->get(), d_x->get(), d_w->get(), N,
                               IC, OC, true, 0);
  const std::string t = std::string(" [") + type_name<T>() + "]";
  expect_parity("linear_forward out" + t, d_out.f32(), out_ref, tol<T>());
  expect_parity("linear_backward dinp (accumulated)" + t, d_dx->f32(), dx_ref, tol<T>());
  expect_parity("linear_backward dweight" + t, d_dw->f32(), dw_ref, tol<T>());
  expect_parity("linear_backward dbias" + t, d_db->f32(), db_ref, tol<T>());
}

}  // namespace

TEST(cuda_linear, gemm_matches_cpu_for_every_transpose) {
  FW_REQUIRE_GPU();
  fw::cuda::Blas blas;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      check_gemm<float>(blas, ta, tb);
      check_gemm<bf16>(blas, ta, tb);
    }
}

TEST(cuda_linear, linear_forward_backward_match_cpu) {
  FW_REQUIRE_GPU();
  fw::cuda::Blas blas;
  check_linear<float>(blas);
  check_linear<bf16>(blas);
}
