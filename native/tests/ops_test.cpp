// ops_test.cpp: finite-difference gradient checks, in double precision, of
// every op's backward, plus a few forward identities.
#include <cmath>
#include <cstring>
#include <vector>

#include "engine_test_util.h"
#include "ops_attention.h"
#include "ops_embedding.h"
#include "ops_linear.h"
#include "ops_loss.h"
#include "ops_rmsnorm.h"
#include "ops_rope.h"
#include "ops_swiglu.h"

using fwtest::expect_grad_matches;
using fwtest::randn;

namespace {

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); i++) s += a[i] * b[i];
  return s;
}

}  // namespace

// Every check below uses the scalar loss f = sum(out * R) for a fixed random
// R, so d f / d out = R is what each backward receives.

TEST(ops, linear_backward_matches_finite_differences) {
  int N = 5, IC = 7, OC = 6;
  auto x = randn(N * IC, 1), w = randn(OC * IC, 2), b = randn(OC, 3), R = randn(N * OC, 4);
  std::vector<double> out(N * OC);
  auto f = [&] {
    fw::linear_forward(out.data(), x.data(), w.data(), b.data(), N, IC, OC);
    return dot(out, R);
  };
  std::vector<double> dx(N * IC, 0.0), dw(OC * IC, 0.0), db(OC, 0.0);
  fw::linear_backward(dx.data(), dw.data(), db.data(), R.data(), x.data(), w.data(), N, IC, OC, false);
  expect_grad_matches("linear dx", x.data(), x.size(), dx.data(), f);
  expect_grad_matches("linear dw", w.data(), w.size(), dw.data(), f);
  expect_grad_matches("linear db", b.data(), b.size(), db.data(), f);
}

TEST(ops, embedding_backward_matches_finite_differences) {
  int N = 6, C = 5, V = 4;
  std::vector<int32_t> tok = {0, 3, 3, 1, 0, 3};  // repeated ids accumulate
  auto wte = randn(V * C, 5), R = randn(N * C, 6);
  std::vector<double> out(N * C);
  auto f = [&] {
    fw::embedding_forward(out.data(), tok.data(), wte.data(), N, C);
    return dot(out, R);
  };
  std::vector<double> dw(V * C, 0.0);
  fw::embedding_backward(dw.data(), R.data(), tok.data(), N, C);
  expect_grad_matches("embedding dwte", wte.data(), wte.size(), dw.data(), f);
}

TEST(ops, rmsnorm_backward_matches_finite_differences) {
  int N = 4, C = 9;
  auto x = randn(N * C, 7), w = randn(C, 8), R = randn(N * C, 9);
  std::vector<double> out(N * C), rstd(N);
  auto f = [&] {
    fw::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5);
    return dot(out, R);
  };
  f();
  std::vector<double> dx(N * C, 0.0), dw(C, 0.0);
  fw::rmsnorm_backward(dx.data(), dw.data(), R.data(), x.data(), w.data(), rstd.data(), N, C);
  expect_grad_matches("rmsnorm dx", x.data(), x.size(), dx.data(), f);
  expect_grad_matches("rmsnorm dw", w.data(), w.size(), dw.data(), f);
}

TEST(ops, rope_backward_matches_finite_differences_and_preserves_norm) {
  int B = 2, T = 5, H = 3, HS = 6, pos0 = 2;
  std::vector<double> cs((pos0 + T) * HS / 2), sn(cs.size());
  fw::rope_tables(cs.data(), sn.data(), pos0 + T, HS, 500.0);
  auto x = randn(B * T * H * HS, 10), R = randn(x.size(), 11);
  std::vector<double> y(x.size());
  auto f = [&] {
    y = x;
    fw::rope_forward(y.data(), cs.data(), sn.data(), B, T, H, HS, pos0);
    return dot(y, R);
  };
  f();
  EXPECT_NEAR(dot(y, y), dot(x, x), 1e-9) << "a rotation keeps the norm";
  std::vector<double> dx = R;
  fw::rope_backward(dx.data(), cs.data(), sn.data(), B, T, H, HS, pos0);
  expect_grad_matches("rope dx", x.data(), x.size(), dx.data(), f);
}

TEST(ops, attention_backward_matches_finite_differences_gqa) {
  int B = 2, T = 5, NH = 4, KVH = 2, HS = 3;
  auto q = randn(B * T * NH * HS, 12), k = randn(B * T * KVH * HS, 13), v = randn(B * T * KVH * HS, 14),
       R = randn(B * T * NH * HS, 15);
  std::vector<double> out(q.size()), att(B * NH * T * T);
  auto f = [&] {
    fw::attention_forward(out.data(), att.data(), q.data(), k.data(), v.data(), B, T, NH, KVH, HS);
    return dot(out, R);
  };
  f();
  std::vector<double> dq(q.size()), dk(k.size()), dv(v.size()), scratch(T * T);
  fw::attention_backward(dq.data(), dk.data(), dv.data(), scratch.data(), R.data(), att.data(), q.data(), k.data(),
                         v.data(), B, T, NH, KVH, HS);
  expect_grad_matches("attention dq", q.data(), q.size(), dq.data(), f);
  expect_grad_matches("attention dk", k.data(), k.size(), dk.data(), f);
  expect_grad_matches("attention dv", v.data(), v.size(), dv.data(), f);
}

TEST(ops, attention_is_causal) {
  // Changing a later key/value must not change earlier outputs.
  int B = 1, T = 6, NH = 2, KVH = 1, HS = 4;
  auto q = randn(B * T * NH * HS, 16), k = randn(B * T * KVH * HS, 17), v = randn(B * T * KVH * HS, 18);
  std::vector<double> o1(q.size()), o2(q.size()), att(B * NH * T * T);
  fw::attention_forward(o1.data(), att.data(), q.data(), k.data(), v.data(), B, T, NH, KVH, HS);
  for (int i = 0; i < KVH * HS; i++) {
    k[(T - 1) * KVH * HS + i] += 1.0;
    v[(T - 1) * KVH * HS + i] -= 2.0;
  }
  fw::attention_forward(o2.data(), att.data(), q.data(), k.data(), v.data(), B, T, NH, KVH, HS);
  for (int i = 0; i < (T - 1) * NH * HS; i++) ASSERT_EQ(o1[i], o2[i]) << "position " << i / (NH * HS);
  EXPECT_NE(o1.back(), o2.back());
}

TEST(ops, swiglu_backward_matches_finite_differences) {
  size_t N = 17;
  auto g = randn(N, 19, 2.0), u = randn(N, 20), R = randn(N, 21);
  std::vector<double> out(N);
  auto f = [&] {
    fw::swiglu_forward(out.data(), g.data(), u.data(), N);
    return dot(out, R);
  };
  std::vector<double> dg(N), du(N);
  fw::swiglu_backward(dg.data(), du.data(), R.data(), g.data(), u.data(), N);
  expect_grad_matches("swiglu dgate", g.data(), N, dg.data(), f);
  expect_grad_matches("swiglu dup", u.data(), N, du.data(), f);
}

TEST(ops, crossentropy_backward_matches_finite_differences_with_ignore_index) {
  int N = 5, V = 7;
  auto x = randn(N * V, 22, 3.0);
  std::vector<int32_t> tgt = {3, -100, 0, 6, -100};
  std::vector<double> losses(N), lse(N);
  auto f = [&] {
    fw::crossentropy_forward(losses.data(), lse.data(), x.data(), tgt.data(), N, V);
    double s = 0;
    for (double l : losses) s += l;
    return s / 3.0;  // mean over the 3 unmasked rows
  };
  f();
  EXPECT_EQ(losses[1], 0.0);
  std::vector<double> dx(N * V);
  fw::crossentropy_backward(dx.data(), x.data(), lse.data(), tgt.data(), N, V, 1.0 / 3.0);
  for (int i = 0; i < V; i++) EXPECT_EQ(dx[V + i], 0.0) << "masked row gets no gradient";
  expect_grad_matches("crossentropy dlogits", x.data(), x.size(), dx.data(), f);
}
