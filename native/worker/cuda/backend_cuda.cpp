// backend_cuda.cpp: fw_worker on the GPU (backend.h). Built into fw_worker
// only when the CUDA backend links (fw_cuda, with cuBLAS); CI compiles it
// without linking.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <type_traits>
#include <utility>
#include <vector>

#include "backend.h"
#include "collective_nccl.h"
#include "collective_staged.h"
#include "common.h"
#include "cuda_check.h"
#include "gemm_cublas.h"
#include "model_cuda.h"

namespace fw {
namespace worker {

// The GPU this rank runs on and its collective: NCCL across ranks, the local
// one for a single rank, or Gloo with device buffers staged through the host
// (FW_CUDA_COLLECTIVE=gloo; `nccl` is then the staged wrapper over `local`,
// declared after it so that it goes first).
class CudaSession {
 public:
  int device = 0;
  std::string device_name;
  std::unique_ptr<Collective> local;
  std::unique_ptr<cuda::NcclCollective> nccl;
  Collective& coll() { return nccl ? static_cast<Collective&>(*nccl) : *local; }
};

namespace {

// FW_CUDA_COLLECTIVE: how GPU ranks are joined. "nccl" (the default): one
// GPU per rank, NCCL. "gloo": Gloo over TCP, device buffers staged through
// host memory (collective_staged.h), so ranks may share a GPU (LOCAL_RANK
// wraps around the visible devices) and a host without NCCL can still run
// several ranks; correct but not overlapped, for tests and shared GPUs.
bool staged_gloo_collective() {
  const char* v = std::getenv("FW_CUDA_COLLECTIVE");
  const std::string s = v && *v ? v : "nccl";
  FW_CHECK_HINT(s == "nccl" || s == "gloo", kInvalidArgument,
                "FW_CUDA_COLLECTIVE=" << s << ": expected nccl or gloo",
                "nccl for one GPU per rank, gloo for ranks that share a GPU");
  return s == "gloo";
}

}  // namespace

void CudaSessionDeleter::operator()(CudaSession* s) const { delete s; }

bool cuda_built() { return true; }

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver / no device: not an error here
    return 0;
  }
  return n;
}

CudaSessionPtr cuda_join(const CollectiveEnv& cenv) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  (void)cudaGetLastError();
  // the runtime's reason (no driver, a driver older than the runtime, no device) is the useful part
  FW_CHECK_HINT(e == cudaSuccess && n > 0, kUnsupported,
                "device \"cuda\": no CUDA device is visible to this process ("
                    << (e == cudaSuccess ? "no device" : cudaGetErrorString(e)) << ")",
                "check the NVIDIA driver and CUDA_VISIBLE_DEVICES, or use device \"cpu\"");
  const bool staged = cenv.world_size > 1 && staged_gloo_collective();
  FW_CHECK_HINT(staged || cenv.local_rank < n, kInvalidArgument,
                "device \"cuda\": LOCAL_RANK " << cenv.local_rank << " but only " << n << " CUDA device(s) are visible",
                "one rank per GPU with NCCL: a host runs at most as many ranks as it has GPUs "
                "(FW_CUDA_COLLECTIVE=gloo lets ranks share them)");
  CudaSessionPtr s(new CudaSession());
  s->device = staged ? cenv.local_rank % n : cenv.local_rank;
  FW_CUDA_CHECK(cudaSetDevice(s->device));
  cudaDeviceProp prop{};
  FW_CUDA_CHECK(cudaGetDeviceProperties(&prop, s->device));
  s->device_name = prop.name;
  if (staged) {
    s->local = make_collective(cenv);  // Gloo: joins the other ranks
    s->nccl = cuda::make_staged_collective(*s->local);
  } else if (cenv.world_size > 1) {
    // A fixed reduction order makes runs repeatable bit for bit (collective_nccl.h);
    // a user's own NCCL_ALGO / NCCL_PROTO win.
    setenv("NCCL_ALGO", "Ring", 0);
    setenv("NCCL_PROTO", "Simple", 0);
    s->nccl = cuda::make_nccl_collective(cenv);
  } else {
    s->local = make_collective(cenv);
  }
  return s;
}

namespace {

// The teacher on the GPU, uploaded once (forward only).
template <typename T>
std::unique_ptr<cuda::CudaModel<T>> upload_teacher(const Model* teacher, cuda::Blas& blas) {
  if (!teacher) return nullptr;
  auto t = std::make_unique<cuda::CudaModel<T>>(teacher->cfg, blas);
  t->load_params(teacher->params.data());
  return t;
}

template <typename T>
std::unique_ptr<cuda::CudaLora<T>> upload_lora(const Lora* lora) {
  return lora ? std::make_unique<cuda::CudaLora<T>>(*lora) : nullptr;
}

template <typename T>
class CudaBackend : public TrainBackend {
 public:
  CudaBackend(CudaSessionPtr s, Model& host, const JobSpec& spec, Lora* lora, const Model* teacher)
      : s_(std::move(s)),
        host_(host),
        host_lora_(lora),
        gpu_(host.cfg, blas_),
        lora_(upload_lora<T>(lora)),
        teacher_(upload_teacher<T>(teacher, blas_)),
        tr_(gpu_, spec.train, s_->nccl.get(), spec.zero1, 25u << 20, lora_.get(), teacher_.get()),
        rng_(spec.train.seed) {
    // With an adapter the base model is frozen and load_master below loads
    // the adapter only: the base weights go up here.
    if (host_lora_) gpu_.load_params(host_.params.data());
    // The master starts from the exact fp32 values (the constructor's
    // default would start it from their 16-bit rounding).
    tr_.load_master(trainable_host());
  }
  const char* device() const override { return "cuda"; }
  std::string precision() const override {
    return std::is_same_v<T, cuda::bf16> ? "bf16" : std::is_same_v<T, cuda::f16> ? "fp16" : "fp32";
  }
  Collective& collective() override { return s_->coll(); }
  StepResult step(const int32_t* tokens, const int32_t* targets, int B, int T_) override {
    return tr_.step(tokens, targets, B, T_);
  }
  double eval_loss(const int32_t* tokens, const int32_t* targets, int B, int T_) override {
    return tr_.eval_loss(tokens, targets, B, T_);
  }
  int64_t step_count() const override { return tr_.step_count(); }
  size_t trainable_param_count() const override { return tr_.trainable_layout().count_params(); }
  DistillLoss last_distill() const override { return tr_.last_distill(); }
  void gather_state() override { stage(true); }
  std::string save_checkpoint(const std::string& root, const nlohmann::json& identity, const DataPosition& pos,
                              int keep_last) override {
    stage(false);
    TrainState st{&tr_.trainable_layout(), trainable_host(), m_.data(), v_.data(), tr_.step_count(), rng_};
    nlohmann::json extra;  // null unless there is something to keep, as the cpu writes it
    if (tr_.loss_scaling())  // fp16: the dynamic loss scale resumes where it was
      extra["loss_scale"] = {{"scale", tr_.loss_scaler().scale}, {"good_steps", tr_.loss_scaler().good_steps}};
    return checkpoint_save_state(root, st, identity, pos, keep_last, extra);
  }
  DataPosition restore_checkpoint(const LoadedCheckpoint& ck) override {
    ensure_moments();
    TrainState st{&tr_.trainable_layout(), trainable_host(), m_.data(), v_.data(), 0, Rng()};
    nlohmann::json extra;
    DataPosition pos = checkpoint_restore_state(ck, st, &extra);
    if (tr_.loss_scaling() && extra.is_object() && extra.contains("loss_scale")) {
      const nlohmann::json& ls = extra["loss_scale"];
      FW_CHECK(ls.value("scale", 0.0) > 0 && ls.value("good_steps", -1) >= 0, kCorrupt,
               ck.dir << "/state.json: bad extra.loss_scale " << ls.dump());
      tr_.loss_scaler().scale = ls["scale"].get<float>();
      tr_.loss_scaler().good_steps = ls["good_steps"].get<int>();
    }
    tr_.load_master(trainable_host());
    tr_.load_moments(m_.data(), v_.data());
    tr_.set_step_count(st.step);
    rng_ = st.rng;
    staged_step_ = -1;
    return pos;
  }
  // The trained tensors (the model, or the adapter) back into the host
  // objects the worker saves from.
  void weights_to_host() override { stage(false); }
  nlohmann::json describe() const override {
    return {{"gpu", s_->device_name}, {"cuda_device", s_->device}};
  }

 private:
  void ensure_moments() {
    m_.resize(tr_.trainable_layout().numel);
    v_.resize(tr_.trainable_layout().numel);
  }
  // The fp32 master (into the host model or adapter) and the moments (m_,
  // v_) on the host, once per step. With ZeRO-1 across ranks each rank holds
  // one shard of both, and allgather_by_sum (collective.h) assembles the
  // whole on every rank; that is a collective, so only gather_state (called
  // by all ranks) may do it.
  void stage(bool collective) {
    if (staged_step_ == tr_.step_count()) return;
    ensure_moments();
    float* w = trainable_host();
    const size_t n = tr_.trainable_layout().numel;
    const bool sharded = tr_.shard_range() != std::pair<size_t, size_t>{0, n};
    FW_CHECK(collective || !sharded, kInternal, "ZeRO-1 state must be gathered on every rank first (gather_state)");
    tr_.download_master(w);
    tr_.download_moments(m_.data(), v_.data());  // this rank's shard; the rest is zeroed by the gather
    if (sharded) {
      const auto [b, e] = tr_.shard_range();
      Collective& c = s_->coll();
      allgather_by_sum(c, w, n, b, e);
      allgather_by_sum(c, m_.data(), n, b, e);
      allgather_by_sum(c, v_.data(), n, b, e);
    }
    staged_step_ = tr_.step_count();
  }
  // fp32 host copy of what is trained (layout order of trainable_layout()).
  float* trainable_host() { return host_lora_ ? host_lora_->params.data() : host_.params.data(); }

  CudaSessionPtr s_;
  Model& host_;
  Lora* host_lora_;
  cuda::Blas blas_;  // before the models: they keep a reference
  cuda::CudaModel<T> gpu_;
  std::unique_ptr<cuda::CudaLora<T>> lora_;
  std::unique_ptr<cuda::CudaModel<T>> teacher_;
  cuda::CudaTrainer<T> tr_;
  Rng rng_;  // the spare generator the cpu trainer checkpoints (TrainerT::rng); saved and restored the same way
  std::vector<float> m_, v_;  // host staging for checkpoints
  int64_t staged_step_ = -1;  // the step the host copies were staged at
};

}  // namespace

std::unique_ptr<TrainBackend> make_cuda_backend(CudaSessionPtr s, Model& model, const JobSpec& spec, Lora* lora,
                                                const Model* teacher) {
  FW_CHECK(s != nullptr, kInternal, "make_cuda_backend without a session");
  FW_CUDA_CHECK(cudaSetDevice(s->device));
  if (spec.precision == "bf16")
    return std::make_unique<CudaBackend<cuda::bf16>>(std::move(s), model, spec, lora, teacher);
  if (spec.precision == "fp16")
    return std::make_unique<CudaBackend<cuda::f16>>(std::move(s), model, spec, lora, teacher);
  return std::make_unique<CudaBackend<float>>(std::move(s), model, spec, lora, teacher);
}

}  // namespace worker
}  // namespace fw
