// backend.h: what fw_worker trains with, per job-spec "device".
//
// The worker's loop (main.cpp) is the same for every device: it asks the
// backend for a step, an evaluation, a checkpoint or a resume, and at the end
// for the trained weights in the host model it writes out.
//
//   cpu   fw::Trainer on the host model (LoRA, distillation, Gloo data
//         parallel); always built.
//   cuda  fw::cuda::CudaTrainer on a copy of the host model on the GPU chosen
//         by LOCAL_RANK (fp32, or bf16 / fp16 with fp32 master weights; LoRA,
//         distillation and recomputation as on the cpu; NCCL data parallel
//         with the unique id exchanged through the trainer's store, and
//         optionally ZeRO-1: train.zero1).
//         Built when the CUDA backend links (cuBLAS found); otherwise asking
//         for it is kUnsupported.
//
// Checkpoints hold the fp32 trainable tensors and AdamW moments in the same
// files on every device (checkpoint.h), so a run can resume on another one.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "checkpoint.h"
#include "collective.h"
#include "jobspec.h"
#include "lora.h"
#include "model.h"
#include "shards.h"
#include "train.h"

namespace fw {
namespace worker {

class TrainBackend {
 public:
  virtual ~TrainBackend() = default;
  virtual const char* device() const = 0;     // "cpu" / "cuda"
  virtual std::string precision() const = 0;  // "fp32" / "bf16"
  // The ranks' collective (stop agreement, and the gradient sums).
  virtual Collective& collective() = 0;
  virtual StepResult step(const int32_t* tokens, const int32_t* targets, int B, int T) = 0;
  virtual double eval_loss(const int32_t* tokens, const int32_t* targets, int B, int T) = 0;
  virtual int64_t step_count() const = 0;
  virtual size_t trainable_param_count() const = 0;
  // Distillation parts of the last step (zeros without a teacher).
  virtual DistillLoss last_distill() const { return {}; }
  // Collective: every rank calls it before one rank saves a checkpoint or
  // takes the weights (save_checkpoint, weights_to_host). With ZeRO-1 each
  // rank holds a shard of the fp32 master and the moments; this gathers them
  // so that the saving rank has all of it. Nothing to do elsewhere.
  virtual void gather_state() {}
  virtual std::string save_checkpoint(const std::string& root, const nlohmann::json& identity, const DataPosition& pos,
                                      int keep_last) = 0;
  virtual DataPosition restore_checkpoint(const LoadedCheckpoint& ck) = 0;
  // Leave the trained weights in the host model (and LoRA) the backend was
  // made with, fp32, ready to be saved.
  virtual void weights_to_host() = 0;
  // Extra fields for the started event (e.g. the GPU's name).
  virtual nlohmann::json describe() const { return nlohmann::json::object(); }
};

// cpu: takes the collective the worker joined before loading anything.
std::unique_ptr<TrainBackend> make_cpu_backend(Model& model, const JobSpec& spec, Lora* lora, Model* teacher,
                                               std::unique_ptr<Collective> coll);

// cuda: selects the device (cenv.local_rank) and joins the other ranks over
// NCCL. Split from the model upload so that a missing rank fails before any
// model is loaded, like on the cpu.
class CudaSession;  // defined where the backend is built
struct CudaSessionDeleter {
  void operator()(CudaSession* s) const;
};
using CudaSessionPtr = std::unique_ptr<CudaSession, CudaSessionDeleter>;
CudaSessionPtr cuda_join(const CollectiveEnv& cenv);
// With lora, only the adapter is trained (its host params receive the result
// in weights_to_host); with a teacher, the loss is distillation's.
std::unique_ptr<TrainBackend> make_cuda_backend(CudaSessionPtr session, Model& model, const JobSpec& spec,
                                                Lora* lora = nullptr, const Model* teacher = nullptr);

// Whether this build has the CUDA backend, and the CUDA devices it sees (0
// without the backend or without a driver).
bool cuda_built();
int cuda_device_count();

}  // namespace worker
}  // namespace fw
