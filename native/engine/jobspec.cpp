// jobspec.cpp: strict parsing of the worker's job spec.
#include "jobspec.h"

#include <set>

#include "common.h"

namespace fw {

using json = nlohmann::json;

namespace {

// Reads the keys of one JSON object, remembering which were used, so that
// finish() can reject unknown (misspelt) keys.
class Obj {
 public:
  Obj(const json& j, std::string where) : j_(j), where_(std::move(where)) {
    FW_CHECK(j.is_object(), kInvalidArgument, "job spec: " << where_ << " must be an object, got " << j.dump());
  }
  bool has(const char* k) {
    used_.insert(k);
    return j_.contains(k) && !j_[k].is_null();
  }
  const json& raw(const char* k) {
    used_.insert(k);
    return j_[k];
  }
  std::string name(const char* k) const { return where_.empty() ? std::string(k) : where_ + "." + k; }

  double num(const char* k, double def, double lo, double hi) {
    if (!has(k)) return def;
    const json& v = j_[k];
    FW_CHECK(v.is_number(), kInvalidArgument, "job spec: " << name(k) << " must be a number, got " << v.dump());
    double d = v.get<double>();
    FW_CHECK(d >= lo && d <= hi, kInvalidArgument, "job spec: " << name(k) << " = " << d << " is outside [" << lo << ", " << hi << "]");
    return d;
  }
  int64_t integer(const char* k, int64_t def, int64_t lo, int64_t hi) {
    if (!has(k)) return def;
    const json& v = j_[k];
    FW_CHECK(v.is_number_integer(), kInvalidArgument, "job spec: " << name(k) << " must be an integer, got " << v.dump());
    int64_t d = v.get<int64_t>();
    FW_CHECK(d >= lo && d <= hi, kInvalidArgument, "job spec: " << name(k) << " = " << d << " is outside [" << lo << ", " << hi << "]");
    return d;
  }
  uint64_t u64(const char* k, uint64_t def) {
    if (!has(k)) return def;
    const json& v = j_[k];
    FW_CHECK(v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0), kInvalidArgument,
             "job spec: " << name(k) << " must be a non-negative integer, got " << v.dump());
    return v.get<uint64_t>();
  }
  bool boolean(const char* k, bool def) {
    if (!has(k)) return def;
    FW_CHECK(j_[k].is_boolean(), kInvalidArgument, "job spec: " << name(k) << " must be true or false, got " << j_[k].dump());
    return j_[k].get<bool>();
  }
  std::string str(const char* k, const std::string& def) {
    if (!has(k)) return def;
    FW_CHECK(j_[k].is_string(), kInvalidArgument, "job spec: " << name(k) << " must be a string, got " << j_[k].dump());
    return j_[k].get<std::string>();
  }
  std::vector<std::string> strs(const char* k) {
    if (!has(k)) return {};
    const json& v = j_[k];
    if (v.is_string()) return {v.get<std::string>()};
    FW_CHECK(v.is_array(), kInvalidArgument, "job spec: " << name(k) << " must be a list of strings");
    std::vector<std::string> out;
    for (const json& e : v) {
      FW_CHECK(e.is_string(), kInvalidArgument, "job spec: " << name(k) << " must be a list of strings, got " << e.dump());
      out.push_back(e.get<std::string>());
    }
    return out;
  }
  void finish() const {
    for (auto it = j_.begin(); it != j_.end(); ++it)
      FW_CHECK_HINT(used_.count(it.key()), kInvalidArgument, "job spec: unknown key " << name(it.key().c_str()),
                    "see docs/worker.md for the job spec format");
  }

 private:
  const json& j_;
  std::string where_;
  std::set<std::string> used_;
};

}  // namespace

JobSpec jobspec_parse(const json& j) {
  JobSpec s;
  s.source = j;
  Obj top(j, "");
  s.seed = top.u64("seed", 1337);

  FW_CHECK(top.has("model"), kInvalidArgument, "job spec: \"model\" is required");
  {
    Obj m(top.raw("model"), "model");
    bool has_cfg = m.has("config"), has_path = m.has("path");
    FW_CHECK(has_cfg != has_path, kInvalidArgument, "job spec: model needs exactly one of \"config\" (from scratch) or \"path\" (a HF folder)");
    if (has_cfg) {
      s.model_config = m.raw("config");
      FW_CHECK(s.model_config.is_object(), kInvalidArgument, "job spec: model.config must be a HF config.json object");
    }
    s.model_path = m.str("path", "");
    s.init_seed = m.u64("init_seed", s.seed);
    s.init_std = m.num("init_std", 0.02, 0.0, 10.0);
    s.tokenizer = m.str("tokenizer", "");
    m.finish();
  }
  if (top.has("lora")) {
    Obj l(top.raw("lora"), "lora");
    s.use_lora = true;
    s.lora.rank = (int)l.integer("r", 8, 1, 4096);
    s.lora.alpha = l.num("alpha", 16.0, 1e-9, 1e9);
    s.lora.dropout = l.num("dropout", 0.0, 0.0, 0.99);
    if (l.has("target_modules")) s.lora.target_modules = l.strs("target_modules");
    s.lora.seed = s.seed;
    s.lora_merge = l.boolean("merge", false);
    l.finish();
  }
  FW_CHECK(top.has("data"), kInvalidArgument, "job spec: \"data\" is required");
  {
    Obj d(top.raw("data"), "data");
    s.train_shards = d.strs("train");
    FW_CHECK(!s.train_shards.empty(), kInvalidArgument, "job spec: data.train needs at least one shard file");
    s.val_shards = d.strs("val");
    s.shuffle = d.boolean("shuffle", true);
    d.finish();
  }
  {
    json empty = json::object();
    Obj t(top.has("train") ? top.raw("train") : empty, "train");
    TrainConfig& c = s.train;
    c.lr = t.num("lr", 3e-4, 0.0, 10.0);
    c.min_lr = t.num("min_lr", c.lr * 0.1, 0.0, 10.0);
    c.warmup_steps = t.integer("warmup_steps", 0, 0, INT64_MAX / 2);
    c.total_steps = t.integer("total_steps", 1000, 1, INT64_MAX / 2);
    s.batch_size = (int)t.integer("batch_size", 8, 1, 1 << 20);
    s.seq_len = (int)t.integer("seq_len", 256, 1, 1 << 20);
    c.grad_accum = (int)t.integer("grad_accum", 1, 1, 1 << 20);
    c.weight_decay = t.num("weight_decay", 0.1, 0.0, 10.0);
    c.grad_clip = t.num("grad_clip", 1.0, -1.0, 1e9);
    c.beta1 = t.num("beta1", 0.9, 0.0, 0.999999);
    c.beta2 = t.num("beta2", 0.95, 0.0, 0.999999);
    c.eps = t.num("eps", 1e-8, 1e-30, 1.0);
    c.recompute = t.boolean("recompute", false);
    s.zero1 = t.boolean("zero1", false);
    c.seed = s.seed;
    t.finish();
    FW_CHECK(s.batch_size % c.grad_accum == 0, kInvalidArgument,
             "job spec: train.batch_size " << s.batch_size << " must be a multiple of train.grad_accum " << c.grad_accum);
    FW_CHECK(c.min_lr <= c.lr, kInvalidArgument, "job spec: train.min_lr must be <= train.lr");
  }
  if (top.has("distill")) {
    Obj d(top.raw("distill"), "distill");
    s.teacher_path = d.str("teacher", "");
    FW_CHECK(!s.teacher_path.empty(), kInvalidArgument, "job spec: distill.teacher (a model folder) is required");
    s.train.distill_alpha = d.num("alpha", 0.5, 0.0, 1.0);
    s.train.distill_temperature = d.num("temperature", 2.0, 1e-6, 1e6);
    d.finish();
  }
  if (top.has("checkpoint")) {
    Obj c(top.raw("checkpoint"), "checkpoint");
    s.checkpoint_dir = c.str("dir", "");
    s.checkpoint_interval = c.integer("interval", 0, 0, INT64_MAX / 2);
    s.keep_last = (int)c.integer("keep_last", 2, 0, 1 << 20);
    s.resume = c.boolean("resume", true);
    c.finish();
  }
  if (top.has("eval")) {
    Obj e(top.raw("eval"), "eval");
    s.eval_interval = e.integer("interval", 0, 0, INT64_MAX / 2);
    s.eval_batches = (int)e.integer("batches", 8, 1, 1 << 20);
    e.finish();
  }
  s.log_interval = top.integer("log_interval", 1, 1, INT64_MAX / 2);
  s.output_dir = top.str("output_dir", "");
  FW_CHECK(!s.output_dir.empty(), kInvalidArgument, "job spec: \"output_dir\" is required");
  s.save_bf16 = top.boolean("save_bf16", false);
  s.rank = (int)top.integer("rank", 0, 0, 1 << 20);
  s.world_size = (int)top.integer("world_size", 1, 1, 1 << 20);
  FW_CHECK(s.rank < s.world_size, kInvalidArgument, "job spec: rank " << s.rank << " must be < world_size " << s.world_size);
  s.device = top.str("device", "cpu");
  FW_CHECK_HINT(s.device == "cpu" || s.device == "cuda", kInvalidArgument,
                "job spec: device must be \"cpu\" or \"cuda\", got \"" << s.device << "\"", "see docs/worker.md");
  s.precision = top.str("precision", s.device == "cuda" ? "bf16" : "fp32");
  FW_CHECK_HINT(s.precision == "fp32" || s.precision == "bf16" || s.precision == "fp16", kInvalidArgument,
                "job spec: precision must be \"fp32\", \"bf16\" or \"fp16\", got \"" << s.precision << "\"",
                "see docs/worker.md");
  top.finish();
  // Valid requests the engine cannot serve yet: kUnsupported (exit 5).
  FW_CHECK_HINT(s.device == "cuda" || s.precision == "fp32", kUnsupported,
                "job spec: precision \"" << s.precision << "\" needs device \"cuda\"; the cpu engine trains in fp32",
                "drop precision or set device \"cuda\"");
  FW_CHECK_HINT(s.device == "cuda" || !s.zero1, kUnsupported,
                "job spec: train.zero1 needs device \"cuda\"; the cpu engine keeps the whole optimizer state on every rank",
                "drop train.zero1 or set device \"cuda\"");
  return s;
}

JobSpec jobspec_parse_text(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    FW_CHECK_HINT(false, kInvalidArgument, "job spec is not valid JSON: " << e.what(), "see docs/worker.md for the job spec format");
  }
  return jobspec_parse(j);
}

json JobSpec::identity(const json& model_config_json) const {
  json id = {{"model", model_config_json}, {"model_path", model_path}, {"lora", nullptr}, {"teacher", teacher_path},
             {"batch_size", batch_size}, {"seq_len", seq_len}, {"train_shards", train_shards}, {"seed", seed},
             {"world_size", world_size}};
  if (use_lora)
    id["lora"] = {{"r", lora.rank}, {"alpha", lora.alpha}, {"dropout", lora.dropout}, {"target_modules", lora.target_modules}};
  return id;
}

}  // namespace fw
