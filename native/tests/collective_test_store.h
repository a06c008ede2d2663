// collective_test_store.h: a tiny in-process HTTP server speaking the
// rendezvous store protocol of store_client.h, for the collective tests.
//
// Test scaffolding only: the production store is the trainer's. It listens on
// an ephemeral loopback port, serves each connection on its own thread (long
// polls block), answers one request per connection and closes it.
//
//   TestStore s("secret");                 // token "" = no auth
//   std::string url = s.url("run1/0");     // http://127.0.0.1:PORT/v1/rendezvous/run1/0
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace fw_test {

class TestStore {
 public:
  explicit TestStore(std::string token = "") : token_(std::move(token)) {
    // CLOEXEC everywhere: the tests fork rank processes, which must not
    // inherit (and so hold open) the store's sockets.
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (::bind(fd_, (sockaddr*)&a, sizeof(a)) != 0 || ::listen(fd_, 64) != 0)
      throw std::runtime_error("TestStore: cannot listen on loopback");
    socklen_t len = sizeof(a);
    getsockname(fd_, (sockaddr*)&a, &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~TestStore() {
    stop_ = true;
    cv_.notify_all();
    acceptor_.join();
    for (auto& t : conns_) t.join();
    ::close(fd_);
  }

  int port() const { return port_; }
  std::string url(const std::string& suffix) const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/v1/rendezvous/" + suffix;
  }
  // Value stored under the full key path (e.g. "/v1/rendezvous/r/0/keys/a").
  bool has(const std::string& path) {
    std::lock_guard<std::mutex> l(mu_);
    return kv_.count(path) > 0;
  }
  int requests() const { return requests_.load(); }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      // A client stopped mid-request (SIGSTOP) must not hang the destructor.
      timeval tv{5, 0};
      setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      std::lock_guard<std::mutex> l(conns_mu_);
      conns_.emplace_back([this, c] { serve(c); });
    }
  }

  static void reply(int c, int status, const std::string& body) {
    const char* text = status == 200 ? "OK" : status == 204 ? "No Content" : status == 404 ? "Not Found"
                     : status == 401 ? "Unauthorized" : "Bad Request";
    std::string msg = "HTTP/1.1 " + std::to_string(status) + " " + text + "\r\nConnection: close\r\n";
    if (status != 204) msg += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    msg += "\r\n" + (status == 204 ? std::string() : body);
    for (size_t off = 0; off < msg.size();) {
      ssize_t n = ::send(c, msg.data() + off, msg.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += (size_t)n;
    }
  }

  void serve(int c) {
    requests_++;
    std::string raw;
    char buf[4096];
    size_t he = std::string::npos, need = 0;
    while (true) {
      ssize_t n = ::recv(c, buf, sizeof(buf), 0);
      if (n <= 0) break;
      raw.append(buf, (size_t)n);
      if (he == std::string::npos && (he = raw.find("\r\n\r\n")) != std::string::npos) {
        std::string h = raw.substr(0, he);
        size_t cl = h.find("Content-Length: ");
        need = cl == std::string::npos ? 0 : std::strtoul(h.c_str() + cl + 16, nullptr, 10);
      }
      if (he != std::string::npos && raw.size() >= he + 4 + need) break;
    }
    if (he == std::string::npos) {
      ::close(c);
      return;
    }
    handle(c, raw.substr(0, he), raw.substr(he + 4, need));
    ::close(c);
  }

  void handle(int c, const std::string& head, const std::string& body) {
    std::string method = head.substr(0, head.find(' '));
    size_t p0 = head.find(' ') + 1;
    std::string target = head.substr(p0, head.find(' ', p0) - p0);
    if (!token_.empty() && (head + "\r\n").find("\r\nAuthorization: Bearer " + token_ + "\r\n") == std::string::npos)
      return reply(c, 401, "{\"title\":\"missing or wrong bearer token\"}");
    std::string path = target.substr(0, target.find('?'));
    long wait_ms = 0;
    size_t w = target.find("wait_ms=");
    if (w != std::string::npos) wait_ms = std::strtol(target.c_str() + w + 8, nullptr, 10);
    static const std::regex re("^(/v1/rendezvous/[^/]+/[^/]+/keys/)([A-Za-z0-9._/-]{1,200}?)(/add)?$");
    std::smatch m;
    if (!std::regex_match(path, m, re)) return reply(c, 400, "{\"title\":\"bad key\"}");
    bool add = m[3].matched;
    std::string key = m[1].str() + m[2].str();
    std::unique_lock<std::mutex> l(mu_);
    if (method == "PUT" && !add) {
      kv_[key] = body;
      cv_.notify_all();
      return reply(c, 204, "");
    }
    if (method == "POST" && add) {
      char* end = nullptr;
      long long delta = std::strtoll(body.c_str(), &end, 10);
      if (body.empty() || *end) return reply(c, 400, "{\"title\":\"body is not a decimal integer\"}");
      long long cur = kv_.count(key) ? std::strtoll(kv_[key].c_str(), nullptr, 10) : 0;
      kv_[key] = std::to_string(cur + delta);
      cv_.notify_all();
      return reply(c, 200, kv_[key]);
    }
    if (method == "GET" && !add) {
      auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
      cv_.wait_until(l, deadline, [&] { return stop_ || kv_.count(key) > 0; });
      if (!kv_.count(key)) return reply(c, 404, "{\"title\":\"no such key\"}");
      return reply(c, 200, kv_[key]);
    }
    reply(c, 400, "{\"title\":\"bad method\"}");
  }

  std::string token_;
  int fd_ = -1, port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::thread acceptor_;
  std::mutex conns_mu_;
  std::vector<std::thread> conns_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::string> kv_;
};

}  // namespace fw_test
