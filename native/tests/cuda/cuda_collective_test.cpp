// cuda_collective_test.cpp: the NCCL shim and a one-rank NcclCollective.
// Multi-rank runs need one GPU per rank (NCCL refuses two ranks on one
// device); run_gpu_checks.sh covers a single GPU, so this pins what one rank
// can: the library loads, the calls go through and keep the data, and a
// missing library is a clear kUnsupported error.
#include <cstdlib>
#include <vector>

#include "collective_nccl.h"
#include "cuda_test_util.h"
#include "nccl_shim.h"

using namespace fwcuda_test;

TEST(cuda_collective, nccl_single_rank_allreduce_broadcast_barrier) {
  FW_REQUIRE_GPU();
  if (!fw::cuda::nccl_available()) GTEST_SKIP() << "libnccl.so.2 not found (set FW_NCCL_LIBRARY)";
  EXPECT_GE(fw::cuda::nccl_api().version, 21000);
  fw::CollectiveEnv env;  // world_size 1
  auto c = fw::cuda::make_nccl_collective(env);
  EXPECT_STREQ(c->name(), "nccl");
  EXPECT_TRUE(c->caps().device_buffers);

  std::vector<float> x = randn(1000, 50);
  Dev<float> d(x);
  c->allreduce_sum(d.get(), x.size());  // device buffer, sum over one rank
  expect_parity("nccl allreduce_sum (1 rank, device)", d.f32(), x, 0.0);
  std::vector<float> h = x;
  c->allreduce_sum(h.data(), h.size());  // host buffer, staged
  expect_parity("nccl allreduce_sum (1 rank, host)", h, x, 0.0);

  Dev<float> d2(x);
  c->allreduce_async(d2.get(), x.size(), fw::cuda::NcclType::kFloat32, 0);
  c->wait_all(0);
  expect_parity("nccl allreduce_async (1 rank)", d2.f32(), x, 0.0);
  c->broadcast(h.data(), h.size() * sizeof(float), 0);
  expect_parity("nccl broadcast (1 rank)", h, x, 0.0);
  c->barrier();
}

TEST(cuda_collective, missing_library_is_unsupported) {
  // The shim loads once per process; only meaningful when it failed.
  if (fw::cuda::nccl_available()) GTEST_SKIP() << "NCCL is installed here";
  try {
    fw::cuda::nccl_api();
    FAIL() << "nccl_api() should throw without NCCL";
  } catch (const fw::Error& e) {
    EXPECT_EQ(e.kind(), fw::ErrorKind::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("FW_NCCL_LIBRARY"), std::string::npos) << e.what();
  }
}

TEST(cuda_collective, nccl_single_rank_reduce_scatter_all_gather) {
  FW_REQUIRE_GPU();
  if (!fw::cuda::nccl_available()) GTEST_SKIP() << "libnccl.so.2 not found (set FW_NCCL_LIBRARY)";
  fw::CollectiveEnv env;
  auto c = fw::cuda::make_nccl_collective(env);
  std::vector<float> x = randn(777, 51);
  Dev<float> send(x), shard(x.size()), gathered(x.size());
  // One rank: its shard is everything, and gathering it gives it back.
  c->reduce_scatter_async(send.get(), shard.get(), x.size(), fw::cuda::NcclType::kFloat32, 0);
  c->all_gather_async(shard.get(), gathered.get(), x.size(), fw::cuda::NcclType::kFloat32, 0);
  c->wait_all(0);
  expect_parity("nccl reduce_scatter (1 rank)", shard.f32(), x, 0.0);
  expect_parity("nccl all_gather (1 rank)", gathered.f32(), x, 0.0);
}
