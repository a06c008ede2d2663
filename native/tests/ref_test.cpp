// ref_test.cpp: parity with a plain-PyTorch Llama (tests/ref/llama_ref.py).
//
// Each case builds a float model with random weights, runs forward+backward
// here, writes the weights and the batch to a bundle (JSON index + raw
// float32), runs the reference on the same bundle and compares logits, loss
// and EVERY gradient. The metric per tensor is max|engine - torch| divided
// by max|torch| (relative to the tensor's scale); it must be <= 1e-4.
// Printed like llm.c's test_gpt2: OK / NOT OK and the difference per tensor.
// Skipped (not failed) when the Python with torch is absent; set
// FW_REF_PYTHON to choose the interpreter (default /usr/bin/python3).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "distill.h"
#include "engine_test_util.h"
#include "lora.h"
#include "ref_bundle.h"
#include "ref_cases.h"

namespace {

using fwref::Named;
using fwref::read_bundle;
using fwref::write_bundle;

std::string python() { return fwref::ref_python("/usr/bin/python3"); }
using fwref::ref_script;

bool have_torch() {
  static int ok = -1;
  if (ok < 0) ok = std::system((python() + " -c 'import torch' >/dev/null 2>&1").c_str()) == 0;
  return ok == 1;
}

// Compare one tensor, print the llm.c-style line, return whether it passed.
bool compare(const std::string& what, const float* a, const std::vector<float>& ref, double tol = 1e-4) {
  double md = 0, mx = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    md = std::max(md, (double)std::fabs(a[i] - ref[i]));
    mx = std::max(mx, (double)std::fabs(ref[i]));
  }
  double rel = md / std::max(mx, 1e-30);
  bool ok = rel <= tol && mx > 0;
  std::printf("%-7s %-62s max diff %.3e  rel %.3e\n", ok ? "OK" : "NOT OK", what.c_str(), md, rel);
  return ok;
}

struct Case {
  nlohmann::json cfg;
  bool lora = false;
  bool distill = false;
  int B = 2, T = 9;
};

using fwref::base_cfg;
using fwref::randomize;

void run_case(const Case& c, const char* label) {
  if (!have_torch()) GTEST_SKIP() << "no torch in " << python();
  fw::Config cfg = fw::config_from_json(c.cfg);
  fw::Model m(cfg);
  randomize(m, 42);
  std::vector<int32_t> tok, tgt;
  fwtest::random_batch(tok, tgt, c.B, c.T, cfg.vocab_size, 43);
  for (int t = 0; t < 3; t++) tgt[t] = fw::kIgnoreIndex;  // a 3-token prompt in sequence 0
  nlohmann::json meta = {{"config", c.cfg}, {"B", c.B}, {"T", c.T}, {"tokens", tok}, {"targets", tgt}};
  std::vector<Named> ts;
  for (const fw::TensorInfo& t : m.layout.tensors) ts.push_back({t.name, t.shape, m.params.data() + t.offset});

  fw::LoraConfig lc;
  lc.rank = 4;
  lc.alpha = 8;
  lc.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  fw::Lora lora(cfg, lc);
  if (c.lora) {
    lora.init(44);
    auto r = fwtest::randn(lora.params.size(), 45, 0.05);  // B != 0
    for (size_t i = 0; i < r.size(); i++) lora.params[i] += (float)r[i];
    m.set_lora(&lora);
    meta["lora"] = {{"rank", lc.rank}, {"alpha", lc.alpha}};
    for (const fw::TensorInfo& t : lora.layout.tensors) ts.push_back({t.name, t.shape, lora.params.data() + t.offset});
  } else {
    m.enable_grads();
  }
  nlohmann::json tcfg = base_cfg();
  tcfg["hidden_size"] = 48;
  tcfg["num_key_value_heads"] = 4;
  tcfg["head_dim"] = 12;
  tcfg["tie_word_embeddings"] = true;
  tcfg["attention_bias"] = false;
  fw::Model teacher(fw::config_from_json(tcfg));
  std::vector<std::string> tnames;
  if (c.distill) {
    teacher.init_random(46, 0.3);
    meta["distill"] = {{"alpha", 0.4}, {"temperature", 2.0}, {"teacher_config", tcfg}};
    for (const fw::TensorInfo& t : teacher.layout.tensors) tnames.push_back("teacher." + t.name);
    for (size_t i = 0; i < teacher.layout.tensors.size(); i++) {
      const fw::TensorInfo& t = teacher.layout.tensors[i];
      ts.push_back({tnames[i], t.shape, teacher.params.data() + t.offset});
    }
  }

  // The engine's side.
  int N = c.B * c.T, V = cfg.vocab_size;
  float loss = m.forward(tok.data(), tgt.data(), c.B, c.T);
  std::vector<float> logits(m.logits(), m.logits() + (size_t)N * V);
  if (c.distill) {
    teacher.forward(tok.data(), nullptr, c.B, c.T);
    std::vector<float> dl((size_t)N * V);
    fw::DistillLoss d = fw::distill_loss(dl.data(), logits.data(), teacher.logits(), tgt.data(), N, V, 0.4, 2.0,
                                         (double)m.last_target_count());
    loss = (float)d.total;
    m.backward(dl.data());
  } else {
    m.backward();
  }

  char dir[] = "/tmp/fw_ref_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string in = std::string(dir) + "/in", out = std::string(dir) + "/out";
  write_bundle(in, meta, ts);
  std::string cmd = python() + " " + ref_script() + " " + in + " " + out;
  int rc = std::system(cmd.c_str());
  ASSERT_EQ(rc, 0) << "reference failed: " << cmd;
  auto ref = read_bundle(out);
  std::system(("rm -rf " + std::string(dir)).c_str());

  std::printf("--- %s\n", label);
  int bad = 0;
  bad += !compare("logits", logits.data(), ref.at("logits"));
  bad += !compare("loss", &loss, ref.at("loss"));
  std::printf("        loss engine %.7f torch %.7f\n", loss, ref.at("loss")[0]);
  const fw::ParamLayout& lay = c.lora ? lora.layout : m.layout;
  const float* g = c.lora ? lora.grads.data() : m.grads.data();
  size_t checked = 0;
  for (const fw::TensorInfo& t : lay.tensors) {
    bad += !compare("grad " + t.name, g + t.offset, ref.at("grad." + t.name));
    checked++;
  }
  EXPECT_EQ(checked + 2, ref.size()) << "every reference tensor compared";
  EXPECT_EQ(bad, 0) << bad << " tensors NOT OK";
}

}  // namespace

TEST(ref, matches_pytorch_gqa_bias_untied) {
  run_case({base_cfg()}, "llama, GQA 4/2, q/k/v/o bias, untied");
}

TEST(ref, matches_pytorch_qwen2_tied_mqa) {
  run_case({fwref::qwen2_cfg()}, "qwen2, MQA 4/1, q/k/v bias, tied");
}

TEST(ref, matches_pytorch_lora) {
  Case c{base_cfg()};
  c.lora = true;
  run_case(c, "llama + LoRA r=4 on all 7 projections (base frozen)");
}

TEST(ref, matches_pytorch_distillation) {
  Case c{base_cfg()};
  c.distill = true;
  run_case(c, "distillation a=0.4 T=2 from a wider tied teacher");
}
