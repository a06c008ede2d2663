// collective_store_test.cpp: the rendezvous store client against the
// in-test HTTP server (collective_test_store.h), the no-op backend and the
// collective environment reader.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <thread>

#include "collective.h"
#include "collective_test_store.h"
#include "store_client.h"

namespace {

using Clock = std::chrono::steady_clock;

int64_t ms_since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
}

// Runs fn, expects a CollectiveError with the reason whose message has needle.
template <typename F>
void expect_collective_error(F&& fn, int reason, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected CollectiveError mentioning '" << needle << "'";
  } catch (const fw::CollectiveError& e) {
    EXPECT_EQ(e.reason(), reason) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(collective_store, set_then_get_round_trips_binary_values) {
  fw_test::TestStore srv;
  fw::StoreClient c(srv.url("run-a/0"));
  std::vector<char> v = {'a', '\0', '\r', '\n', '\xff', 'z'};
  c.set("rank_0", v);
  auto got = c.get("rank_0", 0);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, v);
  c.set("empty", {});
  auto e = c.get("empty", 0);
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->empty());
  // The base URL scopes keys: another attempt does not see them.
  fw::StoreClient other(srv.url("run-a/1"));
  EXPECT_FALSE(other.get("rank_0", 0).has_value());
}

TEST(collective_store, get_long_polls_until_another_client_sets_the_key) {
  fw_test::TestStore srv;
  fw::StoreClient c(srv.url("run-b/0"));
  std::thread setter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    fw::StoreClient(srv.url("run-b/0")).set("late", {'x'});
  });
  auto t0 = Clock::now();
  auto got = c.get("late", 5000);
  int64_t took = ms_since(t0);
  setter.join();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, std::vector<char>{'x'});
  EXPECT_GE(took, 250);
  EXPECT_LT(took, 3000);
}

TEST(collective_store, get_of_a_missing_key_gives_up_after_its_timeout) {
  fw_test::TestStore srv;
  fw::StoreClient c(srv.url("run-c/0"));
  c.poll_ms = 200;  // several polls within one wait
  auto t0 = Clock::now();
  EXPECT_FALSE(c.get("never", 700).has_value());
  int64_t took = ms_since(t0);
  EXPECT_GE(took, 650);
  EXPECT_LT(took, 3000);
  EXPECT_GE(srv.requests(), 3);
}

TEST(collective_store, add_is_atomic_across_concurrent_clients) {
  fw_test::TestStore srv;
  std::vector<std::thread> ts;
  for (int t = 0; t < 6; t++)
    ts.emplace_back([&] {
      fw::StoreClient c(srv.url("run-d/0"));
      for (int i = 0; i < 20; i++) c.add("count", 2);
    });
  for (auto& t : ts) t.join();
  fw::StoreClient c(srv.url("run-d/0"));
  EXPECT_EQ(c.add("count", -40), 200);
  auto v = c.get("count", 0);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(std::string(v->begin(), v->end()), "200");
}

TEST(collective_store, encode_key_keeps_plain_keys_and_hex_encodes_the_rest) {
  EXPECT_EQ(fw::StoreClient::encode_key("rank_0"), "rank_0");
  EXPECT_EQ(fw::StoreClient::encode_key("a/b-c.d"), "a/b-c.d");
  EXPECT_EQ(fw::StoreClient::encode_key("a b"), "x.612062");
  // Keys that look encoded are encoded again, so the map stays injective.
  EXPECT_EQ(fw::StoreClient::encode_key("x.61"), "x.782e3631");
  EXPECT_NE(fw::StoreClient::encode_key("x.612062"), fw::StoreClient::encode_key("a b"));
  EXPECT_EQ(fw::StoreClient::encode_key(""), "x.");
  EXPECT_THROW(fw::StoreClient::encode_key(std::string(150, ' ')), fw::Error);
  // An encoded key works end to end.
  fw_test::TestStore srv;
  fw::StoreClient c(srv.url("run-e/0"));
  c.set("gloo key?&#", {'1'});
  EXPECT_TRUE(c.get("gloo key?&#", 0).has_value());
}

TEST(collective_store, bearer_token_is_sent_and_a_wrong_one_is_a_clear_error) {
  fw_test::TestStore srv("s3cret");
  fw::StoreClient good(srv.url("run-f/0"), "s3cret");
  good.set("k", {'v'});
  EXPECT_TRUE(good.get("k", 0).has_value());
  fw::StoreClient bad(srv.url("run-f/0"), "wrong");
  expect_collective_error([&] { bad.set("k", {'w'}); }, fw::CollectiveFailure::kStore, "HTTP 401");
  // The stored value is untouched by the refused write.
  EXPECT_EQ(*good.get("k", 0), std::vector<char>{'v'});
}

TEST(collective_store, unreachable_store_and_bad_urls_fail_clearly) {
  int port;
  {
    fw_test::TestStore gone;  // a port that was just free and is closed again
    port = gone.port();
  }
  fw::StoreClient c("http://127.0.0.1:" + std::to_string(port) + "/v1/rendezvous/r/0");
  c.connect_retry_ms = 300;
  auto t0 = Clock::now();
  expect_collective_error([&] { c.set("k", {'v'}); }, fw::CollectiveFailure::kStore, "cannot connect");
  EXPECT_LT(ms_since(t0), 3000);
  expect_collective_error([] { fw::StoreClient("https://host/x"); }, fw::CollectiveFailure::kStore, "http://");
  expect_collective_error([] { fw::StoreClient("http://host:99999/x"); }, fw::CollectiveFailure::kStore, "bad port");
  expect_collective_error([] { fw::StoreClient("http:///x"); }, fw::CollectiveFailure::kStore, "no host");
}

TEST(collective_local, no_op_backend_leaves_buffers_alone) {
  auto c = fw::make_local_collective();
  EXPECT_STREQ(c->name(), "local");
  EXPECT_FALSE(c->caps().multi_process);
  EXPECT_EQ(c->rank(), 0);
  EXPECT_EQ(c->world_size(), 1);
  std::vector<float> x = {1.5f, -2.f, 3.25f};
  std::vector<double> d = {0.1, 0.2};
  c->allreduce_sum(x.data(), x.size());
  c->allreduce_sum(d.data(), d.size());
  fw::allreduce_sum_bucketed(*c, x.data(), x.size(), 4);
  c->broadcast(x.data(), sizeof(float) * x.size(), 0);
  c->barrier();
  EXPECT_EQ(x, (std::vector<float>{1.5f, -2.f, 3.25f}));
  EXPECT_EQ(d, (std::vector<double>{0.1, 0.2}));
  EXPECT_THROW(c->broadcast(x.data(), 4, 1), fw::Error);
}

// Sets and restores environment variables around a test.
struct EnvGuard {
  std::vector<std::pair<std::string, std::string>> saved;
  std::vector<std::string> unset_after;
  void set(const std::string& k, const std::string& v) {
    const char* old = getenv(k.c_str());
    if (old) saved.emplace_back(k, old);
    else unset_after.push_back(k);
    setenv(k.c_str(), v.c_str(), 1);
  }
  ~EnvGuard() {
    for (auto& kv : saved) setenv(kv.first.c_str(), kv.second.c_str(), 1);
    for (auto& k : unset_after) unsetenv(k.c_str());
  }
};

TEST(collective_env, reads_torchrun_variables_and_names_a_bad_one) {
  {
    EnvGuard g;
    g.set("RANK", "1");
    g.set("WORLD_SIZE", "2");
    g.set("LOCAL_RANK", "1");
    g.set("FW_STORE_URL", "http://127.0.0.1:1/v1/rendezvous/r/0");
    g.set("FW_COLLECTIVE_TIMEOUT_MS", "1500");
    g.set("FW_JOIN_TIMEOUT_MS", "2500");
    g.set("FW_BIND_ADDR", "127.0.0.2");
    fw::CollectiveEnv e = fw::collective_env();
    EXPECT_EQ(e.rank, 1);
    EXPECT_EQ(e.world_size, 2);
    EXPECT_EQ(e.local_rank, 1);
    EXPECT_EQ(e.collective_timeout_ms, 1500);
    EXPECT_EQ(e.join_timeout_ms, 2500);
    EXPECT_EQ(e.bind_addr, "127.0.0.2");
  }
  {
    EnvGuard g;
    g.set("WORLD_SIZE", "2");
    g.set("RANK", "2");
    try {
      fw::collective_env();
      ADD_FAILURE() << "RANK 2 of 2 accepted";
    } catch (const fw::Error& e) {
      EXPECT_NE(std::string(e.what()).find("RANK"), std::string::npos) << e.what();
    }
  }
  {
    EnvGuard g;
    g.set("FW_COLLECTIVE_TIMEOUT_MS", "10s");
    try {
      fw::collective_env();
      ADD_FAILURE() << "10s accepted";
    } catch (const fw::Error& e) {
      EXPECT_NE(std::string(e.what()).find("FW_COLLECTIVE_TIMEOUT_MS"), std::string::npos) << e.what();
    }
  }
  fw::CollectiveEnv one;
  EXPECT_STREQ(fw::make_collective(one)->name(), "local");
  fw::CollectiveEnv two;
  two.world_size = 2;
  EXPECT_THROW(fw::make_collective(two), fw::Error);  // no store URL (or no Gloo)
}

TEST(collective_exit_code, reasons_map_to_documented_worker_codes) {
  EXPECT_EQ(fw::collective_exit_code(fw::CollectiveError(fw::CollectiveFailure::kRendezvousTimeout, "")), 6);
  EXPECT_EQ(fw::collective_exit_code(fw::CollectiveError(fw::CollectiveFailure::kCollectiveTimeout, "")), 7);
  EXPECT_EQ(fw::collective_exit_code(fw::CollectiveError(fw::CollectiveFailure::kPeerLost, "")), 7);
  EXPECT_EQ(fw::collective_exit_code(fw::CollectiveError(fw::CollectiveFailure::kStore, "")), 8);
}

}  // namespace
