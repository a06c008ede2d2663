// collective_test_proc.h: start a child process for the collective tests.
//
// The parent runs threads (the in-test store), so between fork() and exec()
// the child may only make async-signal-safe calls: the environment and the
// argument vector are built before fork(), the child only dup2()s and
// execve()s. The child gets SIGKILL if the test process dies, so a crashed
// test leaves no orphan rank behind.
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace fw_test {

// Runs exe with args (argv[0] = exe) and this process's environment with
// overrides applied; stdout/stderr go to out_fd/err_fd (-1 = inherit).
inline pid_t spawn_process(const std::string& exe, const std::vector<std::string>& args,
                           const std::map<std::string, std::string>& overrides, int out_fd, int err_fd) {
  std::vector<std::string> env;
  for (char** e = environ; *e; e++) {
    std::string kv = *e;
    if (!overrides.count(kv.substr(0, kv.find('=')))) env.push_back(kv);
  }
  for (const auto& kv : overrides) env.push_back(kv.first + "=" + kv.second);
  std::vector<char*> envp, argv;
  for (auto& s : env) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> all = {exe};
  all.insert(all.end(), args.begin(), args.end());
  for (auto& s : all) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died before prctl
    if (out_fd >= 0) dup2(out_fd, 1);
    if (err_fd >= 0) dup2(err_fd, 2);
    execve(exe.c_str(), argv.data(), envp.data());
    _exit(127);
  }
  return pid;
}

}  // namespace fw_test
