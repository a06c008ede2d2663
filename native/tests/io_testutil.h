// io_testutil.h: helpers shared by the io_/infer_/worker_/collective_ tests:
// a scratch directory removed at the end of the test, an assertion that a
// call throws fw::Error of a given kind whose message mentions a substring,
// and the norm-wise relative error of two weight vectors.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "common.h"
#include "fileio.h"

namespace fwtest {

// Norm-wise relative error ||a - b|| / ||b|| (b the reference).
inline double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); i++) {
    num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    den += (double)b[i] * b[i];
  }
  return std::sqrt(num / den);
}

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/fw-io-test-XXXXXX";
    char* p = mkdtemp(tmpl);
    if (!p) throw std::runtime_error("mkdtemp failed");
    path = p;
  }
  ~TempDir() {
    try {
      fw::remove_all(path);
    } catch (...) {
    }
  }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

inline void expect_error(const std::function<void()>& fn, fw::ErrorKind kind, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected fw::Error mentioning '" << needle << "', nothing was thrown";
  } catch (const fw::Error& e) {
    EXPECT_EQ((int)e.kind(), (int)kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
  }
}

inline std::string read_bytes(const std::string& path) { return fw::read_file_text(path); }

inline void write_bytes(const std::string& path, const std::string& bytes) {
  fw::write_file_durable(path, bytes.data(), bytes.size());
}

}  // namespace fwtest
