// cuda_lora_test.cpp: LoRA forward/backward of one projection on the GPU
// against LoraT on the CPU, without dropout and with it (the GPU must drop
// exactly the elements the CPU drops), fp32 and bf16.
#include <vector>

#include <nlohmann/json.hpp>

#include "cuda_test_util.h"
#include "lora.h"
#include "lora_cublas.h"

using namespace fwcuda_test;

namespace {

template <typename T>
void check_lora(fw::cuda::Blas& blas, int l, int m, double dropout, uint64_t drop_key) {
  fw::Config cfg = fw::config_from_json(nlohmann::json{{"model_type", "llama"},
                                                       {"vocab_size", 50},
                                                       {"hidden_size", 32},
                                                       {"intermediate_size", 48},
                                                       {"num_hidden_layers", 2},
                                                       {"num_attention_heads", 4},
                                                       {"num_key_value_heads", 2}});
  fw::LoraConfig lc;
  lc.rank = 4;
  lc.alpha = 8.0;
  lc.dropout = dropout;
  lc.target_modules = {"q_proj", "v_proj", "down_proj"};
  fw::LoraT<float> lora(cfg, lc);
  lora.init(7);
  const int r = lc.rank;
  const fw::TensorInfo& ta = lora.layout.tensors[lora.a_index[(size_t)l * fw::kLoraModules + m]];
  const fw::TensorInfo& tb = lora.layout.tensors[lora.b_index[(size_t)l * fw::kLoraModules + m]];
  const int IN = (int)ta.shape[1], OUT = (int)tb.shape[0], N = 23;
  // A from init, B random (init zeroes it, which would make every check trivial).
  std::vector<float> A = rounded<T>(std::vector<float>(lora.A(l, m), lora.A(l, m) + (size_t)r * IN));
  std::vector<float> B = rounded<T>(randn((size_t)OUT * r, 60, 0.5));
  std::copy(A.begin(), A.end(), lora.A(l, m));
  std::copy(B.begin(), B.end(), lora.Bm(l, m));
  std::vector<float> x = rounded<T>(randn((size_t)N * IN, 61)), dout = rounded<T>(randn((size_t)N * OUT, 62));
  std::vector<float> out0 = rounded<T>(randn((size_t)N * OUT, 63)), dinp0 = rounded<T>(randn((size_t)N * IN, 64));

  std::vector<float> out_ref = out0, dinp_ref = dinp0;
  lora.zero_grad();
  lora.forward(l, m, out_ref.data(), x.data(), N, IN, OUT, drop_key);
  lora.backward(l, m, dinp_ref.data(), dout.data(), x.data(), N, IN, OUT, drop_key);
  std::vector<float> dA_ref(lora.dA(l, m), lora.dA(l, m) + (size_t)r * IN);
  std::vector<float> dB_ref(lora.dB(l, m), lora.dB(l, m) + (size_t)OUT * r);

  fw::cuda::LoraDims d;
  d.N = N;
  d.IN = IN;
  d.OUT = OUT;
  d.r = r;
  d.scale = (float)lora.scale;
  d.dropout = dropout;
  d.key = fw::cuda::lora_dropout_key(drop_key, l, m);
  auto d_x = dev<T>(x), d_dout = dev<T>(dout), d_out = dev<T>(out0), d_dinp = dev<T>(dinp0);
  auto d_A = dev<T>(A), d_B = dev<T>(B);
  Dev<T> d_u((size_t)N * r), d_du((size_t)N * r), d_xd((size_t)N * IN), d_dA((size_t)r * IN), d_dB((size_t)OUT * r);
  fw::cuda::lora_forward<T>(blas, d_out->get(), d_u.get(), d_xd.get(), d_x->get(), d_A->get(), d_B->get(), d, 0);
  fw::cuda::lora_backward<T>(blas, d_dinp->get(), d_dA.get(), d_dB.get(), d_du.get(), d_xd.get(), d_dout->get(),
                             d_x->get(), d_u.get(), d_A->get(), d_B->get(), d, 0);
  const std::string t = " l" + std::to_string(l) + " m" + std::to_string(m) + " p" + std::to_string(dropout) + " [" +
                        type_name<T>() + "]";
  expect_parity("lora_forward out" + t, d_out->f32(), out_ref, tol<T>());
  expect_parity("lora_backward dA" + t, d_dA.f32(), dA_ref, tol<T>());
  expect_parity("lora_backward dB" + t, d_dB.f32(), dB_ref, tol<T>());
  expect_parity("lora_backward dinp" + t, d_dinp->f32(), dinp_ref, tol<T>());
}

}  // namespace

TEST(cuda_lora, matches_cpu_without_dropout) {
  FW_REQUIRE_GPU();
  fw::cuda::Blas blas;
  check_lora<float>(blas, 1, 2, 0.0, 5);  // v_proj (C -> KVH*HS)
  check_lora<float>(blas, 0, 6, 0.0, 0);  // down_proj (I -> C), eval
  check_lora<bf16>(blas, 1, 2, 0.0, 5);
}

TEST(cuda_lora, dropout_mask_matches_cpu) {
  FW_REQUIRE_GPU();
  fw::cuda::Blas blas;
  check_lora<float>(blas, 1, 2, 0.3, 12345);
  check_lora<float>(blas, 0, 0, 0.5, 99);  // q_proj
  check_lora<bf16>(blas, 1, 6, 0.3, 777);
}

TEST(cuda_lora, dropout_key_is_zero_in_eval) {
  EXPECT_EQ(fw::cuda::lora_dropout_key(0, 1, 2), 0u);
  EXPECT_NE(fw::cuda::lora_dropout_key(5, 1, 2), fw::cuda::lora_dropout_key(5, 1, 3));
}
