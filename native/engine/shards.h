// shards.h: token shards (docs/formats.md) and the training batch loader.
//
// A shard is a header, u64 doc_offsets (n_docs+1), optional u32 prompt_lens
// (n_docs) and uint16/uint32 token ids; every document ends with EOS. The
// loader sees all shards of a split as ONE token stream (shard order, then
// document order) and cuts it into windows of T+1 tokens with stride T:
// window w covers stream[w*T, w*T+T]. inputs = window[0..T), targets =
// window[1..T].
//
// Policy (stated, as the issue asks):
//  - Windows may start and end mid-document; documents are packed back to back
//    and the EOS each one ends with separates them. No attention mask across
//    documents.
//  - Loss mask: a target that is a prompt token of its document (its index
//    within the document < prompt_len) is kIgnoreIndex (-100). The first
//    token of every document is also masked (predicting the start of a new
//    document from the previous one's EOS is noise), which for documents with
//    a prompt is the same rule.
//  - Shuffle: each epoch visits the windows in a permutation drawn from
//    (seed, epoch) with our own splitmix64/Fisher-Yates, so it is the same on
//    every platform and standard library.
//  - Ranks: rank r of W takes positions r, r+W, r+2W, ... of the epoch's
//    permutation, so ranks read disjoint windows; each rank gets
//    floor(n_windows / W) windows per epoch (the remainder is dropped so all
//    ranks step together), grouped into floor(that / B) batches.
//  - Position: (epoch, batch index in epoch); the next batch after the last of
//    an epoch is batch 0 of epoch+1. Serialised as JSON.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fileio.h"

namespace fw {

// One validated, memory-mapped shard file.
struct Shard {
  MappedFile file;
  uint32_t width = 0;         // bytes per token: 2 or 4
  uint64_t n_tokens = 0;
  uint64_t n_docs = 0;
  uint32_t vocab_size = 0;
  bool has_prompts = false;
  const uint8_t* doc_offsets = nullptr;  // (n_docs+1) u64, little-endian, maybe unaligned
  const uint8_t* prompt_lens = nullptr;  // (n_docs) u32 or nullptr
  const uint8_t* tokens = nullptr;       // (n_tokens) u16/u32

  uint32_t token(uint64_t i) const;
  uint64_t doc_offset(uint64_t d) const;
  uint32_t prompt_len(uint64_t d) const;
};

// Opens and validates a shard (magic, version, width, sizes, offsets
// monotonic, prompt lengths within documents, every token < vocab_size).
// kIo when missing, kCorrupt when malformed, kUnsupported for another version.
std::unique_ptr<Shard> shard_open(const std::string& path);

// Writes a shard (for tests and tools): docs are token lists, each expected to
// end with EOS already; prompt_lens empty = no prompt table. width 0 picks 2
// when vocab_size <= 65536 else 4.
void shard_write(const std::string& path, const std::vector<std::vector<uint32_t>>& docs, uint32_t vocab_size,
                 const std::vector<uint32_t>& prompt_lens = {}, uint32_t width = 0);

// Where a loader is in its data: serialisable into a checkpoint.
struct DataPosition {
  uint64_t epoch = 0;
  uint64_t batch = 0;  // index of the next batch within the epoch
  nlohmann::json to_json() const;
  static DataPosition from_json(const nlohmann::json& j);
};

class ShardLoader {
 public:
  // B windows of T+1 tokens per batch. Throws kInvalidArgument when the data
  // is too small for one batch per rank, or a token is >= model_vocab (when
  // model_vocab > 0).
  ShardLoader(const std::vector<std::string>& paths, int B, int T, int rank, int world_size, uint64_t seed,
              bool shuffle = true, int model_vocab = 0);

  // inputs, targets: (B, T) each. Advances the position.
  void next_batch(int32_t* inputs, int32_t* targets);
  DataPosition position() const { return pos_; }
  void set_position(const DataPosition& p);
  uint64_t batches_per_epoch() const { return batches_per_epoch_; }
  uint64_t total_tokens() const { return total_tokens_; }
  uint64_t n_windows() const { return n_windows_; }

 private:
  void build_epoch(uint64_t epoch);
  // Fills T+1 tokens and their "maskable" flags for the window starting at
  // stream index s.
  void read_window(uint64_t s, int32_t* tok, uint8_t* masked);

  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<uint64_t> shard_start_;  // stream index of each shard's first token
  int B_, T_, rank_, world_;
  uint64_t seed_;
  bool shuffle_;
  uint64_t total_tokens_ = 0, n_windows_ = 0, per_rank_ = 0, batches_per_epoch_ = 0;
  DataPosition pos_;
  uint64_t perm_epoch_ = UINT64_MAX;
  std::vector<uint64_t> perm_;  // this epoch's window order
  std::vector<int32_t> tok_;
  std::vector<uint8_t> mask_;
};

}  // namespace fw
