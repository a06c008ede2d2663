// store_client.h: client of the trainer's rendezvous store (HTTP/1.1).
//
// The ranks of one run attempt meet under a base URL the trainer hands out in
// FW_STORE_URL (http://host:port/v1/rendezvous/<runId>/<attempt>); the bearer
// token comes in FW_STORE_TOKEN. The protocol (docs/trainer.md is the
// contract; the server is the trainer's):
//
//   PUT  {base}/keys/{key}              raw body            -> 204
//   GET  {base}/keys/{key}?wait_ms=N                        -> 200 raw body,
//        or 404 once N ms passed without the key (long poll)
//   POST {base}/keys/{key}/add          decimal integer     -> 200 new value
//
// Keys on the wire match [A-Za-z0-9._/-]{1,200}; encode_key() maps any other
// key (Gloo's, or a caller's) injectively into that set. Plain POSIX sockets,
// one request per connection (Connection: close): a handful of requests per
// rank per run, so keep-alive would buy nothing. Only http:// (the store sits
// inside the cluster network; TLS terminates in front of it if needed).
//
// Errors: a status other than the ones above, or a store that cannot be
// reached for connect_retry_ms, throws CollectiveError(kStore) naming the
// URL and the status; a long poll that runs out returns std::nullopt.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fw {

class StoreClient {
 public:
  // base_url: http://host[:port]/path (no trailing slash needed).
  explicit StoreClient(const std::string& base_url, const std::string& token = "");

  void set(const std::string& key, const std::vector<char>& value);
  // The key's value, waiting up to timeout_ms for it to appear (long polls
  // of at most poll_ms each); std::nullopt when it did not appear in time.
  std::optional<std::vector<char>> get(const std::string& key, int64_t timeout_ms);
  // Atomically add delta to the integer under key (absent = 0); the new value.
  int64_t add(const std::string& key, int64_t delta);

  // Keys already in [A-Za-z0-9._/-]{1,200} and not starting with "x." pass
  // unchanged; any other becomes "x." + lowercase hex of its bytes.
  static std::string encode_key(const std::string& key);

  int64_t poll_ms = 10000;          // longest single long poll
  int64_t connect_retry_ms = 10000; // keep retrying a refused connection this long

  const std::string& host() const { return host_; }
  int port() const { return port_; }

 private:
  struct Response {
    int status = 0;
    std::vector<char> body;
  };
  Response request(const char* method, const std::string& path, const std::vector<char>& body, int64_t read_timeout_ms);
  Response request_once(const char* method, const std::string& path, const std::vector<char>& body,
                        int64_t read_timeout_ms, bool* refused);

  std::string url_, host_, path_, token_;
  int port_ = 80;
};

}  // namespace fw
