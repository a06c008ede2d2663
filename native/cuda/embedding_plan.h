// embedding_plan.h: the token ids of a batch grouped by id, on the host, for
// the GPU's embedding backward (ops_embedding.cuh). Plain C++ (no CUDA), so
// the CPU tests check it.
//
//   ids        the distinct ids of tokens, ascending (U of them)
//   offsets    U + 1 entries: id ids[u] occurs at positions[offsets[u] ..
//              offsets[u + 1])
//   positions  every position 0 .. N-1 exactly once, grouped by id and
//              ascending within a group
//
// With it each vocabulary row the batch touches is summed by one thread per
// column, over its positions in ascending order: the CPU's order, with no
// scan of all N ids per row and no atomics.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

namespace fw {
namespace cuda {

struct EmbeddingPlan {
  std::vector<int32_t> ids, offsets, positions;
  int distinct() const { return (int)ids.size(); }
};

inline void embedding_plan(const int32_t* tokens, int N, EmbeddingPlan& plan) {
  plan.positions.resize(N);
  std::iota(plan.positions.begin(), plan.positions.end(), 0);
  std::stable_sort(plan.positions.begin(), plan.positions.end(),
                   [tokens](int32_t a, int32_t b) { return tokens[a] < tokens[b]; });
  plan.ids.clear();
  plan.offsets.clear();
  for (int k = 0; k < N; k++) {
    const int32_t id = tokens[plan.positions[k]];
    if (k == 0 || id != plan.ids.back()) {
      plan.ids.push_back(id);
      plan.offsets.push_back(k);
    }
  }
  plan.offsets.push_back(N);
}

}  // namespace cuda
}  // namespace fw
