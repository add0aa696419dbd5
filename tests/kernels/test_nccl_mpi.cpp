// The NCCL double over MPI (kernels/emu/nccl_double.cpp), run by ctest as
// `mpirun -np 2 pgolf_emu_mpi_tests`: each collective against values worked out here from
// NCCL's definitions, and the same bits on both ranks.
#include <cuda_bf16.h>
#include <gtest/gtest.h>
#include <mpi.h>
#include <nccl.h>

#include <string>
#include <vector>

#include "emu/runtime.hpp"

namespace pgolf::emu {
namespace {

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

class NcclOverMpi : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(world_size(), 2) << "run under mpirun -np 2";
    ncclUniqueId id;
    if (world_rank() == 0) ncclGetUniqueId(&id);
    MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);  // as SPEC 8 launches NCCL
    ASSERT_EQ(ncclCommInitRank(&comm_, 2, id, world_rank()), ncclSuccess);
  }
  void TearDown() override { ncclCommDestroy(comm_); }
  ncclComm_t comm_ = nullptr;
};

TEST_F(NcclOverMpi, AllReduceCombinesBothRanksForEveryOp) {
  const int r = world_rank();
  const std::vector<float> mine = {1.0f + static_cast<float>(r), -2.0f * static_cast<float>(r + 1), 0.5f, 3.0f};
  // Rank 0 holds {1, -2, 0.5, 3}, rank 1 {2, -4, 0.5, 3}.
  std::vector<float> out(4);
  ASSERT_EQ(ncclAllReduce(mine.data(), out.data(), 4, ncclFloat32, ncclSum, comm_, nullptr), ncclSuccess);
  EXPECT_EQ(out, (std::vector<float>{3, -6, 1, 6}));
  ncclAllReduce(mine.data(), out.data(), 4, ncclFloat32, ncclAvg, comm_, nullptr);
  EXPECT_EQ(out, (std::vector<float>{1.5f, -3, 0.5f, 3}));
  ncclAllReduce(mine.data(), out.data(), 4, ncclFloat32, ncclMax, comm_, nullptr);
  EXPECT_EQ(out, (std::vector<float>{2, -2, 0.5f, 3}));
  ncclAllReduce(mine.data(), out.data(), 4, ncclFloat32, ncclMin, comm_, nullptr);
  EXPECT_EQ(out, (std::vector<float>{1, -4, 0.5f, 3}));
  std::vector<float> in_place = mine;
  ncclAllReduce(in_place.data(), in_place.data(), 4, ncclFloat32, ncclProd, comm_, nullptr);
  EXPECT_EQ(in_place, (std::vector<float>{2, 8, 0.25f, 9}));
}

TEST_F(NcclOverMpi, Bf16SumsRoundOnceLikeTheGpu) {
  // 1 + 2^-8 is not a bf16 value: each rank contributes 0.5 + 2^-9, and the float sum rounds
  // to even (1.0) when stored as bf16.
  const __nv_bfloat16 mine[2] = {__float2bfloat16(0.5f + 1.0f / 512.0f), __float2bfloat16(static_cast<float>(world_rank()))};
  __nv_bfloat16 out[2];
  ASSERT_EQ(ncclAllReduce(mine, out, 2, ncclBfloat16, ncclSum, comm_, nullptr), ncclSuccess);
  EXPECT_EQ(__bfloat162float(out[0]), 1.0f);
  EXPECT_EQ(__bfloat162float(out[1]), 1.0f);
}

TEST_F(NcclOverMpi, ReduceScatterAllGatherAndBroadcastMoveTheRightBlocks) {
  const int r = world_rank();
  // Parallel Muon's pattern: reduce-scatter a bank, update the local shard, all-gather it.
  std::vector<float> bank = {1, 2, 3, 4};  // the same on both ranks
  for (auto& v : bank) v += static_cast<float>(r) * 10.0f;
  std::vector<float> shard(2);
  ASSERT_EQ(ncclReduceScatter(bank.data(), shard.data(), 2, ncclFloat32, ncclAvg, comm_, nullptr), ncclSuccess);
  EXPECT_EQ(shard, r == 0 ? (std::vector<float>{6, 7}) : (std::vector<float>{8, 9}));
  std::vector<float> gathered(4);
  ASSERT_EQ(ncclAllGather(shard.data(), gathered.data(), 2, ncclFloat32, comm_, nullptr), ncclSuccess);
  EXPECT_EQ(gathered, (std::vector<float>{6, 7, 8, 9}));
  std::vector<int> b = {r, r, r};
  ASSERT_EQ(ncclBroadcast(b.data(), b.data(), 3, ncclInt32, 1, comm_, nullptr), ncclSuccess);
  EXPECT_EQ(b, (std::vector<int>{1, 1, 1}));
  EXPECT_EQ(ncclBroadcast(b.data(), b.data(), 3, ncclInt32, 2, comm_, nullptr), ncclInvalidArgument);
}

TEST(NcclOverMpiSetup, ACommunicatorThatDoesNotMatchTheMpiWorldIsRefused) {
  ncclUniqueId id{};
  ncclComm_t c = nullptr;
  try {
    ncclCommInitRank(&c, 3, id, world_rank());
    FAIL() << "3 ranks in a world of 2";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("world size 2"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace pgolf::emu

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  if (pgolf::emu::world_rank() != 0) {
    // One report is enough; the other rank's failures still fail its exit code.
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int failed = RUN_ALL_TESTS();
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any;
}
