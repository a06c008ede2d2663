// hf_io.h: Hugging Face model folders and PEFT adapter folders.
//
// Model folder:   config.json, model.safetensors (HF tensor names, the
//                 layout of llama_param_layout), tokenizer.json (passed
//                 through untouched: tokenisation happens in TypeScript).
// Adapter folder: adapter_config.json (peft_type LORA, r, lora_alpha,
//                 lora_dropout, target_modules, base_model_name_or_path),
//                 adapter_model.safetensors with PEFT names
//                 (base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight).
//
// Loading checks every expected tensor by name and shape (a missing tensor or
// a different shape is kInvalidArgument naming it); extra tensors in the file
// (e.g. rotary inv_freq buffers, or lm_head.weight of a tied model) are ignored.
// Saving writes every file atomically, so a crash never leaves a folder whose
// files are half written.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "lora.h"
#include "model.h"
#include "safetensors.h"

namespace fw {

// Fills the parameters of `layout` inside `buf` from the reader. `what`
// names the source in errors.
void load_tensors(const SafeTensorsReader& r, const ParamLayout& layout, float* buf);
std::vector<TensorView> tensor_views(const ParamLayout& layout, const float* buf);

// config.json + model.safetensors of `dir` -> a model (parameters loaded).
// Sharded folders (model.safetensors.index.json + model-0000k-of-0000n files)
// load too.
std::unique_ptr<Model> model_load_hf(const std::string& dir);
// Writes config.json and model.safetensors into dir (created if needed);
// tokenizer_json: path of a tokenizer.json to copy there ("" = none).
// dtype kF32 (default) or kBF16.
void model_save_hf(Model& model, const std::string& dir, const std::string& tokenizer_json = "",
                   StDType dtype = StDType::kF32);

// PEFT adapter_config.json <-> LoraConfig (+ the base model name).
LoraConfig adapter_config_from_json(const nlohmann::json& j, std::string* base_model = nullptr);
nlohmann::json adapter_config_to_json(const LoraConfig& cfg, const std::string& base_model);

// Saves / loads an adapter folder. Loading checks the adapter against the
// base model's config (shapes of A and B).
void adapter_save(const Lora& lora, const std::string& dir, const std::string& base_model);
std::unique_ptr<Lora> adapter_load(const std::string& dir, const Config& model_cfg);

// Copies a file atomically (tokenizer.json pass-through).
void copy_file_atomic(const std::string& from, const std::string& to);

}  // namespace fw
