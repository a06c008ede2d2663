// tc_attention_emu_main.cpp: the tensor-core attention (ops_attention_tc.cu
// through ops_emu.py, its PTX helpers from emu_ptx.h) on the CPU: random
// bf16 inputs through its own launchers, forward then backward (D from the
// bf16 output, as ops_attention.cu computes it), checked against an fp64
// reference. Exit 1 when a relative L2 error passes 1e-2 (bf16 storage of
// the outputs costs ~2e-3 here), the lse is off by more than 1e-4, or no
// mma ran. Usage: tc_attention_emu HS T NH KVH B
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "emu_ptx.h"
namespace fw {
namespace cuda {
using bf16 = __nv_bfloat16;  // as cuda_common.cuh, which ops_attention_tc.cuh includes on a GPU
}  // namespace cuda
}  // namespace fw
#include "ops_emu_api.h"  // the launchers (generated from ops_attention_tc.cuh)

using bf16 = __nv_bfloat16;

int main(int argc, char** argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: tc_attention_emu HS T NH KVH B\n");
    return 2;
  }
  const int HS = atoi(argv[1]), T = atoi(argv[2]), NH = atoi(argv[3]), KVH = atoi(argv[4]), B = atoi(argv[5]);
  const size_t nq = (size_t)B * T * NH * HS, nk = (size_t)B * T * KVH * HS;
  std::vector<bf16> q(nq), k(nk), v(nk), dout(nq), out(nq), dq(nq), dk(nk), dv(nk);
  std::vector<float> lse((size_t)B * NH * T), D((size_t)B * NH * T);
  std::mt19937 rng(1234 + HS + T);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& x : q) x.x = emu_f2bf_rn(nd(rng));
  for (auto& x : k) x.x = emu_f2bf_rn(nd(rng));
  for (auto& x : v) x.x = emu_f2bf_rn(nd(rng));
  for (auto& x : dout) x.x = emu_f2bf_rn(nd(rng));
  for (auto* vec : {&out, &dq, &dk, &dv})
    for (auto& x : *vec) x.x = 0xFFFF;  // NaN until written
  if (!fw::cuda::attention_tc_supported(HS, q.data(), k.data(), v.data(), dout.data(), out.data(), dq.data(),
                                        dk.data())) {
    fprintf(stderr, "tc_attention_emu: HS %d or the buffers' alignment is not for the tensor-core path\n", HS);
    return 2;
  }
  fw::cuda::attention_forward_tc(out.data(), lse.data(), q.data(), k.data(), v.data(), B, T, NH, KVH, HS, nullptr);
  // D = rowsum(dout * out) in fp32, as ops_attention.cu computes before the backward kernels
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int t = 0; t < T; t++) {
        float s = 0.0f;
        for (int d = 0; d < HS; d++) {
          const size_t i = (((size_t)b * T + t) * NH + h) * HS + d;
          s += emu_bf2f(dout[i].x) * emu_bf2f(out[i].x);
        }
        D[((size_t)b * NH + h) * T + t] = s;
      }
  fw::cuda::attention_backward_tc(dq.data(), dk.data(), dv.data(), D.data(), dout.data(), lse.data(), q.data(),
                                  k.data(), v.data(), B, T, NH, KVH, HS, nullptr);
  // fp64 reference on the bf16 inputs.
  const double sc = 1.0 / std::sqrt((double)HS);
  const int grp = NH / KVH;
  auto Q = [&](int b, int t, int h, int d) { return (double)emu_bf2f(q[(((size_t)b * T + t) * NH + h) * HS + d].x); };
  auto K = [&](int b, int t, int h, int d) { return (double)emu_bf2f(k[(((size_t)b * T + t) * KVH + h) * HS + d].x); };
  auto V = [&](int b, int t, int h, int d) { return (double)emu_bf2f(v[(((size_t)b * T + t) * KVH + h) * HS + d].x); };
  auto DO = [&](int b, int t, int h, int d) { return (double)emu_bf2f(dout[(((size_t)b * T + t) * NH + h) * HS + d].x); };
  std::vector<double> rout(nq), rdq(nq, 0.0), rdk(nk, 0.0), rdv(nk, 0.0), rlse((size_t)B * NH * T);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++) {
      const int kh = h / grp;
      std::vector<double> P((size_t)T * T, 0.0), dP((size_t)T * T, 0.0);
      for (int i = 0; i < T; i++) {
        double mx = -1e300;
        for (int j = 0; j <= i; j++) {
          double s = 0; for (int d = 0; d < HS; d++) s += Q(b, i, h, d) * K(b, j, kh, d);
          P[(size_t)i * T + j] = s * sc; mx = std::max(mx, s * sc);
        }
        double l = 0; for (int j = 0; j <= i; j++) { P[(size_t)i * T + j] = std::exp(P[(size_t)i * T + j] - mx); l += P[(size_t)i * T + j]; }
        for (int j = 0; j <= i; j++) P[(size_t)i * T + j] /= l;
        rlse[((size_t)b * NH + h) * T + i] = mx + std::log(l);
        for (int d = 0; d < HS; d++) { double o = 0; for (int j = 0; j <= i; j++) o += P[(size_t)i * T + j] * V(b, j, kh, d); rout[(((size_t)b * T + i) * NH + h) * HS + d] = o; }
      }
      for (int i = 0; i < T; i++) {
        double Di = 0; for (int d = 0; d < HS; d++) Di += DO(b, i, h, d) * rout[(((size_t)b * T + i) * NH + h) * HS + d];
        for (int j = 0; j <= i; j++) {
          double dp = 0; for (int d = 0; d < HS; d++) dp += DO(b, i, h, d) * V(b, j, kh, d);
          const double p = P[(size_t)i * T + j], ds = p * (dp - Di);
          for (int d = 0; d < HS; d++) {
            rdq[(((size_t)b * T + i) * NH + h) * HS + d] += sc * ds * K(b, j, kh, d);
            rdk[(((size_t)b * T + j) * KVH + kh) * HS + d] += sc * ds * Q(b, i, h, d);
            rdv[(((size_t)b * T + j) * KVH + kh) * HS + d] += p * DO(b, i, h, d);
          }
        }
      }
    }
  auto rel = [](const std::vector<bf16>& got, const std::vector<double>& ref) {
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.size(); i++) {
      const double g = emu_bf2f(got[i].x);
      if (!std::isfinite(g)) return 1e30;
      num += (g - ref[i]) * (g - ref[i]);
      den += ref[i] * ref[i];
    }
    return std::sqrt(num / std::max(den, 1e-300));
  };
  double lerr = 0;
  for (size_t i = 0; i < rlse.size(); i++) {
    const double e = std::fabs(lse[i] - rlse[i]);
    lerr = std::isfinite(e) ? std::max(lerr, e) : 1e30;
  }
  const double e_out = rel(out, rout), e_dq = rel(dq, rdq), e_dk = rel(dk, rdk), e_dv = rel(dv, rdv);
  printf("HS=%d T=%d NH=%d KVH=%d B=%d  rel-l2 err vs fp64: out %.3g dq %.3g dk %.3g dv %.3g; lse max abs %.3g; "
         "mma %ld ldmatrix %ld ldmatrix.trans %ld\n",
         HS, T, NH, KVH, B, e_out, e_dq, e_dk, e_dv, lerr, emu_ptx.n_mma, emu_ptx.n_ldm, emu_ptx.n_ldm_t);
  // T = 1: dq and dk are exactly zero (one key), so only out, dv and lse count
  const bool ok = e_out <= 1e-2 && e_dv <= 1e-2 && (T == 1 || (e_dq <= 1e-2 && e_dk <= 1e-2)) && lerr <= 1e-4 &&
                  emu_ptx.n_mma > 0;
  if (!ok) printf("NOT OK: an error above 1e-2 (lse: 1e-4)\n");
  return ok ? 0 : 1;
}
