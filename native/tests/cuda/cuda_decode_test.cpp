// cuda_decode_test.cpp: the device-position decode kernels (decode.cuh)
// against the host-position kernels they replace and a host reference:
//  - rope_forward_dpos vs rope_forward, kv_cache_append_dpos vs
//    kv_cache_append (exact: both are copies);
//  - attention_decode_dpos (split-K) vs attention_cached_forward on the same
//    cache and vs a double-precision host attention, over batch, GQA / MHA,
//    head sizes (including ones that force narrower vector loads), positions
//    at both ends of the cache and Tq = 1 and 3. Cache rows past the step's
//    last position hold NaN, so a kernel that reads past the live length fails;
//  - argmax_rows vs a host argmax, with planted ties;
//  - one decode step [rope q, rope k, append, attention, add_device_int]
//    captured in a CUDA graph and replayed for 5 positions (crossing a split
//    boundary) equals the same kernels launched with host positions.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "decode.cuh"
#include "ops_attention.cuh"
#include "ops_rope.cuh"

using namespace fwcuda_test;

namespace {

std::unique_ptr<Dev<int>> dev_int(int v) { return std::make_unique<Dev<int>>(std::vector<int>{v}); }

int read_int(const Dev<int>& d) { return d.host()[0]; }

struct RopeTables {
  Dev<float> cos_t, sin_t;
  RopeTables(int S, int HS) : cos_t((size_t)S * HS / 2), sin_t((size_t)S * HS / 2) {
    fw::cuda::rope_tables(cos_t.get(), sin_t.get(), S, HS, 10000.0, 0);
  }
};

std::string tag(const char* what, int B, int Tq, int NH, int KVH, int HS, int S, int pos, const char* type) {
  return std::string(what) + " B" + std::to_string(B) + " Tq" + std::to_string(Tq) + " NH" + std::to_string(NH) +
         " KVH" + std::to_string(KVH) + " HS" + std::to_string(HS) + " S" + std::to_string(S) + " pos" +
         std::to_string(pos) + " [" + type + "]";
}

// ---------------------------------------------------------------- RoPE, append

template <typename T>
void check_rope(int B, int Tq, int H, int HS, int S, int pos, uint64_t seed) {
  RopeTables tab(S, HS);
  const std::vector<float> x = rounded<T>(randn((size_t)B * Tq * H * HS, seed));
  auto ref = dev<T>(x), got = dev<T>(x);
  auto d_pos = dev_int(pos);
  fw::cuda::rope_forward<T>(ref->get(), tab.cos_t.get(), tab.sin_t.get(), B, Tq, H, HS, pos, 0);
  fw::cuda::rope_forward_dpos<T>(got->get(), tab.cos_t.get(), tab.sin_t.get(), B, Tq, H, HS, d_pos->get(), 0);
  expect_parity(tag("rope_forward_dpos", B, Tq, H, H, HS, S, pos, type_name<T>()), got->f32(), ref->f32(), tol<T>());
}

template <typename T>
void check_append(int B, int Tq, int KVH, int HS, int S, int pos, uint64_t seed) {
  const size_t nc = (size_t)B * KVH * S * HS, nk = (size_t)B * Tq * KVH * HS;
  const std::vector<float> kc = rounded<T>(randn(nc, seed)), vc = rounded<T>(randn(nc, seed + 1));
  const std::vector<float> k = rounded<T>(randn(nk, seed + 2)), v = rounded<T>(randn(nk, seed + 3));
  auto rk = dev<T>(kc), rv = dev<T>(vc), gk = dev<T>(kc), gv = dev<T>(vc), dk = dev<T>(k), dv = dev<T>(v);
  auto d_pos = dev_int(pos);
  fw::cuda::kv_cache_append<T>(rk->get(), rv->get(), dk->get(), dv->get(), B, Tq, KVH, S, HS, pos, 0);
  fw::cuda::kv_cache_append_dpos<T>(gk->get(), gv->get(), dk->get(), dv->get(), B, Tq, KVH, S, HS, d_pos->get(), 0);
  const char* tn = type_name<T>();
  expect_parity(tag("kv_cache_append_dpos k", B, Tq, KVH, KVH, HS, S, pos, tn), gk->f32(), rk->f32(), 0.0);
  expect_parity(tag("kv_cache_append_dpos v", B, Tq, KVH, KVH, HS, S, pos, tn), gv->f32(), rv->f32(), 0.0);
}

// The fused decode-step kernel against the three it replaces: the same bits.
template <typename T>
void check_rope_append(int B, int Tq, int NH, int KVH, int HS, int S, int pos, uint64_t seed) {
  RopeTables tab(S + Tq, HS);  // positions up to pos + Tq - 1, even past the cache
  const size_t nq = (size_t)B * Tq * NH * HS, nk = (size_t)B * Tq * KVH * HS, nc = (size_t)B * KVH * S * HS;
  const std::vector<float> q = rounded<T>(randn(nq, seed)), k = rounded<T>(randn(nk, seed + 1));
  const std::vector<float> v = rounded<T>(randn(nk, seed + 2)), kc = rounded<T>(randn(nc, seed + 3));
  const std::vector<float> vc = rounded<T>(randn(nc, seed + 4));
  auto rq = dev<T>(q), rk = dev<T>(k), rkc = dev<T>(kc), rvc = dev<T>(vc);
  auto gq = dev<T>(q), gk = dev<T>(k), gkc = dev<T>(kc), gvc = dev<T>(vc), dv = dev<T>(v);
  auto d_pos = dev_int(pos);
  fw::cuda::rope_forward_dpos<T>(rq->get(), tab.cos_t.get(), tab.sin_t.get(), B, Tq, NH, HS, d_pos->get(), 0);
  fw::cuda::rope_forward_dpos<T>(rk->get(), tab.cos_t.get(), tab.sin_t.get(), B, Tq, KVH, HS, d_pos->get(), 0);
  fw::cuda::kv_cache_append_dpos<T>(rkc->get(), rvc->get(), rk->get(), dv->get(), B, Tq, KVH, S, HS, d_pos->get(), 0);
  fw::cuda::rope_append_dpos<T>(gq->get(), gk->get(), dv->get(), gkc->get(), gvc->get(), tab.cos_t.get(),
                                tab.sin_t.get(), B, Tq, NH, KVH, S, HS, d_pos->get(), 0);
  const char* tn = type_name<T>();
  EXPECT_EQ(gq->f32(), rq->f32()) << tag("rope_append_dpos q", B, Tq, NH, KVH, HS, S, pos, tn);
  EXPECT_EQ(gk->f32(), rk->f32()) << tag("rope_append_dpos k", B, Tq, NH, KVH, HS, S, pos, tn);
  EXPECT_EQ(gkc->f32(), rkc->f32()) << tag("rope_append_dpos k cache", B, Tq, NH, KVH, HS, S, pos, tn);
  EXPECT_EQ(gvc->f32(), rvc->f32()) << tag("rope_append_dpos v cache", B, Tq, NH, KVH, HS, S, pos, tn);
}

// ---------------------------------------------------------------- attention

// out (B, Tq, NH, HS) in double: query t at position pos + t over keys 0..pos+t.
std::vector<float> host_attention(const std::vector<float>& q, const std::vector<float>& kc,
                                  const std::vector<float>& vc, int B, int Tq, int NH, int KVH, int S, int HS,
                                  int pos) {
  std::vector<float> out((size_t)B * Tq * NH * HS);
  const double scale = 1.0 / std::sqrt((double)HS);
  std::vector<double> w, acc(HS);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < Tq; t++)
      for (int h = 0; h < NH; h++) {
        const int kvh = h / (NH / KVH), n = pos + t + 1;
        const float* qr = &q[(((size_t)b * Tq + t) * NH + h) * HS];
        const size_t head = ((size_t)b * KVH + kvh) * S * HS;
        w.assign(n, 0.0);
        double mx = -INFINITY;
        for (int j = 0; j < n; j++) {
          double s = 0;
          for (int c = 0; c < HS; c++) s += (double)qr[c] * kc[head + (size_t)j * HS + c];
          w[j] = s * scale;
          mx = std::max(mx, w[j]);
        }
        double sum = 0;
        for (int j = 0; j < n; j++) sum += (w[j] = std::exp(w[j] - mx));
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int j = 0; j < n; j++)
          for (int c = 0; c < HS; c++) acc[c] += w[j] * vc[head + (size_t)j * HS + c];
        float* o = &out[(((size_t)b * Tq + t) * NH + h) * HS];
        for (int c = 0; c < HS; c++) o[c] = (float)(acc[c] / sum);
      }
  return out;
}

template <typename T>
void check_attention(int B, int Tq, int NH, int KVH, int HS, int S, int pos, uint64_t seed) {
  const size_t nq = (size_t)B * Tq * NH * HS, nc = (size_t)B * KVH * S * HS;
  const std::vector<float> q = rounded<T>(randn(nq, seed));
  std::vector<float> kc = rounded<T>(randn(nc, seed + 1)), vc = rounded<T>(randn(nc, seed + 2));
  // Rows past the step's last position are not part of it: poison them.
  for (int b = 0; b < B; b++)
    for (int h = 0; h < KVH; h++)
      for (int j = pos + Tq; j < S; j++)
        for (int c = 0; c < HS; c++) {
          const size_t i = (((size_t)b * KVH + h) * S + j) * HS + c;
          kc[i] = vc[i] = std::numeric_limits<float>::quiet_NaN();
        }
  auto d_q = dev<T>(q), d_kc = dev<T>(kc), d_vc = dev<T>(vc);
  auto d_pos = dev_int(pos);
  Dev<T> ref(nq), got(nq);
  Dev<float> ws(fw::cuda::attention_decode_workspace_floats(B, Tq, NH, S, HS));
  Dev<int> counters(fw::cuda::attention_decode_counters(B, Tq, NH));  // zeroed
  fw::cuda::attention_cached_forward<T>(ref.get(), nullptr, d_q->get(), d_kc->get(), d_vc->get(), B, Tq, NH, KVH, S,
                                        HS, pos, 0);
  fw::cuda::attention_decode_dpos<T>(got.get(), d_q->get(), d_kc->get(), d_vc->get(), B, Tq, NH, KVH, S, HS,
                                     d_pos->get(), ws.get(), counters.get(), 0);
  const std::vector<float> g = got.f32();
  const char* tn = type_name<T>();
  expect_parity(tag("decode vs cached_forward", B, Tq, NH, KVH, HS, S, pos, tn), g, ref.f32(), tol<T>());
  expect_parity(tag("decode vs host", B, Tq, NH, KVH, HS, S, pos, tn), g,
                host_attention(q, kc, vc, B, Tq, NH, KVH, S, HS, pos), tol<T>());
  // The last block of each row put its counter back for the next call.
  const std::vector<int> left = counters.host();
  EXPECT_EQ(std::count(left.begin(), left.end(), 0), (std::ptrdiff_t)left.size())
      << tag("counters left non-zero", B, Tq, NH, KVH, HS, S, pos, tn);
}

template <typename T>
void check_all_attention() {
  const int S = 300;
  uint64_t seed = std::is_same<T, float>::value ? 1000 : 5000;
  struct Heads {
    int NH, KVH;
  };
  // 16, 64, 128: 16-byte loads; 40: fp32 16 lanes, bf16 8 lanes with idle
  // lanes; 6: 8-byte (fp32) / 4-byte (bf16) loads.
  for (int B : {1, 3})
    for (Heads hd : {Heads{4, 2}, Heads{2, 2}})
      for (int HS : {16, 64, 128, 40, 6})
        for (int Tq : {1, 3})
          for (int pos : {0, 1, 129, 299 - Tq, S - Tq})
            check_attention<T>(B, Tq, hd.NH, hd.KVH, HS, S, pos, seed += 10);
  // Many rows: larger split chunks (128 and 256 keys), several steps per block.
  check_attention<T>(64, 1, 8, 2, 64, 300, 129, seed += 10);
  check_attention<T>(64, 1, 8, 2, 64, 300, 299, seed += 10);
  check_attention<T>(64, 1, 8, 1, 16, 1024, 700, seed += 10);
  check_attention<T>(64, 1, 8, 1, 16, 1024, 1023, seed += 10);
  // A cache of one chunk, and an odd head size (scalar loads, 8 lanes).
  check_attention<T>(2, 1, 4, 4, 64, 40, 39, seed += 10);
  check_attention<T>(2, 2, 3, 1, 7, 50, 20, seed += 10);
}

// ---------------------------------------------------------------- argmax

template <typename T>
void check_argmax() {
  const int N = 6, V = 50257;
  std::vector<float> x = rounded<T>(randn((size_t)N * V, 77));
  auto row = [&](int n) { return &x[(size_t)n * V]; };
  row(0)[17] = row(0)[40000] = 9.0f;   // planted tie: the lower index wins
  row(1)[V - 1] = 9.0f;                // the last element
  row(2)[0] = 9.0f;                    // the first element
  for (int i = 0; i < V; i++) row(3)[i] = 1.0f;  // all equal: 0
  for (int i = 0; i < V; i++) row(4)[i] = -INFINITY;  // all -inf: 0
  row(5)[123] = row(5)[124] = row(5)[30000] = 9.0f;  // three-way tie
  x = rounded<T>(x);
  std::vector<int32_t> want(N);
  for (int n = 0; n < N; n++) {
    int best = 0;
    for (int i = 1; i < V; i++)
      if (row(n)[i] > row(n)[best]) best = i;
    want[n] = best;
  }
  EXPECT_EQ(want[0], 17);
  EXPECT_EQ(want[5], 123);
  auto d_x = dev<T>(x);
  Dev<int32_t> d_out(N);
  fw::cuda::argmax_rows<T>(d_out.get(), d_x->get(), N, V, 0);
  EXPECT_EQ(d_out.host(), want) << type_name<T>();
}

// ---------------------------------------------------------------- CUDA graph

template <typename T>
void check_graph(int Tq) {
  const int B = 2, NH = 4, KVH = 2, HS = 64, S = 300, pos_start = 125, steps = 5;
  const size_t nq = (size_t)B * Tq * NH * HS, nk = (size_t)B * Tq * KVH * HS, nc = (size_t)B * KVH * S * HS;
  RopeTables tab(S, HS);
  const std::vector<float> kc0 = rounded<T>(randn(nc, 900)), vc0 = rounded<T>(randn(nc, 901));
  auto g_kc = dev<T>(kc0), g_vc = dev<T>(vc0), r_kc = dev<T>(kc0), r_vc = dev<T>(vc0);
  Dev<T> g_q(nq), g_k(nk), g_v(nk), g_out(nq), r_out(nq);
  Dev<int> d_pos(1);
  Dev<float> ws(fw::cuda::attention_decode_workspace_floats(B, Tq, NH, S, HS));
  Dev<int> counters(fw::cuda::attention_decode_counters(B, Tq, NH));  // zeroed; every replay leaves them zero
  fw::cuda::set_device_int(d_pos.get(), pos_start, 0);
  ASSERT_EQ(read_int(d_pos), pos_start);

  cudaStream_t st;
  FW_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  FW_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
  fw::cuda::rope_forward_dpos<T>(g_q.get(), tab.cos_t.get(), tab.sin_t.get(), B, Tq, NH, HS, d_pos.get(), st);
  fw::cuda::rope_forward_dpos<T>(g_k.get(), tab.cos_t.get(), tab.sin_t.get(), B, Tq, KVH, HS, d_pos.get(), st);
  fw::cuda::kv_cache_append_dpos<T>(g_kc->get(), g_vc->get(), g_k.get(), g_v.get(), B, Tq, KVH, S, HS, d_pos.get(),
                                    st);
  fw::cuda::attention_decode_dpos<T>(g_out.get(), g_q.get(), g_kc->get(), g_vc->get(), B, Tq, NH, KVH, S, HS,
                                     d_pos.get(), ws.get(), counters.get(), st);
  fw::cuda::add_device_int(d_pos.get(), Tq, st);
  FW_CUDA_CHECK(cudaStreamEndCapture(st, &graph));
  FW_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));

  const char* tn = type_name<T>();
  for (int step = 0; step < steps; step++) {
    const int pos = pos_start + step * Tq;
    const uint64_t seed = 1000 + 10 * step + Tq;
    const std::vector<float> q = rounded<T>(randn(nq, seed)), k = rounded<T>(randn(nk, seed + 1)),
                             v = rounded<T>(randn(nk, seed + 2));
    // The graph's fixed input buffers get this step's q, k, v, on the
    // graph's stream: a cudaMemcpy from pageable memory may still be on its
    // way to the device when it returns, and the legacy stream it runs on
    // is not ordered with a non-blocking one.
    auto copy_in = [st](Dev<T>& d, const std::vector<float>& h) {
      std::vector<T> t(h.size());
      for (size_t i = 0; i < h.size(); i++) t[i] = from_float<T>(h[i]);
      FW_CUDA_CHECK(cudaMemcpyAsync(d.get(), t.data(), t.size() * sizeof(T), cudaMemcpyHostToDevice, st));
    };
    copy_in(g_q, q);
    copy_in(g_k, k);
    copy_in(g_v, v);
    FW_CUDA_CHECK(cudaGraphLaunch(exec, st));
    FW_CUDA_CHECK(cudaStreamSynchronize(st));

    // The same step with host positions.
    auto r_q = dev<T>(q), r_k = dev<T>(k), r_v = dev<T>(v);
    fw::cuda::rope_forward<T>(r_q->get(), tab.cos_t.get(), tab.sin_t.get(), B, Tq, NH, HS, pos, 0);
    fw::cuda::rope_forward<T>(r_k->get(), tab.cos_t.get(), tab.sin_t.get(), B, Tq, KVH, HS, pos, 0);
    fw::cuda::kv_cache_append<T>(r_kc->get(), r_vc->get(), r_k->get(), r_v->get(), B, Tq, KVH, S, HS, pos, 0);
    fw::cuda::attention_cached_forward<T>(r_out.get(), nullptr, r_q->get(), r_kc->get(), r_vc->get(), B, Tq, NH, KVH,
                                          S, HS, pos, 0);
    const std::string what = "graph step " + std::to_string(step) + " Tq" + std::to_string(Tq) + " pos" +
                             std::to_string(pos) + " [" + tn + "]";
    expect_parity(what + " out", g_out.f32(), r_out.f32(), tol<T>());
    expect_parity(what + " q roped", g_q.f32(), r_q->f32(), tol<T>());
    EXPECT_EQ(read_int(d_pos), pos + Tq) << what;
  }
  expect_parity(std::string("graph k cache [") + tn + "]", g_kc->f32(), r_kc->f32(), tol<T>());
  expect_parity(std::string("graph v cache [") + tn + "]", g_vc->f32(), r_vc->f32(), 0.0);
  FW_CUDA_CHECK(cudaGraphExecDestroy(exec));
  FW_CUDA_CHECK(cudaGraphDestroy(graph));
  FW_CUDA_CHECK(cudaStreamDestroy(st));
}

}  // namespace

TEST(cuda_decode, rope_dpos_matches_rope_forward) {
  FW_REQUIRE_GPU();
  uint64_t seed = 10;
  for (int Tq : {1, 3})
    for (int pos : {0, 1, 129, 299 - Tq}) {
      check_rope<float>(3, Tq, 4, 64, 300, pos, seed += 10);
      check_rope<bf16>(3, Tq, 4, 64, 300, pos, seed += 10);
      check_rope<float>(1, Tq, 2, 16, 300, pos, seed += 10);
      check_rope<bf16>(1, Tq, 2, 128, 300, pos, seed += 10);
    }
}

TEST(cuda_decode, kv_append_dpos_matches_kv_cache_append) {
  FW_REQUIRE_GPU();
  uint64_t seed = 300;
  for (int Tq : {1, 3})
    for (int pos : {0, 1, 129, 299 - Tq, 300 - Tq}) {
      check_append<float>(3, Tq, 2, 64, 300, pos, seed += 10);
      check_append<bf16>(3, Tq, 2, 64, 300, pos, seed += 10);
      check_append<float>(1, Tq, 1, 16, 300, pos, seed += 10);
    }
}

TEST(cuda_decode, rope_append_dpos_equals_rope_then_append) {
  FW_REQUIRE_GPU();
  uint64_t seed = 500;
  for (int Tq : {1, 3})
    for (int pos : {0, 1, 129, 300 - Tq, 301 - Tq}) {  // the last: one token past the cache, skipped
      check_rope_append<float>(3, Tq, 4, 2, 64, 300, pos, seed += 10);
      check_rope_append<bf16>(2, Tq, 4, 1, 128, 300, pos, seed += 10);
      check_rope_append<f16>(1, Tq, 2, 2, 16, 300, pos, seed += 10);
    }
}

TEST(cuda_decode, attention_decode_matches_cached_forward_fp32) {
  FW_REQUIRE_GPU();
  check_all_attention<float>();
}

TEST(cuda_decode, attention_decode_matches_cached_forward_bf16) {
  FW_REQUIRE_GPU();
  check_all_attention<bf16>();
}

TEST(cuda_decode, argmax_rows_matches_host) {
  FW_REQUIRE_GPU();
  check_argmax<float>();
  check_argmax<bf16>();
}

TEST(cuda_decode, graph_replay_matches_host_position_kernels) {
  FW_REQUIRE_GPU();
  for (int Tq : {1, 2}) {
    check_graph<float>(Tq);
    check_graph<bf16>(Tq);
  }
}

TEST(cuda_decode, rejects_bad_shapes) {
  FW_REQUIRE_GPU();
  Dev<float> buf(1024);
  Dev<int> pos(1);
  EXPECT_THROW(fw::cuda::attention_decode_dpos<float>(buf.get(), buf.get(), buf.get(), buf.get(), 1, 1, 1, 1, 4, 256,
                                                      pos.get(), buf.get(), pos.get(), 0),
               fw::Error);  // head_dim above 128
  EXPECT_THROW(fw::cuda::attention_decode_dpos<float>(buf.get(), buf.get(), buf.get(), buf.get(), 1, 1, 3, 2, 4, 16,
                                                      pos.get(), buf.get(), pos.get(), 0),
               fw::Error);  // NH not a multiple of KVH
  EXPECT_THROW(fw::cuda::rope_forward_dpos<float>(buf.get(), buf.get(), buf.get(), 1, 1, 1, 15, pos.get(), 0),
               fw::Error);  // odd head_dim
}
