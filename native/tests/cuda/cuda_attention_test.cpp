// cuda_attention_test.cpp: the tiled attention kernels against the CPU's
// attention (which materialises att (B, NH, T, T)): forward output, and dq,
// dk, dv of backward, for GQA and plain MHA, head sizes from 16 to the
// kernel's 128 (40: not a multiple of 32), T not a multiple of the tiles.
// bf16 with HS 64 / 128 runs the tensor-core kernels (ops_attention_tc.cu):
// their cases cover T = 1, ragged T around the 64-row tiles, GQA and MHA.
// Then KV-cache decode: a prefill plus one token at a time equals the full
// causal forward over the whole sequence.
#include <cstdint>
#include <vector>

#include "cuda_test_util.h"
#include "ops_attention.cuh"
#include "ops_attention.h"

using namespace fwcuda_test;

namespace {

struct AttnCase {
  int B, T, NH, KVH, HS;
};

std::string name_of(const AttnCase& c, const char* what, const char* type) {
  return std::string(what) + " B" + std::to_string(c.B) + " T" + std::to_string(c.T) + " NH" +
         std::to_string(c.NH) + " KVH" + std::to_string(c.KVH) + " HS" + std::to_string(c.HS) + " [" + type + "]";
}

template <typename T>
void check_attention(const AttnCase& c, uint64_t seed) {
  const size_t nq = (size_t)c.B * c.T * c.NH * c.HS, nk = (size_t)c.B * c.T * c.KVH * c.HS;
  std::vector<float> q = rounded<T>(randn(nq, seed)), k = rounded<T>(randn(nk, seed + 1)),
                     v = rounded<T>(randn(nk, seed + 2)), dout = rounded<T>(randn(nq, seed + 3));
  std::vector<float> out_ref(nq), att((size_t)c.B * c.NH * c.T * c.T), dq_ref(nq), dk_ref(nk), dv_ref(nk);
  std::vector<float> scratch((size_t)c.T * c.T);
  fw::attention_forward(out_ref.data(), att.data(), q.data(), k.data(), v.data(), c.B, c.T, c.NH, c.KVH, c.HS);
  fw::attention_backward(dq_ref.data(), dk_ref.data(), dv_ref.data(), scratch.data(), dout.data(), att.data(),
                         q.data(), k.data(), v.data(), c.B, c.T, c.NH, c.KVH, c.HS);

  auto d_q = dev<T>(q), d_k = dev<T>(k), d_v = dev<T>(v), d_dout = dev<T>(dout);
  Dev<T> d_out(nq), d_dq(nq), d_dk(nk), d_dv(nk);
  Dev<float> d_lse((size_t)c.B * c.NH * c.T), d_scratch((size_t)c.B * c.NH * c.T);
  fw::cuda::attention_forward(d_out.get(), d_lse.get(), d_q->get(), d_k->get(), d_v->get(), c.B, c.T, c.NH, c.KVH,
                              c.HS, 0);
  fw::cuda::attention_backward(d_dq.get(), d_dk.get(), d_dv.get(), d_scratch.get(), d_dout->get(), d_out.get(),
                               d_lse.get(), d_q->get(), d_k->get(), d_v->get(), c.B, c.T, c.NH, c.KVH, c.HS, 0);
  const char* tn = type_name<T>();
  expect_parity(name_of(c, "attention_forward out", tn), d_out.f32(), out_ref, tol<T>());
  expect_parity(name_of(c, "attention_backward dv", tn), d_dv.f32(), dv_ref, tol<T>());
  if (c.T > 1) {
    expect_parity(name_of(c, "attention_backward dq", tn), d_dq.f32(), dq_ref, tol<T>());
    expect_parity(name_of(c, "attention_backward dk", tn), d_dk.f32(), dk_ref, tol<T>());
  } else {
    // One key: P = 1, so dS = P (dP - D) = 0 and dq = dk = 0 exactly on the
    // CPU (a relative check would be vacuous). The GPU's dP and D round
    // differently: near zero on the scale of dv.
    double dv_scale = 0;
    for (float x : dv_ref) dv_scale = std::max(dv_scale, (double)std::fabs(x));
    for (const std::vector<float>& g : {d_dq.f32(), d_dk.f32()})
      for (float x : g) ASSERT_LE(std::fabs(x), tol<T>() * dv_scale) << name_of(c, "attention_backward dq/dk", tn);
  }
}

const AttnCase kCases[] = {
    {2, 37, 4, 2, 32},   // GQA, T ragged
    {1, 70, 2, 1, 64},   // multi-query, three key tiles
    {1, 33, 2, 2, 128},  // the largest head size, > 48 KiB of shared memory in backward
    {2, 20, 3, 3, 40},   // head size not a multiple of 32
    {1, 5, 4, 2, 16},    // shorter than one tile
};

// The shapes that take the tensor-core path in bf16 (HS 64 or 128): T of one
// row, below one tile, exactly one tile, and just past two and four tiles;
// GQA (NH 4, KVH 2) and MHA, B = 2.
std::vector<AttnCase> tensor_core_cases() {
  std::vector<AttnCase> cases;
  for (int hs : {64, 128})
    for (int t : {1, 17, 64, 130, 257})
      for (int kvh : {2, 4}) cases.push_back({2, t, 4, kvh, hs});
  return cases;
}

// Prefill P tokens, then decode one at a time to T; every step's output must
// equal the rows of the full causal forward over all T tokens.
template <typename T>
void check_decode(double bound) {
  const int B = 2, Tn = 40, NH = 4, KVH = 2, HS = 64, S = 48, P = 25;
  const size_t nq = (size_t)B * Tn * NH * HS, nk = (size_t)B * Tn * KVH * HS;
  std::vector<float> q = rounded<T>(randn(nq, 30)), k = rounded<T>(randn(nk, 31)), v = rounded<T>(randn(nk, 32));
  auto d_q = dev<T>(q), d_k = dev<T>(k), d_v = dev<T>(v);
  Dev<T> d_full(nq);
  Dev<float> d_lse((size_t)B * NH * Tn);
  fw::cuda::attention_forward(d_full.get(), d_lse.get(), d_q->get(), d_k->get(), d_v->get(), B, Tn, NH, KVH, HS, 0);
  const std::vector<float> full = d_full.f32();

  // The CPU forward on the same inputs anchors the full GPU forward too.
  std::vector<float> out_ref(nq), att((size_t)B * NH * Tn * Tn);
  fw::attention_forward(out_ref.data(), att.data(), q.data(), k.data(), v.data(), B, Tn, NH, KVH, HS);
  expect_parity(std::string("attention full forward for decode [") + type_name<T>() + "]", full, out_ref, tol<T>());

  Dev<T> d_kc((size_t)B * KVH * S * HS), d_vc((size_t)B * KVH * S * HS);
  // Slices (B, Tq, H, HS) of the (B, T, H, HS) inputs for positions [t0, t0+Tq).
  auto slice = [&](const std::vector<float>& x, int H, int t0, int Tq) {
    std::vector<float> s((size_t)B * Tq * H * HS);
    for (int b = 0; b < B; b++)
      for (int t = 0; t < Tq; t++)
        for (size_t e = 0; e < (size_t)H * HS; e++)
          s[((size_t)b * Tq + t) * H * HS + e] = x[((size_t)b * Tn + t0 + t) * H * HS + e];
    return s;
  };
  std::vector<float> got(nq, 0.0f);
  for (int t0 = 0; t0 < Tn;) {
    const int Tq = t0 == 0 ? P : 1;
    auto dq = dev<T>(slice(q, NH, t0, Tq)), dk = dev<T>(slice(k, KVH, t0, Tq)), dv = dev<T>(slice(v, KVH, t0, Tq));
    Dev<T> d_o((size_t)B * Tq * NH * HS);
    fw::cuda::kv_cache_append(d_kc.get(), d_vc.get(), dk->get(), dv->get(), B, Tq, KVH, S, HS, t0, 0);
    fw::cuda::attention_cached_forward(d_o.get(), nullptr, dq->get(), d_kc.get(), d_vc.get(), B, Tq, NH, KVH, S, HS,
                                       t0, 0);
    const std::vector<float> o = d_o.f32();
    for (int b = 0; b < B; b++)
      for (int t = 0; t < Tq; t++)
        for (size_t e = 0; e < (size_t)NH * HS; e++)
          got[((size_t)b * Tn + t0 + t) * NH * HS + e] = o[((size_t)b * Tq + t) * NH * HS + e];
    t0 += Tq;
  }
  expect_parity(std::string("kv-cache decode vs full forward [") + type_name<T>() + "]", got, full, bound);
}

}  // namespace

TEST(cuda_attention, forward_and_backward_match_cpu_fp32) {
  FW_REQUIRE_GPU();
  uint64_t seed = 100;
  for (const AttnCase& c : kCases) check_attention<float>(c, seed += 10);
}

TEST(cuda_attention, forward_and_backward_match_cpu_bf16) {
  FW_REQUIRE_GPU();
  uint64_t seed = 200;
  for (const AttnCase& c : kCases) check_attention<bf16>(c, seed += 10);
}

TEST(cuda_attention, tensor_core_path_matches_cpu_bf16) {
  FW_REQUIRE_GPU();
  uint64_t seed = 300;
  for (const AttnCase& c : tensor_core_cases()) check_attention<bf16>(c, seed += 10);
}

// The tensor-core backward writes every element from one thread, no atomics:
// two runs give the same bits.
TEST(cuda_attention, tensor_core_backward_is_deterministic) {
  FW_REQUIRE_GPU();
  const AttnCase c{2, 130, 4, 2, 64};
  const size_t nq = (size_t)c.B * c.T * c.NH * c.HS, nk = (size_t)c.B * c.T * c.KVH * c.HS;
  auto d_q = dev<bf16>(randn(nq, 41)), d_k = dev<bf16>(randn(nk, 42)), d_v = dev<bf16>(randn(nk, 43)),
       d_dout = dev<bf16>(randn(nq, 44));
  Dev<bf16> d_out(nq), d_dq(nq), d_dk(nk), d_dv(nk);
  Dev<float> d_lse((size_t)c.B * c.NH * c.T), d_scratch((size_t)c.B * c.NH * c.T);
  fw::cuda::attention_forward(d_out.get(), d_lse.get(), d_q->get(), d_k->get(), d_v->get(), c.B, c.T, c.NH, c.KVH,
                              c.HS, 0);
  std::vector<float> first[3];
  for (int run = 0; run < 2; run++) {
    fw::cuda::attention_backward(d_dq.get(), d_dk.get(), d_dv.get(), d_scratch.get(), d_dout->get(), d_out.get(),
                                 d_lse.get(), d_q->get(), d_k->get(), d_v->get(), c.B, c.T, c.NH, c.KVH, c.HS, 0);
    const std::vector<float> got[3] = {d_dq.f32(), d_dk.f32(), d_dv.f32()};
    for (int i = 0; i < 3; i++) {
      if (run == 0)
        first[i] = got[i];
      else
        EXPECT_EQ(first[i], got[i]) << "gradient " << i << " differs between two runs";
    }
  }
}

TEST(cuda_attention, kv_cache_decode_equals_full_forward) {
  FW_REQUIRE_GPU();
  check_decode<float>(1e-6);
  check_decode<bf16>(1e-2);
}

TEST(cuda_attention, rejects_bad_shapes) {
  FW_REQUIRE_GPU();
  Dev<float> buf(16);
  EXPECT_THROW(fw::cuda::attention_forward<float>(buf.get(), buf.get(), buf.get(), buf.get(), buf.get(), 1, 1, 1, 1,
                                                  256, 0),
               fw::Error);  // head_dim above the kernel's 128
  EXPECT_THROW(fw::cuda::attention_forward<float>(buf.get(), buf.get(), buf.get(), buf.get(), buf.get(), 1, 1, 3, 2,
                                                  16, 0),
               fw::Error);  // NH not a multiple of KVH
  EXPECT_THROW(fw::cuda::kv_cache_append<float>(buf.get(), buf.get(), buf.get(), buf.get(), 1, 2, 1, 4, 2, 3, 0),
               fw::Error);  // past the cache capacity
}
