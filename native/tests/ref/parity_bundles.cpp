// parity_bundles: writes the instances of cuda_model_test's forward/backward
// parity cases (model_cases.h: the same configs, seeds, weights and batches)
// as bundles (ref_bundle.h) for ref/cuda_model_twin.py, which replays the CUDA
// model's bf16 rounding on them on the CPU.
//
// Usage: fw_parity_bundles OUT_DIR INIT_STD SEED
//   SEED: the value the test's seed counter starts from (200 for
//   forward_backward_match_cpu_bf16 at std 0.1, 300 for ..._at_hf_init_scale
//   at std 0.02); case i uses SEED + 10 (i + 1), as the test does.
// Writes OUT_DIR/case<i>.json / .bin: fp32 weights before any rounding, the
// tokens and targets, and meta {config, B, T, name, seed, init_std}.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../model_cases.h"
#include "../ref_bundle.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s OUT_DIR INIT_STD SEED\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const double init_std = std::atof(argv[2]);
  uint64_t seed = std::strtoull(argv[3], nullptr, 10);
  int i = 0;
  for (const fwcases::ModelCase& mc : fwcases::cases()) {
    seed += 10;
    const fw::Config cfg = fw::config_from_json(mc.cfg);
    fw::Model m(cfg);
    fwcases::init_case_model(m, seed, init_std);
    std::vector<int32_t> tok, tgt;
    fwcases::batch(tok, tgt, mc.B, mc.T, cfg.vocab_size, seed + 7);
    const nlohmann::json meta = {{"config", mc.cfg}, {"B", mc.B},     {"T", mc.T},
                                 {"tokens", tok},    {"targets", tgt}, {"name", mc.name},
                                 {"seed", seed},     {"init_std", init_std}};
    std::vector<fwref::Named> ts;
    for (const fw::TensorInfo& t : m.layout.tensors) ts.push_back({t.name, t.shape, m.params.data() + t.offset});
    fwref::write_bundle(dir + "/case" + std::to_string(i++), meta, ts);
  }
  std::printf("%d bundles in %s\n", i, dir.c_str());
  return 0;
}
