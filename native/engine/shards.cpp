// shards.cpp: shard validation, shard writer, the windowed batch loader.
#include "shards.h"

#include <algorithm>
#include <cstring>

#include "common.h"
#include "model.h"  // kIgnoreIndex

namespace fw {

static const char kMagic[8] = {'F', 'W', 'S', 'H', 'A', 'R', 'D', '1'};
static const uint64_t kHeaderBytes = 64;

static uint32_t rd_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);  // the format is little-endian, as is every host we build for
  return v;
}
static uint64_t rd_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

uint32_t Shard::token(uint64_t i) const {
  if (width == 2) {
    uint16_t v;
    std::memcpy(&v, tokens + 2 * i, 2);
    return v;
  }
  return rd_u32(tokens + 4 * i);
}
uint64_t Shard::doc_offset(uint64_t d) const { return rd_u64(doc_offsets + 8 * d); }
uint32_t Shard::prompt_len(uint64_t d) const { return prompt_lens ? rd_u32(prompt_lens + 4 * d) : 0; }

std::unique_ptr<Shard> shard_open(const std::string& path) {
  FW_CHECK_HINT(path_exists(path), kIo, "token shard not found: " << path, "check the dataset version's manifest and the artifact root");
  auto s = std::make_unique<Shard>();
  s->file = MappedFile(path);
  const uint8_t* p = s->file.data();
  const uint64_t size = s->file.size();
  FW_CHECK_HINT(size >= kHeaderBytes, kCorrupt, path << ": " << size << " bytes is too short for a shard header", "the shard is truncated");
  FW_CHECK_HINT(std::memcmp(p, kMagic, 8) == 0, kCorrupt, path << ": bad magic, not a FWSHARD1 token shard", "see docs/formats.md");
  uint32_t version = rd_u32(p + 8);
  FW_CHECK(version == 1, kUnsupported, path << ": shard format version " << version << " is not supported (expected 1)");
  s->width = rd_u32(p + 12);
  FW_CHECK(s->width == 2 || s->width == 4, kCorrupt, path << ": token width " << s->width << " is not 2 or 4");
  s->n_tokens = rd_u64(p + 16);
  s->n_docs = rd_u64(p + 24);
  s->vocab_size = rd_u32(p + 32);
  uint32_t flags = rd_u32(p + 36);
  FW_CHECK((flags & ~1u) == 0, kUnsupported, path << ": unknown shard flags " << flags);
  s->has_prompts = (flags & 1u) != 0;
  FW_CHECK(s->vocab_size > 0, kCorrupt, path << ": vocab_size is 0");
  FW_CHECK(s->width == 4 || s->vocab_size <= 65536, kCorrupt, path << ": uint16 tokens with vocab_size " << s->vocab_size);
  FW_CHECK(s->n_docs < (1ull << 40) && s->n_tokens < (1ull << 44), kCorrupt, path << ": absurd n_docs/n_tokens in header");
  unsigned __int128 need = kHeaderBytes + 8 * (unsigned __int128)(s->n_docs + 1) +
                           (s->has_prompts ? 4 * (unsigned __int128)s->n_docs : 0) + (unsigned __int128)s->width * s->n_tokens;
  FW_CHECK_HINT(need == size, kCorrupt,
                path << ": header promises " << (uint64_t)need << " bytes (" << s->n_docs << " docs, " << s->n_tokens
                     << " tokens) but the file has " << size,
                "the shard is truncated or corrupt");
  s->doc_offsets = p + kHeaderBytes;
  s->prompt_lens = s->has_prompts ? s->doc_offsets + 8 * (s->n_docs + 1) : nullptr;
  s->tokens = s->doc_offsets + 8 * (s->n_docs + 1) + (s->has_prompts ? 4 * s->n_docs : 0);
  FW_CHECK(s->doc_offset(0) == 0, kCorrupt, path << ": doc_offsets[0] is " << s->doc_offset(0) << ", not 0");
  FW_CHECK(s->doc_offset(s->n_docs) == s->n_tokens, kCorrupt, path << ": last doc offset is not n_tokens");
  for (uint64_t d = 0; d < s->n_docs; d++) {
    uint64_t a = s->doc_offset(d), b = s->doc_offset(d + 1);
    FW_CHECK(a < b, kCorrupt, path << ": document " << d << " is empty or doc_offsets are not increasing");
    FW_CHECK(s->prompt_len(d) <= b - a, kCorrupt, path << ": document " << d << " prompt length exceeds its length");
  }
  for (uint64_t i = 0; i < s->n_tokens; i++) {
    uint32_t t = s->token(i);
    FW_CHECK(t < s->vocab_size, kCorrupt, path << ": token " << i << " is " << t << ", >= vocab_size " << s->vocab_size);
  }
  return s;
}

void shard_write(const std::string& path, const std::vector<std::vector<uint32_t>>& docs, uint32_t vocab_size,
                 const std::vector<uint32_t>& prompt_lens, uint32_t width) {
  if (width == 0) width = vocab_size <= 65536 ? 2 : 4;
  FW_CHECK(width == 2 || width == 4, kInvalidArgument, "shard width must be 2 or 4");
  FW_CHECK(prompt_lens.empty() || prompt_lens.size() == docs.size(), kInvalidArgument, "one prompt length per document");
  std::vector<uint8_t> out(kHeaderBytes, 0);
  uint64_t n_tokens = 0;
  for (const auto& d : docs) n_tokens += d.size();
  auto put32 = [&](size_t at, uint32_t v) { std::memcpy(out.data() + at, &v, 4); };
  auto put64 = [&](size_t at, uint64_t v) { std::memcpy(out.data() + at, &v, 8); };
  std::memcpy(out.data(), kMagic, 8);
  put32(8, 1);
  put32(12, width);
  put64(16, n_tokens);
  put64(24, docs.size());
  put32(32, vocab_size);
  put32(36, prompt_lens.empty() ? 0 : 1);
  auto app = [&](const void* v, size_t n) { out.insert(out.end(), (const uint8_t*)v, (const uint8_t*)v + n); };
  uint64_t off = 0;
  app(&off, 8);
  for (const auto& d : docs) {
    off += d.size();
    app(&off, 8);
  }
  for (uint32_t pl : prompt_lens) app(&pl, 4);
  for (const auto& d : docs) {
    for (uint32_t t : d) {
      FW_CHECK(t < vocab_size, kInvalidArgument, "token " << t << " >= vocab_size " << vocab_size);
      if (width == 2) {
        uint16_t v = (uint16_t)t;
        app(&v, 2);
      } else {
        app(&t, 4);
      }
    }
  }
  write_file_atomic(path, out.data(), out.size());
}

nlohmann::json DataPosition::to_json() const { return {{"epoch", epoch}, {"batch", batch}}; }

DataPosition DataPosition::from_json(const nlohmann::json& j) {
  auto u64ok = [](const nlohmann::json& v) {
    return v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
  };
  FW_CHECK(j.is_object() && j.contains("epoch") && j.contains("batch") && u64ok(j["epoch"]) && u64ok(j["batch"]),
           kCorrupt, "data position must be {\"epoch\": u64, \"batch\": u64}, got " << j.dump());
  DataPosition p;
  p.epoch = j["epoch"].get<uint64_t>();
  p.batch = j["batch"].get<uint64_t>();
  return p;
}

ShardLoader::ShardLoader(const std::vector<std::string>& paths, int B, int T, int rank, int world_size, uint64_t seed,
                         bool shuffle, int model_vocab)
    : B_(B), T_(T), rank_(rank), world_(world_size), seed_(seed), shuffle_(shuffle) {
  FW_CHECK(!paths.empty(), kInvalidArgument, "no shard files given");
  FW_CHECK(B > 0 && T > 0, kInvalidArgument, "batch size and sequence length must be positive (B=" << B << ", T=" << T << ")");
  FW_CHECK(world_size > 0 && rank >= 0 && rank < world_size, kInvalidArgument, "rank " << rank << " not in [0, " << world_size << ")");
  for (const std::string& p : paths) {
    auto s = shard_open(p);
    FW_CHECK_HINT(model_vocab <= 0 || s->vocab_size <= (uint32_t)model_vocab, kInvalidArgument,
                  p << ": shard vocab_size " << s->vocab_size << " exceeds the model's " << model_vocab,
                  "the dataset was tokenised with another tokenizer");
    shard_start_.push_back(total_tokens_);
    total_tokens_ += s->n_tokens;
    shards_.push_back(std::move(s));
  }
  n_windows_ = total_tokens_ > 0 ? (total_tokens_ - 1) / (uint64_t)T : 0;
  per_rank_ = n_windows_ / (uint64_t)world_size;
  batches_per_epoch_ = per_rank_ / (uint64_t)B;
  FW_CHECK_HINT(batches_per_epoch_ > 0, kInvalidArgument,
                "data too small: " << total_tokens_ << " tokens make " << n_windows_ << " windows of T+1=" << (T + 1) << ", fewer than B="
                                   << B << " per rank for " << world_size << " rank(s)",
                "use more data, a smaller batch or a shorter sequence");
  tok_.resize((size_t)T + 1);
  mask_.resize((size_t)T + 1);
}

static uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void ShardLoader::build_epoch(uint64_t epoch) {
  if (perm_epoch_ == epoch) return;
  perm_.resize(n_windows_);
  for (uint64_t i = 0; i < n_windows_; i++) perm_[i] = i;
  if (shuffle_) {
    uint64_t state = seed_ ^ (epoch * 0xd1b54a32d192ed03ull + 0x8cb92ba72f3d8dd7ull);
    for (uint64_t i = n_windows_; i > 1; i--) {
      uint64_t j = (uint64_t)(((unsigned __int128)splitmix64(state) * i) >> 64);  // in [0, i)
      std::swap(perm_[i - 1], perm_[j]);
    }
  }
  perm_epoch_ = epoch;
}

void ShardLoader::read_window(uint64_t s, int32_t* tok, uint8_t* masked) {
  // locate the shard and the document holding stream index s
  size_t k = (size_t)(std::upper_bound(shard_start_.begin(), shard_start_.end(), s) - shard_start_.begin()) - 1;
  uint64_t local = s - shard_start_[k];
  const Shard* sh = shards_[k].get();
  uint64_t lo = 0, hi = sh->n_docs;  // find d with doc_offset(d) <= local < doc_offset(d+1)
  while (hi - lo > 1) {
    uint64_t mid = (lo + hi) / 2;
    if (sh->doc_offset(mid) <= local) lo = mid; else hi = mid;
  }
  uint64_t d = lo;
  for (int i = 0; i <= T_; i++) {
    while (local >= sh->doc_offset(d + 1)) {
      d++;
      if (d == sh->n_docs) {  // next shard
        k++;
        sh = shards_[k].get();
        local = 0;
        d = 0;
      }
    }
    uint64_t in_doc = local - sh->doc_offset(d);
    uint64_t masked_prefix = std::max<uint64_t>(1, sh->prompt_len(d));
    tok[i] = (int32_t)sh->token(local);
    masked[i] = in_doc < masked_prefix ? 1 : 0;
    local++;
  }
}

void ShardLoader::next_batch(int32_t* inputs, int32_t* targets) {
  if (pos_.batch >= batches_per_epoch_) {
    pos_.epoch++;
    pos_.batch = 0;
  }
  build_epoch(pos_.epoch);
  for (int b = 0; b < B_; b++) {
    uint64_t slot = (pos_.batch * (uint64_t)B_ + (uint64_t)b) * (uint64_t)world_ + (uint64_t)rank_;
    uint64_t w = perm_[slot];
    read_window(w * (uint64_t)T_, tok_.data(), mask_.data());
    for (int t = 0; t < T_; t++) {
      inputs[(size_t)b * T_ + t] = tok_[t];
      targets[(size_t)b * T_ + t] = mask_[t + 1] ? kIgnoreIndex : tok_[t + 1];
    }
  }
  pos_.batch++;
}

void ShardLoader::set_position(const DataPosition& p) {
  FW_CHECK(p.batch <= batches_per_epoch_, kInvalidArgument,
           "data position batch " << p.batch << " beyond the " << batches_per_epoch_ << " batches of an epoch (another dataset?)");
  pos_ = p;
}

}  // namespace fw
