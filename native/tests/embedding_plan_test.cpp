// embedding_plan_test.cpp: the host side of the GPU's embedding backward
// (native/cuda/embedding_plan.h), checked where CI runs: the grouping is a
// permutation of the positions, by ascending id, ascending within an id; and
// summing by the plan, as the GPU kernel does, gives the CPU's gradient bit
// for bit in fp32.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../cuda/embedding_plan.h"
#include "ops_embedding.h"
#include "train_rng.h"

namespace {

std::vector<int32_t> random_tokens(int N, int V, uint64_t seed) {
  fw::Rng r(seed);
  std::vector<int32_t> t(N);
  for (auto& x : t) x = (int32_t)(r.next_u64() % V);
  return t;
}

}  // namespace

TEST(embedding_plan, groups_every_position_by_ascending_id_in_order) {
  for (const int N : {1, 2, 37, 1000}) {
    const std::vector<int32_t> tok = random_tokens(N, 13, 7 + N);
    fw::cuda::EmbeddingPlan p;
    fw::cuda::embedding_plan(tok.data(), N, p);
    const int U = p.distinct();
    ASSERT_EQ(p.offsets.size(), (size_t)U + 1);
    EXPECT_EQ(p.offsets.front(), 0);
    EXPECT_EQ(p.offsets.back(), N);
    std::vector<int32_t> distinct(tok);
    std::sort(distinct.begin(), distinct.end());
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
    EXPECT_EQ(p.ids, distinct);
    std::vector<int32_t> seen(p.positions);
    std::sort(seen.begin(), seen.end());
    for (int n = 0; n < N; n++) ASSERT_EQ(seen[n], n) << "positions must be a permutation";
    for (int u = 0; u < U; u++) {
      ASSERT_LT(p.offsets[u], p.offsets[u + 1]) << "empty group";
      for (int k = p.offsets[u]; k < p.offsets[u + 1]; k++) {
        EXPECT_EQ(tok[p.positions[k]], p.ids[u]);
        if (k > p.offsets[u]) {
          EXPECT_LT(p.positions[k - 1], p.positions[k]);
        }
      }
    }
  }
  fw::cuda::EmbeddingPlan empty;
  fw::cuda::embedding_plan(nullptr, 0, empty);
  EXPECT_EQ(empty.distinct(), 0);
  EXPECT_EQ(empty.offsets, std::vector<int32_t>{0});
}

TEST(embedding_plan, summing_by_the_plan_equals_the_cpu_backward_bit_for_bit) {
  const int N = 300, C = 40, V = 17;
  const std::vector<int32_t> tok = random_tokens(N, V, 11);
  fw::Rng r(12);
  std::vector<float> dout((size_t)N * C), dwte((size_t)V * C);
  for (auto& x : dout) x = (float)r.normal();
  for (auto& x : dwte) x = (float)r.normal();
  std::vector<float> ref = dwte;
  fw::embedding_backward(ref.data(), dout.data(), tok.data(), N, C);

  // the GPU kernel's arithmetic: per (row, column) an fp32 accumulator
  // starting from dwte, the row's positions in plan order, one store
  fw::cuda::EmbeddingPlan p;
  fw::cuda::embedding_plan(tok.data(), N, p);
  std::vector<float> got = dwte;
  for (int u = 0; u < p.distinct(); u++)
    for (int c = 0; c < C; c++) {
      float acc = got[(size_t)p.ids[u] * C + c];
      for (int k = p.offsets[u]; k < p.offsets[u + 1]; k++) acc += dout[(size_t)p.positions[k] * C + c];
      got[(size_t)p.ids[u] * C + c] = acc;
    }
  EXPECT_EQ(got, ref);
}
