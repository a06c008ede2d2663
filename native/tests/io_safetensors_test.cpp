// io_safetensors_test.cpp: safetensors round trips, dtype conversion, strict
// validation of every malformed input, sha256 and atomic writes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "io_testutil.h"
#include "safetensors.h"

using fw::ErrorKind;
using fwtest::expect_error;
using fwtest::TempDir;

// A safetensors file assembled by hand: u64 header length, header, data.
static std::string raw_st(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  std::memcpy(&out[0], &n, 8);
  return out + header + data;
}

static std::string floats(std::initializer_list<float> v) {
  std::string s;
  for (float f : v) s.append((const char*)&f, 4);
  return s;
}

TEST(io_safetensors, round_trip_f32_with_metadata) {
  TempDir d;
  std::vector<float> a = {1.5f, -2.25f, 3.0f, 0.0f, 1e-20f, 7.0f};
  std::vector<float> b = {42.0f};
  fw::safetensors_write(d / "m.safetensors", {{"model.a", {2, 3}, a.data()}, {"model.b", {1}, b.data()}}, fw::StDType::kF32,
                        {{"format", "pt"}});
  fw::SafeTensorsReader r(d / "m.safetensors");
  EXPECT_EQ(r.names(), (std::vector<std::string>{"model.a", "model.b"}));
  EXPECT_EQ(r.info("model.a").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(r.read_f32("model.a", {2, 3}), a);
  EXPECT_EQ(r.read_f32("model.b"), b);
  EXPECT_EQ(r.metadata().at("format"), "pt");
}

TEST(io_safetensors, bf16_write_and_f16_bf16_read_convert_to_f32) {
  TempDir d;
  std::vector<float> a = {1.0f, -3.140625f, 0.5f, 65504.0f};
  fw::safetensors_write(d / "h.safetensors", {{"w", {4}, a.data()}}, fw::StDType::kBF16);
  fw::SafeTensorsReader r(d / "h.safetensors");
  EXPECT_EQ(r.info("w").dtype, fw::StDType::kBF16);
  std::vector<float> back = r.read_f32("w");
  for (size_t i = 0; i < a.size(); i++) EXPECT_NEAR(back[i], a[i], std::fabs(a[i]) / 128.0f);
  EXPECT_EQ(back[1], -3.140625f);  // exactly representable in bf16

  // F16: 1.0 = 0x3c00, -2.0 = 0xc000, 65504 = 0x7bff, smallest subnormal 0x0001
  uint16_t h[4] = {0x3c00, 0xc000, 0x7bff, 0x0001};
  std::string data((const char*)h, 8);
  fwtest::write_bytes(d / "f16.safetensors",
                      raw_st(R"({"x":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]}})", data));
  fw::SafeTensorsReader r16(d / "f16.safetensors");
  std::vector<float> x = r16.read_f32("x", {2, 2});
  EXPECT_EQ(x[0], 1.0f);
  EXPECT_EQ(x[1], -2.0f);
  EXPECT_EQ(x[2], 65504.0f);
  EXPECT_FLOAT_EQ(x[3], std::ldexp(1.0f, -24));
}

TEST(io_safetensors, missing_file_is_io_error) {
  TempDir d;
  expect_error([&] { fw::SafeTensorsReader r(d / "nope.safetensors"); }, ErrorKind::kIo, "not found");
}

TEST(io_safetensors, truncated_file_is_corrupt) {
  TempDir d;
  std::vector<float> a(64, 1.0f);
  fw::safetensors_write(d / "m.safetensors", {{"w", {8, 8}, a.data()}});
  std::string bytes = fwtest::read_bytes(d / "m.safetensors");
  fwtest::write_bytes(d / "cut.safetensors", bytes.substr(0, bytes.size() - 10));
  expect_error([&] { fw::SafeTensorsReader r(d / "cut.safetensors"); }, ErrorKind::kCorrupt, "run past the data buffer");
  fwtest::write_bytes(d / "tiny.safetensors", bytes.substr(0, 5));
  expect_error([&] { fw::SafeTensorsReader r(d / "tiny.safetensors"); }, ErrorKind::kCorrupt, "too short");
  fwtest::write_bytes(d / "head.safetensors", bytes.substr(0, 20));
  expect_error([&] { fw::SafeTensorsReader r(d / "head.safetensors"); }, ErrorKind::kCorrupt, "runs past the end");
}

TEST(io_safetensors, corrupt_headers_are_refused) {
  TempDir d;
  std::string two = floats({1, 2});
  struct Case {
    std::string header, data, needle;
    ErrorKind kind;
  };
  std::vector<Case> cases = {
      {R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", two, "not valid JSON", ErrorKind::kCorrupt},
      {R"([1,2,3])", "", "not an object", ErrorKind::kCorrupt},
      {R"({"x":{"dtype":"F32","shape":[2]}})", two, "needs dtype, shape and data_offsets", ErrorKind::kCorrupt},
      {R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", two, "does not match", ErrorKind::kCorrupt},
      {R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", two, "run past the data buffer", ErrorKind::kCorrupt},
      {R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", two, "begin > end", ErrorKind::kCorrupt},
      {R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", two,
       "overlaps", ErrorKind::kCorrupt},
      {R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", two, "hole", ErrorKind::kCorrupt},
      {R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", two, "trailing garbage", ErrorKind::kCorrupt},
      {R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", two, "negative", ErrorKind::kCorrupt},
      {R"({"x":{"dtype":"Q4_K","shape":[2],"data_offsets":[0,8]}})", two, "unknown dtype 'Q4_K'", ErrorKind::kUnsupported},
  };
  for (size_t i = 0; i < cases.size(); i++) {
    std::string p = d / ("c" + std::to_string(i) + ".safetensors");
    fwtest::write_bytes(p, raw_st(cases[i].header, cases[i].data));
    SCOPED_TRACE(cases[i].header);
    expect_error([&] { fw::SafeTensorsReader r(p); }, cases[i].kind, cases[i].needle);
  }
  // a header length that is absurd
  std::string bad(8, '\xff');
  fwtest::write_bytes(d / "len.safetensors", bad + "{}");
  expect_error([&] { fw::SafeTensorsReader r(d / "len.safetensors"); }, ErrorKind::kCorrupt, "not sane");
}

TEST(io_safetensors, shape_mismatch_and_non_float_reads_are_refused) {
  TempDir d;
  std::vector<float> a(6, 0.5f);
  fw::safetensors_write(d / "m.safetensors", {{"w", {2, 3}, a.data()}});
  fw::SafeTensorsReader r(d / "m.safetensors");
  expect_error([&] { r.read_f32("w", {3, 2}); }, ErrorKind::kInvalidArgument, "the model expects [3, 2]");
  expect_error([&] { r.read_f32("absent"); }, ErrorKind::kInvalidArgument, "no tensor named 'absent'");
  int64_t ids[2] = {1, 2};
  fwtest::write_bytes(d / "i.safetensors",
                      raw_st(R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})", std::string((const char*)ids, 16)));
  fw::SafeTensorsReader ri(d / "i.safetensors");
  expect_error([&] { ri.read_f32("ids"); }, ErrorKind::kUnsupported, "not a float type");
}

TEST(io_safetensors, failed_write_leaves_previous_file_intact) {
  TempDir d;
  std::vector<float> a(1000, 1.0f), b(1000, 2.0f);
  fw::safetensors_write(d / "m.safetensors", {{"w", {1000}, a.data()}});
  fw::io_set_fail_after_bytes(1500);
  expect_error([&] { fw::safetensors_write(d / "m.safetensors", {{"w", {1000}, b.data()}}); }, ErrorKind::kIo, "injected");
  fw::io_set_fail_after_bytes(-1);
  fw::SafeTensorsReader r(d / "m.safetensors");
  EXPECT_EQ(r.read_f32("w"), a);
  EXPECT_EQ(fw::list_dir(d.path), (std::vector<std::string>{"m.safetensors"}));  // no temp left behind
}

TEST(io_safetensors, sha256_matches_known_vectors) {
  EXPECT_EQ(fw::sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(fw::sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::string m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(fw::sha256_hex(m.data(), m.size()), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  std::string million(1000000, 'a');
  EXPECT_EQ(fw::sha256_hex(million.data(), million.size()), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
