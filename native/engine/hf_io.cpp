// hf_io.cpp: HF model folders and PEFT adapter folders.
#include "hf_io.h"

#include <map>

#include "common.h"
#include "fileio.h"

namespace fw {

using json = nlohmann::json;

void load_tensors(const SafeTensorsReader& r, const ParamLayout& layout, float* buf) {
  for (const TensorInfo& t : layout.tensors) {
    FW_CHECK_HINT(r.has(t.name), kInvalidArgument, r.path() << ": missing tensor '" << t.name << "'",
                  "the weights were saved for another architecture or config");
    r.read_f32(t.name, buf + t.offset, t.shape);
  }
}

std::vector<TensorView> tensor_views(const ParamLayout& layout, const float* buf) {
  std::vector<TensorView> v;
  for (const TensorInfo& t : layout.tensors) v.push_back({t.name, t.shape, buf + t.offset});
  return v;
}

static json read_json_file(const std::string& path) {
  FW_CHECK_HINT(path_exists(path), kIo, "file not found: " << path, "a model folder needs config.json and model.safetensors");
  std::string text = read_file_text(path);
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    FW_CHECK(false, kCorrupt, path << " is not valid JSON: " << e.what());
  }
  return json();
}

std::unique_ptr<Model> model_load_hf(const std::string& dir) {
  FW_CHECK_HINT(is_directory(dir), kIo, "model folder not found: " << dir, "pass a folder with config.json and model.safetensors");
  Config cfg = config_from_json(read_json_file(path_join(dir, "config.json")));
  cfg.validate();
  auto model = std::make_unique<Model>(cfg);
  const std::string st = path_join(dir, "model.safetensors");
  const std::string index = path_join(dir, "model.safetensors.index.json");
  if (path_exists(st) || !path_exists(index)) {
    FW_CHECK_HINT(path_exists(st), kIo, "model weights not found: " << st, "a model folder needs model.safetensors");
    SafeTensorsReader r(st);
    load_tensors(r, model->layout, model->params.data());
    return model;
  }
  // sharded: model.safetensors.index.json {"weight_map": {name: "model-0000k-of-0000n.safetensors"}}
  json ij = read_json_file(index);
  FW_CHECK(ij.is_object() && ij.contains("weight_map") && ij["weight_map"].is_object(), kCorrupt,
           index << " has no weight_map object");
  std::map<std::string, std::unique_ptr<SafeTensorsReader>> files;
  for (const TensorInfo& t : model->layout.tensors) {
    FW_CHECK_HINT(ij["weight_map"].contains(t.name) && ij["weight_map"][t.name].is_string(), kInvalidArgument,
                  index << ": no file listed for tensor '" << t.name << "'", "the weights were saved for another architecture or config");
    std::string f = ij["weight_map"][t.name].get<std::string>();
    FW_CHECK(f.find('/') == std::string::npos && f != ".." && !f.empty(), kCorrupt, index << ": bad shard file name '" << f << "'");
    auto& r = files[f];
    if (!r) r = std::make_unique<SafeTensorsReader>(path_join(dir, f));
    FW_CHECK(r->has(t.name), kCorrupt, path_join(dir, f) << " lacks tensor '" << t.name << "' that the index puts there");
    r->read_f32(t.name, model->params.data() + t.offset, t.shape);
  }
  return model;
}

void copy_file_atomic(const std::string& from, const std::string& to) {
  MappedFile f(from);
  write_file_atomic(to, f.data(), f.size());
}

void model_save_hf(Model& model, const std::string& dir, const std::string& tokenizer_json, StDType dtype) {
  make_dirs(dir);
  // weights first, config last: a folder with a config has complete weights
  safetensors_write(path_join(dir, "model.safetensors"), tensor_views(model.layout, model.params.data()), dtype,
                    {{"format", "pt"}});
  if (!tokenizer_json.empty()) copy_file_atomic(tokenizer_json, path_join(dir, "tokenizer.json"));
  json cj = model.cfg.to_json();
  cj["torch_dtype"] = dtype == StDType::kBF16 ? "bfloat16" : "float32";
  write_file_atomic(path_join(dir, "config.json"), cj.dump(2) + "\n");
}

LoraConfig adapter_config_from_json(const json& j, std::string* base_model) {
  FW_CHECK(j.is_object(), kInvalidArgument, "adapter_config.json is not an object");
  if (j.contains("peft_type")) {
    FW_CHECK(j["peft_type"] == "LORA", kUnsupported, "adapter peft_type " << j["peft_type"].dump() << " is not LORA");
  }
  LoraConfig c;
  try {
    FW_CHECK(j.contains("r") && j["r"].is_number_integer(), kInvalidArgument, "adapter_config.json needs an integer r");
    c.rank = j["r"].get<int>();
    if (j.contains("lora_alpha")) c.alpha = j["lora_alpha"].get<double>();
    if (j.contains("lora_dropout")) c.dropout = j["lora_dropout"].get<double>();
    if (j.contains("target_modules")) {
      const json& t = j["target_modules"];
      FW_CHECK(t.is_array(), kUnsupported, "target_modules must be a list of module names (regex strings are not supported)");
      c.target_modules = t.get<std::vector<std::string>>();
    }
    if (j.contains("use_rslora") && j["use_rslora"].is_boolean()) {
      FW_CHECK(!j["use_rslora"].get<bool>(), kUnsupported, "rsLoRA adapters are not supported");
    }
    if (base_model && j.contains("base_model_name_or_path") && j["base_model_name_or_path"].is_string())
      *base_model = j["base_model_name_or_path"].get<std::string>();
  } catch (const json::type_error& e) {
    FW_CHECK(false, kInvalidArgument, "adapter_config.json has a field of the wrong type: " << e.what());
  }
  return c;
}

json adapter_config_to_json(const LoraConfig& c, const std::string& base_model) {
  return {{"peft_type", "LORA"},
          {"task_type", "CAUSAL_LM"},
          {"r", c.rank},
          {"lora_alpha", c.alpha},
          {"lora_dropout", c.dropout},
          {"target_modules", c.target_modules},
          {"bias", "none"},
          {"fan_in_fan_out", false},
          {"inference_mode", true},
          {"base_model_name_or_path", base_model}};
}

void adapter_save(const Lora& lora, const std::string& dir, const std::string& base_model) {
  make_dirs(dir);
  safetensors_write(path_join(dir, "adapter_model.safetensors"), tensor_views(lora.layout, lora.params.data()), StDType::kF32,
                    {{"format", "pt"}});
  write_file_atomic(path_join(dir, "adapter_config.json"), adapter_config_to_json(lora.cfg, base_model).dump(2) + "\n");
}

std::unique_ptr<Lora> adapter_load(const std::string& dir, const Config& model_cfg) {
  FW_CHECK_HINT(is_directory(dir), kIo, "adapter folder not found: " << dir, "pass a PEFT folder with adapter_config.json");
  LoraConfig c = adapter_config_from_json(read_json_file(path_join(dir, "adapter_config.json")));
  auto lora = std::make_unique<Lora>(model_cfg, c);
  SafeTensorsReader r(path_join(dir, "adapter_model.safetensors"));
  load_tensors(r, lora->layout, lora->params.data());
  return lora;
}

}  // namespace fw
