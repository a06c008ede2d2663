// backend_cpu.cpp: fw_worker on the host engine (fw::Trainer), and the
// answers of a build without the CUDA backend.
#include <utility>

#include "backend.h"
#include "common.h"

namespace fw {
namespace worker {

namespace {

class CpuBackend : public TrainBackend {
 public:
  CpuBackend(Model& model, const JobSpec& spec, Lora* lora, Model* teacher, std::unique_ptr<Collective> coll)
      : coll_(std::move(coll)), tr_(model, spec.train, lora, teacher) {
    tr_.set_collective(coll_.get());
  }
  const char* device() const override { return "cpu"; }
  std::string precision() const override { return "fp32"; }
  Collective& collective() override { return *coll_; }
  StepResult step(const int32_t* tokens, const int32_t* targets, int B, int T) override {
    return tr_.step(tokens, targets, B, T);
  }
  double eval_loss(const int32_t* tokens, const int32_t* targets, int B, int T) override {
    return tr_.eval_loss(tokens, targets, B, T);
  }
  int64_t step_count() const override { return tr_.step_count(); }
  size_t trainable_param_count() const override { return tr_.trainable_param_count(); }
  DistillLoss last_distill() const override { return tr_.last_distill(); }
  std::string save_checkpoint(const std::string& root, const nlohmann::json& identity, const DataPosition& pos,
                              int keep_last) override {
    return checkpoint_save_trainer(root, tr_, identity, pos, keep_last);
  }
  DataPosition restore_checkpoint(const LoadedCheckpoint& ck) override { return checkpoint_restore_trainer(ck, tr_); }
  void weights_to_host() override {}  // the trainer updates the host model in place

 private:
  std::unique_ptr<Collective> coll_;
  Trainer tr_;
};

}  // namespace

std::unique_ptr<TrainBackend> make_cpu_backend(Model& model, const JobSpec& spec, Lora* lora, Model* teacher,
                                               std::unique_ptr<Collective> coll) {
  return std::make_unique<CpuBackend>(model, spec, lora, teacher, std::move(coll));
}

#ifndef FW_HAVE_CUDA
class CudaSession {};
void CudaSessionDeleter::operator()(CudaSession* s) const { delete s; }

bool cuda_built() { return false; }
int cuda_device_count() { return 0; }

CudaSessionPtr cuda_join(const CollectiveEnv&) {
  FW_CHECK_HINT(false, kUnsupported, "device \"cuda\": this fw_worker was built without the CUDA backend",
                "build native/ where the CUDA toolkit and cuBLAS are installed (docs/cuda.md), or use device \"cpu\"");
  return nullptr;
}

std::unique_ptr<TrainBackend> make_cuda_backend(CudaSessionPtr, Model&, const JobSpec&, Lora*, const Model*) {
  FW_CHECK(false, kUnsupported, "device \"cuda\": this fw_worker was built without the CUDA backend");
  return nullptr;
}
#endif

}  // namespace worker
}  // namespace fw
