// io_shards_test.cpp: token shard validation and the batch loader (windows,
// prompt mask, shuffle by seed, disjoint ranks, resumable position).
#include <gtest/gtest.h>

#include <cstring>
#include <set>

#include "io_testutil.h"
#include "model.h"
#include "shards.h"

using fw::ErrorKind;
using fwtest::expect_error;
using fwtest::TempDir;

static const uint32_t kEos = 1;

// n_docs documents of distinct tokens, each ending with EOS; token values
// encode (doc, index) so a test can tell where any token came from.
static std::vector<std::vector<uint32_t>> make_docs(int n_docs, int len, uint32_t base) {
  std::vector<std::vector<uint32_t>> docs;
  for (int d = 0; d < n_docs; d++) {
    std::vector<uint32_t> doc;
    for (int i = 0; i + 1 < len; i++) doc.push_back(base + (uint32_t)(d * 100 + i) % 60000 + 2);
    doc.push_back(kEos);
    docs.push_back(doc);
  }
  return docs;
}

TEST(io_shards, round_trip_uint16_and_uint32_with_prompt_table) {
  TempDir d;
  auto docs = make_docs(3, 5, 0);
  fw::shard_write(d / "a.bin", docs, 70000, {2, 0, 4}, 4);
  auto s = fw::shard_open(d / "a.bin");
  EXPECT_EQ(s->width, 4u);
  EXPECT_EQ(s->n_tokens, 15u);
  EXPECT_EQ(s->n_docs, 3u);
  EXPECT_TRUE(s->has_prompts);
  EXPECT_EQ(s->prompt_len(2), 4u);
  EXPECT_EQ(s->doc_offset(1), 5u);
  EXPECT_EQ(s->token(5), docs[1][0]);
  fw::shard_write(d / "b.bin", docs, 32000);
  auto s2 = fw::shard_open(d / "b.bin");
  EXPECT_EQ(s2->width, 2u);
  EXPECT_FALSE(s2->has_prompts);
  EXPECT_EQ(s2->token(14), kEos);
}

TEST(io_shards, malformed_shards_are_refused) {
  TempDir d;
  fw::shard_write(d / "ok.bin", make_docs(4, 6, 0), 1000);
  std::string ok = fwtest::read_bytes(d / "ok.bin");
  expect_error([&] { fw::shard_open(d / "missing.bin"); }, ErrorKind::kIo, "not found");
  fwtest::write_bytes(d / "cut.bin", ok.substr(0, ok.size() - 2));
  expect_error([&] { fw::shard_open(d / "cut.bin"); }, ErrorKind::kCorrupt, "header promises");
  std::string magic = ok;
  magic[0] = 'X';
  fwtest::write_bytes(d / "magic.bin", magic);
  expect_error([&] { fw::shard_open(d / "magic.bin"); }, ErrorKind::kCorrupt, "bad magic");
  std::string ver = ok;
  ver[8] = 9;
  fwtest::write_bytes(d / "ver.bin", ver);
  expect_error([&] { fw::shard_open(d / "ver.bin"); }, ErrorKind::kUnsupported, "version 9");
  std::string tok = ok;
  uint16_t big = 5000;  // >= vocab 1000
  std::memcpy(&tok[tok.size() - 4], &big, 2);
  fwtest::write_bytes(d / "tok.bin", tok);
  expect_error([&] { fw::shard_open(d / "tok.bin"); }, ErrorKind::kCorrupt, ">= vocab_size");
  std::string off = ok;
  uint64_t bad = 3;  // doc_offsets[1] = 3 > doc_offsets[2]? make them non-increasing
  std::memcpy(&off[64 + 16], &bad, 8);
  fwtest::write_bytes(d / "off.bin", off);
  expect_error([&] { fw::shard_open(d / "off.bin"); }, ErrorKind::kCorrupt, "not increasing");
}

TEST(io_shards, windows_pack_documents_and_mask_prompts) {
  TempDir d;
  // docs of 6 tokens, prompt lengths 3 and 0 alternating
  auto docs = make_docs(8, 6, 0);
  std::vector<uint32_t> pl;
  for (int i = 0; i < 8; i++) pl.push_back(i % 2 ? 0 : 3);
  fw::shard_write(d / "s.bin", docs, 32000, pl);
  std::vector<uint32_t> stream;
  for (auto& doc : docs) stream.insert(stream.end(), doc.begin(), doc.end());
  const int B = 2, T = 8;
  fw::ShardLoader loader({d / "s.bin"}, B, T, 0, 1, 7, /*shuffle=*/false);
  EXPECT_EQ(loader.n_windows(), (48u - 1) / 8);
  std::vector<int32_t> in(B * T), tg(B * T);
  loader.next_batch(in.data(), tg.data());
  for (int b = 0; b < B; b++) {
    for (int t = 0; t < T; t++) {
      size_t s = (size_t)b * T + t;  // unshuffled: window b starts at b*T
      EXPECT_EQ(in[b * T + t], (int32_t)stream[s]);
      size_t tgt = s + 1, doc = tgt / 6, in_doc = tgt % 6;
      size_t masked = std::max<size_t>(1, pl[doc]);
      int32_t want = in_doc < masked ? fw::kIgnoreIndex : (int32_t)stream[tgt];
      EXPECT_EQ(tg[b * T + t], want) << "b=" << b << " t=" << t;
    }
  }
}

TEST(io_shards, multiple_shards_form_one_stream) {
  TempDir d;
  auto d1 = make_docs(2, 5, 0), d2 = make_docs(2, 5, 1000);
  fw::shard_write(d / "1.bin", d1, 32000);
  fw::shard_write(d / "2.bin", d2, 32000);
  fw::ShardLoader loader({d / "1.bin", d / "2.bin"}, 1, 19, 0, 1, 0, false);
  std::vector<int32_t> in(19), tg(19);
  loader.next_batch(in.data(), tg.data());
  EXPECT_EQ(in[10], (int32_t)d2[0][0]);  // the 11th token is shard 2's first
  EXPECT_EQ(tg[9], fw::kIgnoreIndex);     // first token of a document is masked
  EXPECT_EQ(tg[10], (int32_t)d2[0][1]);
}

TEST(io_shards, shuffle_is_deterministic_and_ranks_are_disjoint) {
  TempDir d;
  fw::shard_write(d / "s.bin", make_docs(50, 20, 0), 32000);
  const int B = 3, T = 16, W = 3;
  auto epoch_windows = [&](int rank, uint64_t seed) {
    fw::ShardLoader l({d / "s.bin"}, B, T, rank, W, seed);
    std::vector<int32_t> in(B * T), tg(B * T);
    std::vector<int32_t> firsts;
    for (uint64_t i = 0; i < l.batches_per_epoch(); i++) {
      l.next_batch(in.data(), tg.data());
      for (int b = 0; b < B; b++) firsts.push_back(in[b * T]);
    }
    return firsts;
  };
  EXPECT_EQ(epoch_windows(0, 5), epoch_windows(0, 5));
  EXPECT_NE(epoch_windows(0, 5), epoch_windows(0, 6));
  // window starts are unique tokens here except EOS; compare by full batches instead
  std::set<std::vector<int32_t>> seen;
  size_t total = 0;
  for (int r = 0; r < W; r++) {
    fw::ShardLoader l({d / "s.bin"}, B, T, r, W, 5);
    std::vector<int32_t> in(B * T), tg(B * T);
    for (uint64_t i = 0; i < l.batches_per_epoch(); i++) {
      l.next_batch(in.data(), tg.data());
      for (int b = 0; b < B; b++) {
        seen.insert(std::vector<int32_t>(in.begin() + b * T, in.begin() + (b + 1) * T));
        total++;
      }
    }
  }
  EXPECT_EQ(seen.size(), total);  // no window read by two ranks (or twice)
}

TEST(io_shards, position_round_trips_and_resumes) {
  TempDir d;
  fw::shard_write(d / "s.bin", make_docs(20, 10, 0), 32000);
  const int B = 2, T = 8;
  fw::ShardLoader a({d / "s.bin"}, B, T, 0, 1, 11);
  std::vector<int32_t> in(B * T), tg(B * T), in2(B * T), tg2(B * T);
  for (int i = 0; i < 17; i++) a.next_batch(in.data(), tg.data());  // crosses epochs (bpe = 12)
  nlohmann::json pos = a.position().to_json();
  fw::ShardLoader b({d / "s.bin"}, B, T, 0, 1, 11);
  b.set_position(fw::DataPosition::from_json(pos));
  for (int i = 0; i < 10; i++) {
    a.next_batch(in.data(), tg.data());
    b.next_batch(in2.data(), tg2.data());
    EXPECT_EQ(in, in2);
    EXPECT_EQ(tg, tg2);
  }
  expect_error([&] { fw::DataPosition::from_json({{"epoch", -1}}); }, ErrorKind::kCorrupt, "data position");
}

TEST(io_shards, too_little_data_or_vocab_mismatch_is_a_clear_error) {
  TempDir d;
  fw::shard_write(d / "s.bin", make_docs(2, 5, 0), 32000);
  expect_error([&] { fw::ShardLoader l({d / "s.bin"}, 4, 8, 0, 1, 0); }, ErrorKind::kInvalidArgument, "data too small");
  expect_error([&] { fw::ShardLoader l({d / "s.bin"}, 1, 2, 0, 1, 0, true, 1000); }, ErrorKind::kInvalidArgument,
               "exceeds the model's 1000");
}
