// checkpoint.cpp: atomic checkpoint directories with a sha256 manifest.
#include "checkpoint.h"

#include <unistd.h>

#include <cstdio>

#include "common.h"
#include "fileio.h"
#include "hf_io.h"

namespace fw {

using json = nlohmann::json;

static const char* kFormat = "flywheel-checkpoint-1";
static const char* kFiles[] = {"model.safetensors", "optim.safetensors", "state.json"};

static std::string step_dir_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%010lld", (long long)step);
  return buf;
}

// step of a "step_NNNNNNNNNN" name, -1 for anything else
static int64_t parse_step_dir(const std::string& name) {
  if (name.size() != 15 || name.compare(0, 5, "step_") != 0) return -1;
  int64_t s = 0;
  for (size_t i = 5; i < name.size(); i++) {
    if (name[i] < '0' || name[i] > '9') return -1;
    s = s * 10 + (name[i] - '0');
  }
  return s;
}

std::string checkpoint_latest(const std::string& root) {
  if (!is_directory(root)) return "";
  int64_t best = -1;
  std::string best_name;
  for (const std::string& n : list_dir(root)) {
    int64_t s = parse_step_dir(n);
    if (s > best && path_exists(path_join(path_join(root, n), "manifest.json"))) {
      best = s;
      best_name = n;
    }
  }
  return best < 0 ? "" : path_join(root, best_name);
}

std::string checkpoint_save(const std::string& root, int64_t step, const json& meta_in, const std::vector<TensorView>& weights,
                            const std::vector<TensorView>& optim, int keep_last) {
  FW_CHECK(step >= 0, kInvalidArgument, "checkpoint step must be >= 0");
  FW_CHECK(meta_in.is_object() && meta_in.contains("config"), kInternal, "checkpoint meta needs a \"config\"");
  make_dirs(root);
  // leftovers of a crashed save are never valid checkpoints
  for (const std::string& n : list_dir(root))
    if (n.compare(0, 5, ".tmp-") == 0) remove_all(path_join(root, n));

  const std::string name = step_dir_name(step);
  const std::string tmp = path_join(root, ".tmp-" + name + "-" + std::to_string(::getpid()));
  const std::string final_dir = path_join(root, name);
  try {
    make_dirs(tmp);
    safetensors_write_durable(path_join(tmp, "model.safetensors"), weights);
    safetensors_write_durable(path_join(tmp, "optim.safetensors"), optim);
    json meta = meta_in;
    meta["format"] = kFormat;
    meta["step"] = step;
    std::string state = meta.dump(2) + "\n";
    write_file_durable(path_join(tmp, "state.json"), state.data(), state.size());
    json files = json::object();
    for (const char* f : kFiles) {
      std::string p = path_join(tmp, f);
      MappedFile m(p);
      files[f] = {{"bytes", m.size()}, {"sha256", sha256_hex(m.data(), m.size())}};
    }
    std::string manifest = json{{"format", kFormat}, {"step", step}, {"files", files}}.dump(2) + "\n";
    write_file_durable(path_join(tmp, "manifest.json"), manifest.data(), manifest.size());
    fsync_dir(tmp);
  } catch (...) {
    try {
      remove_all(tmp);
    } catch (...) {
    }
    throw;
  }
  if (path_exists(final_dir)) {  // same step saved again (e.g. SIGTERM right after a periodic save)
    std::string trash = path_join(root, ".tmp-old-" + name + "-" + std::to_string(::getpid()));
    rename_path(final_dir, trash);
    rename_path(tmp, final_dir);
    fsync_dir(root);
    remove_all(trash);
  } else {
    rename_path(tmp, final_dir);
    fsync_dir(root);
  }
  if (keep_last > 0) {
    std::vector<std::string> done;
    for (const std::string& n : list_dir(root))
      if (parse_step_dir(n) >= 0 && path_exists(path_join(path_join(root, n), "manifest.json"))) done.push_back(n);
    for (size_t i = 0; i + (size_t)keep_last < done.size(); i++) remove_all(path_join(root, done[i]));  // sorted by step
  }
  return final_dir;
}

static json parse_json_file(const std::string& path) {
  try {
    return json::parse(read_file_text(path));
  } catch (const json::parse_error& e) {
    FW_CHECK(false, kCorrupt, path << " is not valid JSON: " << e.what());
  }
  return json();
}

LoadedCheckpoint checkpoint_open(const std::string& dir, const json& expected_config) {
  const std::string mpath = path_join(dir, "manifest.json");
  FW_CHECK_HINT(path_exists(mpath), kIo, "checkpoint manifest not found: " << mpath,
                "the checkpoint is incomplete or the path is not a checkpoint directory");
  json manifest = parse_json_file(mpath);
  FW_CHECK(manifest.is_object() && manifest.value("format", "") == kFormat && manifest.contains("files") &&
               manifest["files"].is_object(),
           kCorrupt, mpath << " is not a " << kFormat << " manifest");
  for (const char* f : kFiles) {
    FW_CHECK(manifest["files"].contains(f), kCorrupt, mpath << " does not list " << f);
    const json& e = manifest["files"][f];
    std::string p = path_join(dir, f);
    FW_CHECK_HINT(path_exists(p), kCorrupt, "checkpoint file missing: " << p, "the checkpoint directory was damaged");
    MappedFile m(p);
    FW_CHECK_HINT(m.size() == e.value("bytes", (uint64_t)0), kCorrupt,
                  p << " is " << m.size() << " bytes, the manifest says " << e.value("bytes", (uint64_t)0),
                  "the file was truncated; resume from an older checkpoint");
    FW_CHECK_HINT(sha256_hex(m.data(), m.size()) == e.value("sha256", ""), kCorrupt, p << ": sha256 does not match the manifest",
                  "the file is corrupt; resume from an older checkpoint");
  }
  LoadedCheckpoint ck;
  ck.dir = dir;
  ck.meta = parse_json_file(path_join(dir, "state.json"));
  FW_CHECK(ck.meta.is_object() && ck.meta.contains("config") && ck.meta.contains("step"), kCorrupt,
           dir << "/state.json lacks config or step");
  FW_CHECK_HINT(ck.meta["config"] == expected_config, kInvalidArgument,
                "checkpoint " << dir << " was written by a run with another config: stored " << ck.meta["config"].dump()
                              << ", this run " << expected_config.dump(),
                "point checkpoint_dir at this run's own directory, or start a fresh run");
  ck.weights = std::make_unique<SafeTensorsReader>(path_join(dir, "model.safetensors"));
  ck.optim = std::make_unique<SafeTensorsReader>(path_join(dir, "optim.safetensors"));
  return ck;
}

json rng_to_json(const Rng& r) { return {{"key", r.key}, {"counter", r.counter}}; }

Rng rng_from_json(const json& j) {
  auto u64ok = [](const json& v) { return v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0); };
  FW_CHECK(j.is_object() && j.contains("key") && j.contains("counter") && u64ok(j["key"]) && u64ok(j["counter"]),
           kCorrupt, "rng state must be {\"key\": u64, \"counter\": u64}, got " << j.dump());
  Rng r(j["key"].get<uint64_t>());
  r.counter = j["counter"].get<uint64_t>();
  return r;
}

std::string checkpoint_save_state(const std::string& root, const TrainState& st, const json& identity,
                                  const DataPosition& pos, int keep_last, const json& extra) {
  FW_CHECK(st.layout && st.params && st.m && st.v, kInternal, "checkpoint: training state buffers missing");
  const ParamLayout& lay = *st.layout;
  std::vector<TensorView> w = tensor_views(lay, st.params);
  std::vector<TensorView> opt;
  for (const TensorInfo& t : lay.tensors) {
    opt.push_back({"m." + t.name, t.shape, st.m + t.offset});
    opt.push_back({"v." + t.name, t.shape, st.v + t.offset});
  }
  json meta = {{"config", identity}, {"data_position", pos.to_json()}, {"rng", rng_to_json(st.rng)}, {"extra", extra}};
  return checkpoint_save(root, st.step, meta, w, opt, keep_last);
}

DataPosition checkpoint_restore_state(const LoadedCheckpoint& ck, TrainState& st, json* extra) {
  FW_CHECK(st.layout && st.params && st.m && st.v, kInternal, "checkpoint: training state buffers missing");
  const ParamLayout& lay = *st.layout;
  load_tensors(*ck.weights, lay, st.params);
  for (const TensorInfo& t : lay.tensors) {
    ck.optim->read_f32("m." + t.name, st.m + t.offset, t.shape);
    ck.optim->read_f32("v." + t.name, st.v + t.offset, t.shape);
  }
  FW_CHECK(ck.meta["step"].is_number_integer(), kCorrupt, ck.dir << "/state.json: step is not an integer");
  st.step = ck.meta["step"].get<int64_t>();
  st.rng = rng_from_json(ck.meta.value("rng", json()));
  if (extra) *extra = ck.meta.value("extra", json());
  return DataPosition::from_json(ck.meta.value("data_position", json()));
}

std::string checkpoint_save_trainer(const std::string& root, Trainer& tr, const json& identity, const DataPosition& pos,
                                    int keep_last, const json& extra) {
  TrainState st{&tr.trainable_layout(), tr.trainable_params(), tr.adam().m.data(), tr.adam().v.data(), tr.step_count(),
                tr.rng()};
  return checkpoint_save_state(root, st, identity, pos, keep_last, extra);
}

DataPosition checkpoint_restore_trainer(const LoadedCheckpoint& ck, Trainer& tr, json* extra) {
  const ParamLayout& lay = tr.trainable_layout();
  FW_CHECK(tr.adam().m.size() == lay.numel && tr.adam().v.size() == lay.numel, kInternal, "optimizer moments not allocated");
  TrainState st{&lay, tr.trainable_params(), tr.adam().m.data(), tr.adam().v.data(), 0, Rng()};
  DataPosition pos = checkpoint_restore_state(ck, st, extra);
  tr.set_step_count(st.step);
  tr.rng() = st.rng;
  return pos;
}

}  // namespace fw
