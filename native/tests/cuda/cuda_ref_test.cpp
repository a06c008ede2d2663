// cuda_ref_test.cpp: the whole CUDA model (model_cuda.h) against the
// plain-PyTorch Llama reference (native/tests/ref/llama_ref.py) run on the GPU.
//
// Each case builds a small model with random weights (several configs, as
// ref_test.cpp: GQA with q/k/v/o biases and an untied lm_head, qwen2 MQA with
// a tied lm_head, plain multi-head attention), runs CudaModel forward +
// backward on the GPU, writes the weights, the batch and nothing else to a
// bundle (tests/ref_bundle.h, shared with ref_test.cpp), runs
//   $FW_REF_PYTHON native/tests/ref/llama_ref.py --device cuda IN OUT
// (fp32 on the GPU with TF32 off) and compares logits, loss and EVERY
// gradient by max|diff| / max|ref| per tensor, printing OK / NOT OK lines.
//
//   fp32: CudaModel<float> (true fp32 GEMMs, no TF32) vs torch fp32: 1e-4,
//         the bound of every fp32 parity test in the engine.
//   bf16: CudaModel<bf16> vs the same fp32 torch reference. The weights are
//         rounded to bf16 before the bundle is written, so both sides use the
//         very same weights and the difference is the GPU's bf16 arithmetic
//         alone. bf16 keeps 8 significant bits (unit roundoff 2^-9 ~ 2e-3)
//         and the GPU rounds every stored activation to it: each projection,
//         norm, attention and MLP output, the residual stream and the logits,
//         about ten roundings in sequence per layer, so a correct
//         implementation sits at a few 1e-3 relative to the tensor's scale
//         and 2e-2 (~10 units of roundoff) bounds logits and loss with margin
//         while a wrong formula is off by O(1). Gradients pass through
//         backward's chain of bf16 roundings on top of forward's (dlogits,
//         every d-activation, the bf16 gradient buffer itself), roughly
//         doubling the accumulated error: 5e-2.
//
// Skipped when there is no CUDA device, or the interpreter (FW_REF_PYTHON,
// default python3) has no torch with CUDA; with FW_CUDA_TESTS_REQUIRE_GPU set
// (run_gpu_checks.sh) both fail instead, so a GPU run cannot pass by skipping.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda_test_util.h"
#include "model_cuda.h"
#include "../ref_bundle.h"
#include "../ref_cases.h"

namespace {

using fwcuda_test::bf16;

// The interpreter with CUDA PyTorch: FW_REF_PYTHON, else python3 from PATH
// (on the GPU machine that is the one with torch + CUDA).
std::string ref_python() { return fwref::ref_python("python3"); }
using fwref::ref_script;

bool have_cuda_torch(std::string* why) {
  static int ok = -1;
  static std::string reason;
  if (ok < 0) {
    const std::string py = ref_python();
    if (std::system((py + " -c 'import torch' >/dev/null 2>&1").c_str()) != 0) {
      reason = "no torch in " + py + " (set FW_REF_PYTHON)";
      ok = 0;
    } else if (std::system((py + " -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'"
                                 " >/dev/null 2>&1")
                               .c_str()) != 0) {
      reason = "torch in " + py + " has no CUDA device";
      ok = 0;
    } else {
      ok = 1;
    }
  }
  *why = reason;
  return ok == 1;
}

// A CUDA device and torch with CUDA, else skip (or fail under
// FW_CUDA_TESTS_REQUIRE_GPU, like FW_REQUIRE_GPU).
#define FW_REQUIRE_CUDA_TORCH()                                                    \
  do {                                                                             \
    FW_REQUIRE_GPU();                                                              \
    std::string fw_why_;                                                           \
    if (!have_cuda_torch(&fw_why_)) {                                              \
      if (std::getenv("FW_CUDA_TESTS_REQUIRE_GPU")) GTEST_FAIL() << fw_why_;       \
      GTEST_SKIP() << fw_why_;                                                     \
    }                                                                              \
  } while (0)

using fwref::base_cfg;
using fwref::qwen2_cfg;
using fwref::randomize;

// Multi-head attention, no biases, tied, wider heads, three layers.
nlohmann::json mha_cfg() {
  nlohmann::json c = base_cfg();
  c["vocab_size"] = 96;
  c["hidden_size"] = 64;
  c["intermediate_size"] = 80;
  c["num_hidden_layers"] = 3;
  c["num_attention_heads"] = 4;
  c["num_key_value_heads"] = 4;
  c["head_dim"] = 16;
  c["tie_word_embeddings"] = true;
  c["attention_bias"] = false;
  c["rope_theta"] = 10000.0;
  return c;
}

template <typename T>
void run_case(const nlohmann::json& jcfg, int B, int T_, const char* label) {
  constexpr bool kF32 = std::is_same<T, float>::value;
  const double tol_fwd = kF32 ? 1e-4 : 2e-2;  // logits, loss (see the header comment)
  const double tol_grad = kF32 ? 1e-4 : 5e-2;

  fw::Config cfg = fw::config_from_json(jcfg);
  fw::Model m(cfg);
  randomize(m, 42);
  // bf16: round the weights first so torch computes with the GPU's weights.
  std::vector<float> params = fwcuda_test::rounded<T>(m.params);

  std::mt19937 rng(43);
  std::vector<int32_t> tok((size_t)B * T_), tgt((size_t)B * T_);
  for (size_t i = 0; i < tok.size(); i++) {
    tok[i] = (int32_t)(rng() % (uint32_t)cfg.vocab_size);
    tgt[i] = (int32_t)(rng() % (uint32_t)cfg.vocab_size);
  }
  for (int t = 0; t < 3 && t < T_; t++) tgt[t] = fw::kIgnoreIndex;  // a 3-token prompt in sequence 0

  // The GPU's side.
  fw::cuda::Blas blas;
  fw::cuda::CudaModel<T> gpu(cfg, blas);
  gpu.load_params(params.data());
  gpu.enable_grads();
  const float loss = gpu.forward(tok.data(), tgt.data(), B, T_);
  const std::vector<float> logits = gpu.logits_host();
  gpu.backward();
  std::vector<float> grads(gpu.layout.numel);
  gpu.download_grads(grads.data());
  FW_CUDA_CHECK(cudaDeviceSynchronize());
  ASSERT_EQ(logits.size(), (size_t)B * T_ * cfg.vocab_size);

  // The reference's side, on the same weights and batch.
  nlohmann::json meta = {{"config", jcfg}, {"B", B}, {"T", T_}, {"tokens", tok}, {"targets", tgt}};
  std::vector<fwref::Named> ts;
  for (const fw::TensorInfo& t : gpu.layout.tensors) ts.push_back({t.name, t.shape, params.data() + t.offset});
  char dir[] = "/tmp/fw_cuda_ref_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string in = std::string(dir) + "/in", out = std::string(dir) + "/out";
  fwref::write_bundle(in, meta, ts);
  const std::string cmd = ref_python() + " " + ref_script() + " --device cuda " + in + " " + out;
  const int rc = std::system(cmd.c_str());
  ASSERT_EQ(rc, 0) << "reference failed: " << cmd;
  auto ref = fwref::read_bundle(out);
  std::system(("rm -rf " + std::string(dir)).c_str());

  std::printf("--- %s (%s, B=%d T=%d)\n", label, fwcuda_test::type_name<T>(), B, T_);
  fwcuda_test::expect_parity("logits", logits, ref.at("logits"), tol_fwd);
  fwcuda_test::expect_parity("loss", {loss}, ref.at("loss"), tol_fwd);
  std::printf("         loss gpu %.7f torch %.7f\n", loss, ref.at("loss")[0]);
  size_t checked = 0;
  for (const fw::TensorInfo& t : gpu.layout.tensors) {
    auto it = ref.find("grad." + t.name);
    ASSERT_NE(it, ref.end()) << "reference has no gradient for " << t.name;
    std::vector<float> g(grads.begin() + (std::ptrdiff_t)t.offset, grads.begin() + (std::ptrdiff_t)(t.offset + t.numel));
    fwcuda_test::expect_parity("grad " + t.name, g, it->second, tol_grad);
    checked++;
  }
  EXPECT_EQ(checked + 2, ref.size()) << "every reference tensor compared";
}

}  // namespace

TEST(cuda_ref, fp32_gqa_bias_untied) {
  FW_REQUIRE_CUDA_TORCH();
  run_case<float>(base_cfg(), 2, 9, "llama, GQA 4/2, q/k/v/o bias, untied");
}

TEST(cuda_ref, fp32_qwen2_tied_mqa) {
  FW_REQUIRE_CUDA_TORCH();
  run_case<float>(qwen2_cfg(), 2, 9, "qwen2, MQA 4/1, q/k/v bias, tied");
}

TEST(cuda_ref, fp32_mha_tied_no_bias_longer) {
  FW_REQUIRE_CUDA_TORCH();
  // T = 37 spans more than one attention tile of the GPU kernel.
  run_case<float>(mha_cfg(), 3, 37, "llama, MHA 4/4, head_dim 16, no bias, tied, 3 layers");
}

TEST(cuda_ref, bf16_gqa_bias_untied) {
  FW_REQUIRE_CUDA_TORCH();
  run_case<bf16>(base_cfg(), 2, 9, "llama, GQA 4/2, q/k/v/o bias, untied");
}

TEST(cuda_ref, bf16_qwen2_tied_mqa) {
  FW_REQUIRE_CUDA_TORCH();
  run_case<bf16>(qwen2_cfg(), 2, 9, "qwen2, MQA 4/1, q/k/v bias, tied");
}

TEST(cuda_ref, bf16_mha_tied_no_bias_longer) {
  FW_REQUIRE_CUDA_TORCH();
  run_case<bf16>(mha_cfg(), 3, 37, "llama, MHA 4/4, head_dim 16, no bias, tied, 3 layers");
}
