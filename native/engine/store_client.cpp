// store_client.cpp: HTTP/1.1 over POSIX sockets for the rendezvous store
// (see store_client.h for the protocol).
#include "store_client.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "collective.h"

namespace fw {

namespace {

using Clock = std::chrono::steady_clock;

int64_t ms_since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
}

[[noreturn]] void store_fail(const std::string& msg) {
  throw CollectiveError(CollectiveFailure::kStore,
                        "rendezvous store: " + msg +
                            "\n---> HINT: check FW_STORE_URL / FW_STORE_TOKEN and that the trainer is reachable");
}

bool key_char_ok(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '/' || c == '-';
}

// Closes the socket on every path out of request_once.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void set_timeout(int fd, int opt, int64_t ms) {
  timeval tv{};
  tv.tv_sec = (time_t)(ms / 1000);
  tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
  setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv));
}

// Body of a "Transfer-Encoding: chunked" message; false when malformed.
bool dechunk(const std::string& raw, std::vector<char>* out) {
  size_t p = 0;
  while (true) {
    size_t eol = raw.find("\r\n", p);
    if (eol == std::string::npos) return false;
    size_t len = std::strtoul(raw.substr(p, eol - p).c_str(), nullptr, 16);
    p = eol + 2;
    if (len == 0) return true;
    if (p + len > raw.size()) return false;
    out->insert(out->end(), raw.begin() + p, raw.begin() + p + len);
    p += len + 2;
  }
}

}  // namespace

StoreClient::StoreClient(const std::string& base_url, const std::string& token) : url_(base_url), token_(token) {
  const std::string scheme = "http://";
  if (base_url.compare(0, scheme.size(), scheme) != 0)
    store_fail("FW_STORE_URL '" + base_url + "' must start with http://");
  std::string rest = base_url.substr(scheme.size());
  size_t slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  path_ = slash == std::string::npos ? "" : rest.substr(slash);
  while (!path_.empty() && path_.back() == '/') path_.pop_back();
  size_t colon = hostport.rfind(':');
  host_ = hostport.substr(0, colon);
  if (colon != std::string::npos) {
    const std::string p = hostport.substr(colon + 1);
    char* end = nullptr;
    long v = std::strtol(p.c_str(), &end, 10);
    if (p.empty() || *end || v <= 0 || v > 65535) store_fail("bad port in FW_STORE_URL '" + base_url + "'");
    port_ = (int)v;
  }
  if (host_.empty()) store_fail("no host in FW_STORE_URL '" + base_url + "'");
}

std::string StoreClient::encode_key(const std::string& key) {
  bool plain = !key.empty() && key.size() <= 200 && key.compare(0, 2, "x.") != 0 &&
               std::all_of(key.begin(), key.end(), key_char_ok);
  if (plain) return key;
  static const char* hex = "0123456789abcdef";
  std::string out = "x.";
  for (unsigned char c : key) {
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  FW_CHECK(out.size() <= 200, kInvalidArgument, "store key too long once encoded (" << key.size() << " bytes)");
  return out;
}

StoreClient::Response StoreClient::request_once(const char* method, const std::string& path,
                                                const std::vector<char>& body, int64_t read_timeout_ms,
                                                bool* refused) {
  *refused = false;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host_.c_str(), std::to_string(port_).c_str(), &hints, &res);
  if (rc != 0) {
    *refused = true;  // DNS may not be ready yet (a pod starting): retry
    return {};
  }
  Fd s;
  for (addrinfo* a = res; a; a = a->ai_next) {
    s.fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (s.fd < 0) continue;
    set_timeout(s.fd, SO_SNDTIMEO, 10000);  // bounds connect() too
    if (::connect(s.fd, a->ai_addr, a->ai_addrlen) == 0) break;
    ::close(s.fd);
    s.fd = -1;
  }
  freeaddrinfo(res);
  if (s.fd < 0) {
    *refused = true;
    return {};
  }
  set_timeout(s.fd, SO_RCVTIMEO, read_timeout_ms);

  std::string head = std::string(method) + " " + path + " HTTP/1.1\r\nHost: " + host_ + ":" +
                     std::to_string(port_) + "\r\nConnection: close\r\nContent-Type: application/octet-stream\r\n" +
                     "Content-Length: " + std::to_string(body.size()) + "\r\n";
  if (!token_.empty()) head += "Authorization: Bearer " + token_ + "\r\n";
  head += "\r\n";
  std::string msg = head + std::string(body.begin(), body.end());
  for (size_t off = 0; off < msg.size();) {
    ssize_t n = ::send(s.fd, msg.data() + off, msg.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) store_fail(std::string("sending to ") + url_ + ": " + std::strerror(errno));
    off += (size_t)n;
  }

  // Read the whole response: the server closes after it (Connection: close),
  // or we stop once Content-Length bytes of body are in.
  std::string raw;
  char buf[8192];
  size_t header_end = std::string::npos;
  long long content_length = -1;
  while (true) {
    ssize_t n = ::recv(s.fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        store_fail(std::string(method) + " " + path + ": no answer within " + std::to_string(read_timeout_ms) + " ms");
      store_fail(std::string("reading from ") + url_ + ": " + std::strerror(errno));
    }
    if (n == 0) break;
    raw.append(buf, (size_t)n);
    if (header_end == std::string::npos) {
      header_end = raw.find("\r\n\r\n");
      if (header_end != std::string::npos) {
        std::string h = raw.substr(0, header_end);
        std::transform(h.begin(), h.end(), h.begin(), [](unsigned char c) { return (char)std::tolower(c); });
        size_t cl = h.find("\r\ncontent-length:");
        if (cl != std::string::npos) content_length = std::atoll(h.c_str() + cl + 17);
        // 204 and 304 have no body: done at the blank line, whether or not
        // the server (or a process that inherited its socket) closes soon.
        if (content_length < 0 && (h.compare(0, 13, "http/1.1 204 ") == 0 || h.compare(0, 13, "http/1.1 304 ") == 0 ||
                                   h.compare(0, 13, "http/1.0 204 ") == 0))
          content_length = 0;
      }
    }
    if (header_end != std::string::npos && content_length >= 0 &&
        raw.size() >= header_end + 4 + (size_t)content_length)
      break;
  }
  if (header_end == std::string::npos || raw.compare(0, 5, "HTTP/") != 0)
    store_fail(std::string(method) + " " + path + ": malformed HTTP response");
  Response r;
  size_t sp = raw.find(' ');
  r.status = std::atoi(raw.c_str() + sp + 1);
  std::string h = raw.substr(0, header_end);
  std::transform(h.begin(), h.end(), h.begin(), [](unsigned char c) { return (char)std::tolower(c); });
  std::string payload = raw.substr(header_end + 4);
  if (content_length >= 0) {
    r.body.assign(payload.begin(), payload.begin() + std::min<size_t>(payload.size(), (size_t)content_length));
  } else if (h.find("transfer-encoding: chunked") != std::string::npos) {
    if (!dechunk(payload, &r.body)) store_fail(std::string(method) + " " + path + ": malformed chunked body");
  } else {
    r.body.assign(payload.begin(), payload.end());
  }
  return r;
}

StoreClient::Response StoreClient::request(const char* method, const std::string& path, const std::vector<char>& body,
                                           int64_t read_timeout_ms) {
  // A refused connection or a 503 is retried (the trainer may be restarting,
  // a pod's DNS may lag); any other answer is final.
  auto t0 = Clock::now();
  int64_t backoff = 50;
  while (true) {
    bool refused = false;
    Response r = request_once(method, path, body, read_timeout_ms, &refused);
    // 503: the trainer's store is briefly unavailable and asks for a retry.
    if (!refused && r.status != 503) return r;
    if (ms_since(t0) >= connect_retry_ms)
      store_fail("cannot connect to (or got only 503 from) " + host_ + ":" + std::to_string(port_) + " (" + url_ + ") for " +
                 std::to_string(connect_retry_ms) + " ms");
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff));
    backoff = std::min<int64_t>(backoff * 2, 1000);
  }
}

namespace {
std::string describe(int status, const std::vector<char>& body) {
  std::string b(body.begin(), body.begin() + std::min<size_t>(body.size(), 300));
  return "HTTP " + std::to_string(status) + (b.empty() ? "" : ": " + b);
}
}  // namespace

void StoreClient::set(const std::string& key, const std::vector<char>& value) {
  std::string path = path_ + "/keys/" + encode_key(key);
  Response r = request("PUT", path, value, 30000);
  if (r.status != 204 && r.status != 200) store_fail("PUT " + path + " -> " + describe(r.status, r.body));
}

std::optional<std::vector<char>> StoreClient::get(const std::string& key, int64_t timeout_ms) {
  std::string path = path_ + "/keys/" + encode_key(key);
  auto t0 = Clock::now();
  while (true) {
    int64_t wait = std::max<int64_t>(0, std::min(timeout_ms - ms_since(t0), poll_ms));
    auto t1 = Clock::now();
    Response r = request("GET", path + "?wait_ms=" + std::to_string(wait), {}, wait + 30000);
    if (r.status == 200) return std::move(r.body);
    if (r.status != 404) store_fail("GET " + path + " -> " + describe(r.status, r.body));
    if (ms_since(t0) >= timeout_ms) return std::nullopt;
    // A server that answers 404 before wait_ms passed must not make us spin.
    if (ms_since(t1) < wait / 2) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

int64_t StoreClient::add(const std::string& key, int64_t delta) {
  std::string path = path_ + "/keys/" + encode_key(key) + "/add";
  std::string d = std::to_string(delta);
  Response r = request("POST", path, std::vector<char>(d.begin(), d.end()), 30000);
  if (r.status != 200) store_fail("POST " + path + " -> " + describe(r.status, r.body));
  std::string s(r.body.begin(), r.body.end());
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || (*end && *end != '\n' && *end != '\r'))
    store_fail("POST " + path + " answered '" + s.substr(0, 50) + "', not an integer");
  return v;
}

}  // namespace fw
