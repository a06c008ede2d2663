// fw_worker: the training process the trainer service launches.
//
//   fw_worker job.json        (or the spec on stdin: fw_worker < job.json)
//
// Reads a job spec (docs/worker.md), builds the model (from a config with a
// seeded init, or from a HF folder), optionally LoRA and a distillation
// teacher, trains on token shards, checkpoints every N steps and on SIGTERM,
// evaluates on the validation shards, and writes the final HF model folder
// (plus the PEFT adapter folder for LoRA). Progress goes to stdout as one JSON
// object per line; human-readable errors also go to stderr.
//
// Device (spec "device"): the host engine, or the GPU given by LOCAL_RANK
// (backend.h); the loop below is the same for both.
//
// Data parallel (world_size > 1): the ranks join through the trainer's store
// (collective.h; NCCL on the GPU), each reads its slice of the shards,
// gradients are summed; rank 0 alone writes checkpoints and the output folder.
//
// Exit codes: 0 ok, 2 bad spec/config, 3 I/O, 4 corrupt input, 5 unsupported,
// 6 rendezvous timeout, 7 collective timeout or lost peer, 8 store failure,
// 10 internal error, 143 stopped by SIGTERM/SIGINT after writing a checkpoint.
#include <omp.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>

#include "backend.h"
#include "checkpoint.h"
#include "collective.h"
#include "common.h"
#include "fileio.h"
#include "hf_io.h"
#include "jobspec.h"
#include "model.h"
#include "shards.h"
#include "train.h"

namespace fw {
const char* engine_version();
}

namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;  // events keep "event" first

volatile sig_atomic_t g_stop_signal = 0;

void on_signal(int sig) { g_stop_signal = sig; }

void emit(const ojson& j) {
  std::string line = j.dump() + "\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

int exit_code(fw::ErrorKind k) {
  switch (k) {
    case fw::ErrorKind::kInvalidArgument: return 2;
    case fw::ErrorKind::kIo: return 3;
    case fw::ErrorKind::kCorrupt: return 4;
    case fw::ErrorKind::kUnsupported: return 5;
    case fw::ErrorKind::kInternal: return 10;
  }
  return 10;
}

const char* kind_name(fw::ErrorKind k) {
  switch (k) {
    case fw::ErrorKind::kInvalidArgument: return "invalid_argument";
    case fw::ErrorKind::kIo: return "io";
    case fw::ErrorKind::kCorrupt: return "corrupt";
    case fw::ErrorKind::kUnsupported: return "unsupported";
    case fw::ErrorKind::kInternal: return "internal";
  }
  return "internal";
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Replaces `final_dir` by the fully written `staging` directory.
void publish_dir(const std::string& staging, const std::string& final_dir) {
  std::string parent = final_dir.find('/') == std::string::npos ? "." : final_dir.substr(0, final_dir.find_last_of('/'));
  if (parent.empty()) parent = "/";
  if (fw::path_exists(final_dir)) {
    std::string trash = final_dir + ".old-" + std::to_string(::getpid());
    fw::rename_path(final_dir, trash);
    fw::rename_path(staging, final_dir);
    fw::fsync_dir(parent);
    fw::remove_all(trash);
  } else {
    fw::rename_path(staging, final_dir);
    fw::fsync_dir(parent);
  }
}

// Mean validation loss over up to `batches` batches from the start of the
// validation stream (the same windows every time).
double eval_val(fw::worker::TrainBackend& tr, fw::ShardLoader& val, int batches, int B, int T) {
  std::vector<int32_t> in((size_t)B * T), tg((size_t)B * T);
  val.set_position({});
  int n = (int)std::min<uint64_t>((uint64_t)batches, val.batches_per_epoch());
  double sum = 0;
  int64_t count = 0;
  for (int i = 0; i < n; i++) {
    val.next_batch(in.data(), tg.data());
    int64_t c = 0;
    for (int32_t t : tg) c += t != fw::kIgnoreIndex;
    if (c == 0) continue;
    sum += tr.eval_loss(in.data(), tg.data(), B, T) * (double)c;
    count += c;
  }
  return count > 0 ? sum / (double)count : NAN;
}

int run(const std::string& spec_text) {
  fw::JobSpec spec = fw::jobspec_parse_text(spec_text);
  // torchrun-style environment, used when the spec does not say
  auto env_int = [](const char* name, int def) {
    const char* v = std::getenv(name);
    if (!v || !*v) return def;
    char* end = nullptr;
    long x = std::strtol(v, &end, 10);
    FW_CHECK(*end == '\0' && x >= 0 && x < (1 << 20), kInvalidArgument, "environment variable " << name << "=" << v << " is not a valid integer");
    return (int)x;
  };
  if (!spec.source.contains("world_size")) spec.world_size = env_int("WORLD_SIZE", spec.world_size);
  if (!spec.source.contains("rank")) spec.rank = env_int("RANK", spec.rank);
  FW_CHECK(spec.rank < spec.world_size, kInvalidArgument, "rank " << spec.rank << " must be < world_size " << spec.world_size);
  // Join the other ranks first: a missing rank fails fast (exit 6) before
  // anyone loads a model.
  fw::CollectiveEnv cenv = fw::collective_env();
  cenv.rank = spec.rank;
  cenv.world_size = spec.world_size;
  const bool on_gpu = spec.device == "cuda";
  std::unique_ptr<fw::Collective> coll;
  fw::worker::CudaSessionPtr gpu;
  if (on_gpu)
    gpu = fw::worker::cuda_join(cenv);
  else
    coll = fw::make_collective(cenv);
  const bool lead = spec.rank == 0;  // writes checkpoints and the output folder

  // model
  std::unique_ptr<fw::Model> model;
  if (!spec.model_path.empty()) {
    model = fw::model_load_hf(spec.model_path);
  } else {
    fw::Config cfg = fw::config_from_json(spec.model_config);
    model = std::make_unique<fw::Model>(cfg);
    model->init_random(spec.init_seed, spec.init_std);
  }
  const fw::Config& cfg = model->cfg;
  FW_CHECK(spec.seq_len <= cfg.max_position_embeddings, kInvalidArgument,
           "job spec: train.seq_len " << spec.seq_len << " exceeds the model's max_position_embeddings " << cfg.max_position_embeddings);
  std::string tokenizer = spec.tokenizer;
  if (tokenizer.empty() && !spec.model_path.empty() && fw::path_exists(fw::path_join(spec.model_path, "tokenizer.json")))
    tokenizer = fw::path_join(spec.model_path, "tokenizer.json");
  FW_CHECK_HINT(tokenizer.empty() || fw::path_exists(tokenizer), kIo, "tokenizer not found: " << tokenizer, "check model.tokenizer");

  std::unique_ptr<fw::Lora> lora;
  if (spec.use_lora) {
    lora = std::make_unique<fw::Lora>(cfg, spec.lora);
    lora->init(spec.seed);
  }
  std::unique_ptr<fw::Model> teacher;
  if (!spec.teacher_path.empty()) teacher = fw::model_load_hf(spec.teacher_path);

  std::unique_ptr<fw::worker::TrainBackend> backend =
      on_gpu ? fw::worker::make_cuda_backend(std::move(gpu), *model, spec, lora.get(), teacher.get())
             : fw::worker::make_cpu_backend(*model, spec, lora.get(), teacher.get(), std::move(coll));
  fw::worker::TrainBackend& tr = *backend;
  const int B = spec.batch_size, T = spec.seq_len;
  fw::ShardLoader loader(spec.train_shards, B, T, spec.rank, spec.world_size, spec.seed, spec.shuffle, cfg.vocab_size);
  std::unique_ptr<fw::ShardLoader> val;
  const int VB = B / spec.train.grad_accum;
  if (!spec.val_shards.empty()) {
    try {
      val = std::make_unique<fw::ShardLoader>(spec.val_shards, VB, T, 0, 1, 0, false, cfg.vocab_size);
    } catch (const fw::Error& e) {
      if (e.kind() != fw::ErrorKind::kInvalidArgument || VB == 1) throw;
      val = std::make_unique<fw::ShardLoader>(spec.val_shards, 1, T, 0, 1, 0, false, cfg.vocab_size);
    }
  }
  const int val_B = val ? (int)(val->n_windows() >= (uint64_t)VB ? VB : 1) : 0;

  const json identity = spec.identity(cfg.to_json());
  std::string resumed_from;
  if (!spec.checkpoint_dir.empty() && spec.resume) {
    std::string latest = fw::checkpoint_latest(spec.checkpoint_dir);
    if (!latest.empty()) {
      fw::LoadedCheckpoint ck = fw::checkpoint_open(latest, identity);
      loader.set_position(tr.restore_checkpoint(ck));
      resumed_from = latest;
    }
  }
  const int64_t total = spec.train.total_steps;
  ojson started = {{"event", "started"},
        {"step", tr.step_count()},
        {"total_steps", total},
        {"params", model->layout.count_params()},
        {"trainable_params", tr.trainable_param_count()},
        {"tokens_per_step", (int64_t)B * T},
        {"train_tokens", loader.total_tokens()},
        {"resumed_from", resumed_from.empty() ? ojson(nullptr) : ojson(resumed_from)},
        {"threads", omp_get_max_threads()},
        {"rank", spec.rank},
        {"world_size", spec.world_size},
        {"collective", tr.collective().name()},
        {"device", tr.device()},
        {"precision", tr.precision()},
        {"engine_version", fw::engine_version()}};
  const json described = tr.describe();
  for (auto it = described.begin(); it != described.end(); ++it) started[it.key()] = *it;
  emit(started);

  auto save_checkpoint = [&](const char* reason) {
    if (spec.checkpoint_dir.empty()) return;
    tr.gather_state();  // every rank: ZeRO-1's shards come together on the lead
    if (!lead) return;
    double t0 = now_s();
    std::string dir = tr.save_checkpoint(spec.checkpoint_dir, identity, loader.position(), spec.keep_last);
    emit({{"event", "checkpoint"}, {"step", tr.step_count()}, {"path", dir}, {"reason", reason}, {"seconds", now_s() - t0}});
  };
  auto stop_requested = [&]() -> bool {
    double any = g_stop_signal ? 1 : 0;
    tr.collective().allreduce_sum(&any, 1);  // ranks stop together, at the same step
    if (any == 0) return false;
    save_checkpoint("signal");
    emit({{"event", "stopped"}, {"step", tr.step_count()},
          {"signal", g_stop_signal == SIGINT ? "SIGINT" : g_stop_signal ? "SIGTERM" : "peer"},
          {"checkpointed", !spec.checkpoint_dir.empty()}});
    return true;
  };

  std::vector<int32_t> in((size_t)B * T), tg((size_t)B * T);
  double last_loss = NAN;
  // A step whose gradients are not finite is skipped (no update; with fp16
  // the loss scale backs off, which takes a few skips after the start). A
  // long run of them means the gradients themselves are broken.
  constexpr int kMaxSkippedInARow = 64;
  int skipped_in_a_row = 0;
  while (tr.step_count() < total) {
    if (stop_requested()) return 143;
    loader.next_batch(in.data(), tg.data());
    const int64_t attempted = tr.step_count() + 1;
    double t0 = now_s();
    fw::StepResult r = tr.step(in.data(), tg.data(), B, T);
    double dt = now_s() - t0;
    if (!std::isfinite(r.loss))
      FW_CHECK_HINT(false, kInvalidArgument, "loss is not finite at step " << attempted,
                    (tr.precision() == std::string("fp16") ? "lower the learning rate, or train in bf16 (fp16's range is "
                                                              "narrow, and a forward overflow cannot be skipped)"
                                                            : "lower the learning rate"));
    if (r.skipped) {  // the step count did not move: nothing new to log, evaluate or checkpoint
      FW_CHECK_HINT(++skipped_in_a_row < kMaxSkippedInARow, kInvalidArgument,
                    kMaxSkippedInARow << " steps in a row skipped on non-finite gradients at step " << attempted,
                    "lower the learning rate, or train in bf16");
      continue;
    }
    skipped_in_a_row = 0;
    last_loss = r.loss;
    const int64_t step = tr.step_count();
    if (step % spec.log_interval == 0 || step == total) {
      ojson ev = {{"event", "step"}, {"step", step},           {"loss", r.loss},
                 {"lr", r.lr},      {"grad_norm", r.grad_norm}, {"tokens_per_s", dt > 0 ? (double)B * T / dt : 0.0}};
      if (teacher) {
        ev["ce"] = tr.last_distill().ce;
        ev["kl"] = tr.last_distill().kl;
      }
      emit(ev);
    }
    if (val && spec.eval_interval > 0 && step % spec.eval_interval == 0 && step < total)
      emit({{"event", "eval"}, {"step", step}, {"val_loss", eval_val(tr, *val, spec.eval_batches, val_B, T)}});
    if (spec.checkpoint_interval > 0 && step % spec.checkpoint_interval == 0 && step < total) save_checkpoint("interval");
  }
  if (stop_requested()) return 143;
  save_checkpoint("final");
  double val_loss = NAN;
  if (val) {
    val_loss = eval_val(tr, *val, spec.eval_batches, val_B, T);
    emit({{"event", "eval"}, {"step", tr.step_count()}, {"val_loss", val_loss}});
  }

  tr.gather_state();
  if (!lead) {  // rank 0 holds the same weights and writes them
    emit({{"event", "completed"}, {"step", tr.step_count()}, {"loss", last_loss}, {"val_loss", nullptr},
          {"output_dir", nullptr}, {"kind", lora ? "lora" : "full"}, {"merged", false}});
    return 0;
  }
  // output: written into a staging folder, then renamed into place
  tr.weights_to_host();
  const std::string staging = spec.output_dir + ".tmp-" + std::to_string(::getpid());
  fw::remove_all(staging);
  const fw::StDType dt = spec.save_bf16 ? fw::StDType::kBF16 : fw::StDType::kF32;
  std::string base_name = spec.model_path.empty() ? "flywheel-from-scratch" : spec.model_path;
  if (lora) {
    fw::adapter_save(*lora, staging, base_name);
    if (!tokenizer.empty()) fw::copy_file_atomic(tokenizer, fw::path_join(staging, "tokenizer.json"));
    if (spec.lora_merge) {
      model->set_lora(nullptr);
      lora->merge_into(*model);
      fw::model_save_hf(*model, fw::path_join(staging, "merged"), tokenizer, dt);
    }
  } else {
    fw::model_save_hf(*model, staging, tokenizer, dt);
  }
  publish_dir(staging, spec.output_dir);
  emit({{"event", "completed"},
        {"step", tr.step_count()},
        {"loss", last_loss},
        {"val_loss", val ? ojson(val_loss) : ojson(nullptr)},
        {"output_dir", spec.output_dir},
        {"kind", lora ? "lora" : "full"},
        {"merged", lora && spec.lora_merge}});
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;  // a signal mid-write must not fail the write
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  if (argc >= 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::printf("usage: fw_worker JOB.json | fw_worker - < JOB.json\n"
                "Trains one run described by the job spec; JSON-lines events on stdout.\n"
                "Spec, events and exit codes: docs/worker.md\n");
    return 0;
  }
  if (argc >= 2 && std::string(argv[1]) == "--version") {
    ojson devices = {"cpu"};
    if (fw::worker::cuda_built()) devices.push_back("cuda");
    emit({{"engine_version", fw::engine_version()}, {"devices", devices}});
    return 0;
  }
  try {
    std::string text;
    if (argc >= 2 && std::string(argv[1]) != "-") {
      FW_CHECK_HINT(fw::path_exists(argv[1]), kIo, "job spec file not found: " << argv[1], "usage: fw_worker job.json (or the spec on stdin)");
      text = fw::read_file_text(argv[1]);
    } else {
      text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    }
    return run(text);
  } catch (const fw::CollectiveError& e) {
    int code = fw::collective_exit_code(e);
    emit({{"event", "error"}, {"code", code}, {"kind", "collective"}, {"message", e.what()}});
    std::fprintf(stderr, "fw_worker: %s\n", e.what());
    return code;
  } catch (const fw::Error& e) {
    int code = exit_code(e.kind());
    emit({{"event", "error"}, {"code", code}, {"kind", kind_name(e.kind())}, {"message", e.what()}});
    std::fprintf(stderr, "fw_worker: %s\n", e.what());
    return code;
  } catch (const std::bad_alloc&) {
    emit({{"event", "error"}, {"code", 10}, {"kind", "internal"}, {"message", "out of memory"}});
    std::fprintf(stderr, "fw_worker: out of memory\n");
    return 10;
  } catch (const std::exception& e) {
    emit({{"event", "error"}, {"code", 10}, {"kind", "internal"}, {"message", e.what()}});
    std::fprintf(stderr, "fw_worker: internal error: %s\n", e.what());
    return 10;
  }
}
