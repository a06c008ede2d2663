// worker_ranks.h: fw_worker ranks as child processes for multi-rank tests
// (collective_worker_test.cpp on the CPU, cuda/cuda_worker_test.cpp on one
// GPU): spawn a rank with the torchrun-style environment, wait for it, reap
// it (also at scope exit), read its JSON-lines events.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "collective_test_proc.h"
#include "fileio.h"
#include "io_testutil.h"
#include "worker_testutil.h"

namespace fwtest {

inline double secs_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// One fw_worker rank; stdout (JSON lines) and stderr go to files.
struct Rank {
  pid_t pid = -1;
  std::string out, err;
  int status = 0;
  bool exited = false;
};

inline Rank spawn_worker(const TempDir& d, const std::string& spec, int rank, int world, const std::string& url,
                         int64_t join_ms, int64_t coll_ms, const std::map<std::string, std::string>& extra_env = {}) {
  Rank r;
  r.out = d / ("rank" + std::to_string(rank) + "-" + std::to_string(::getpid()) + ".out");
  r.err = r.out + ".err";
  std::string bin = worker_path();
  if (!fw::path_exists(bin)) throw std::runtime_error("fw_worker not built next to the tests: " + bin);
  int o = ::open(r.out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int e = ::open(r.err.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  std::map<std::string, std::string> env = {{"RANK", std::to_string(rank)},
                                            {"LOCAL_RANK", std::to_string(rank)},
                                            {"WORLD_SIZE", std::to_string(world)},
                                            {"FW_STORE_URL", url},
                                            {"FW_JOIN_TIMEOUT_MS", std::to_string(join_ms)},
                                            {"FW_COLLECTIVE_TIMEOUT_MS", std::to_string(coll_ms)},
                                            {"OMP_NUM_THREADS", "1"}};
  for (const auto& kv : extra_env) env[kv.first] = kv.second;
  r.pid = fw_test::spawn_process(bin, {spec}, env, o, e);
  ::close(o);
  ::close(e);
  return r;
}

inline bool wait_exit(Rank& r, double secs) {
  auto t0 = std::chrono::steady_clock::now();
  while (!r.exited && secs_since(t0) < secs) {
    if (waitpid(r.pid, &r.status, WNOHANG) == r.pid) r.exited = true;
    else std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return r.exited;
}

inline void reap(std::vector<Rank>& rs);
// Reaps at scope exit too, so a failed ASSERT leaves no rank behind.
struct ReapGuard {
  std::vector<Rank>& rs;
  ~ReapGuard() { reap(rs); }
};
inline void reap(std::vector<Rank>& rs) {
  for (Rank& r : rs)
    if (!r.exited) {
      kill(r.pid, SIGKILL);
      kill(r.pid, SIGCONT);
      waitpid(r.pid, &r.status, 0);
      r.exited = true;
    }
}

inline int code_of(const Rank& r) { return WIFEXITED(r.status) ? WEXITSTATUS(r.status) : 128 + WTERMSIG(r.status); }

inline std::vector<nlohmann::json> events(const Rank& r) {
  std::vector<nlohmann::json> evs;
  std::string text = fw::path_exists(r.out) ? fw::read_file_text(r.out) : "";
  size_t p = 0;
  while (p < text.size()) {
    size_t e = text.find('\n', p);
    if (e == std::string::npos) break;  // a line still being written
    evs.push_back(nlohmann::json::parse(text.substr(p, e - p)));
    p = e + 1;
  }
  return evs;
}

}  // namespace fwtest
