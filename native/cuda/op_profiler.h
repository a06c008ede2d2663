// op_profiler.h: GPU time per op of the CUDA model loop, without an external
// profiler. The model and trainer call mark(name) before each op when a
// profiler is attached (CudaModel::set_profiler); each mark records an event
// on the stream, and the time between one mark and the next is added to the
// first mark's name. stop() closes the last op; collect() waits for the
// events and returns the totals, largest first.
//
//   fw::cuda::OpProfiler prof;
//   model.set_profiler(&prof);
//   for (...) trainer.step(...);         // marks recorded on the model's stream
//   prof.stop(model.stream());
//   for (auto& [name, ms] : prof.collect()) ...
//
// The sum over ops is the GPU's busy time on the stream (plus the gaps
// between kernels that fall inside an op); the wall time of a step minus it
// is time the GPU waited for the host (launches, synchronisations). Events
// are pooled, so profiling many steps allocates nothing after the first.
// Attaching a profiler adds one event record per op; without one the model
// runs unchanged.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "cuda_check.h"

namespace fw {
namespace cuda {

class OpProfiler {
 public:
  OpProfiler() = default;
  ~OpProfiler() {
    for (cudaEvent_t e : pool_) cudaEventDestroy(e);
  }
  OpProfiler(const OpProfiler&) = delete;
  OpProfiler& operator=(const OpProfiler&) = delete;

  // Close the open op here and open `name` (a string literal or other
  // storage that outlives collect()).
  void mark(const char* name, cudaStream_t s) {
    if (used_ == pool_.size()) {
      cudaEvent_t e;
      FW_CUDA_CHECK(cudaEventCreate(&e));
      pool_.push_back(e);
    }
    FW_CUDA_CHECK(cudaEventRecord(pool_[used_], s));
    names_.push_back(name);
    used_++;
  }
  // Close the open op (an unnamed mark).
  void stop(cudaStream_t s) { mark(nullptr, s); }

  // Waits for every recorded event, adds the intervals to the totals and
  // starts over (totals are kept across collects until reset()).
  std::vector<std::pair<std::string, double>> collect() {
    if (used_ > 0) FW_CUDA_CHECK(cudaEventSynchronize(pool_[used_ - 1]));
    for (size_t i = 0; i + 1 < used_; i++) {
      if (names_[i] == nullptr) continue;
      float ms = 0;
      FW_CUDA_CHECK(cudaEventElapsedTime(&ms, pool_[i], pool_[i + 1]));
      totals_[names_[i]] += ms;
      counts_[names_[i]]++;
    }
    // an op still open carries over as the first mark of the next round
    if (used_ > 0 && names_[used_ - 1] != nullptr) {
      std::swap(pool_[0], pool_[used_ - 1]);
      names_ = {names_[used_ - 1]};
      used_ = 1;
    } else {
      names_.clear();
      used_ = 0;
    }
    std::vector<std::pair<std::string, double>> out(totals_.begin(), totals_.end());
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    return out;
  }
  // How many intervals were added under `name` so far.
  int count(const std::string& name) const {
    auto it = counts_.find(name);
    return it == counts_.end() ? 0 : it->second;
  }
  void reset() {
    totals_.clear();
    counts_.clear();
    names_.clear();
    used_ = 0;
  }

 private:
  std::vector<cudaEvent_t> pool_;
  std::vector<const char*> names_;  // per recorded event; nullptr closes
  size_t used_ = 0;
  std::map<std::string, double> totals_;
  std::map<std::string, int> counts_;
};

}  // namespace cuda
}  // namespace fw
