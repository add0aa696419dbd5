// The single-rank NCCL double (kernels/emu/nccl_double.cpp): every collective over one rank
// leaves the data as it was (in place or into another buffer), and what it cannot do (several
// ranks, unknown types) is refused loudly.
#include <gtest/gtest.h>
#include <nccl.h>

#include <string>
#include <vector>

#include "emu/runtime.hpp"

namespace pgolf::emu {
namespace {

TEST(NcclDouble, OneRankCollectivesAreCopies) {
  ncclUniqueId id;
  ASSERT_EQ(ncclGetUniqueId(&id), ncclSuccess);
  ncclComm_t comm;
  ASSERT_EQ(ncclCommInitRank(&comm, 1, id, 0), ncclSuccess);
  int count = 0, rank = -1;
  ncclCommCount(comm, &count);
  ncclCommUserRank(comm, &rank);
  EXPECT_EQ(count, 1);
  EXPECT_EQ(rank, 0);
  std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f}, b(4, 9.0f);
  for (ncclRedOp_t op : {ncclSum, ncclAvg, ncclMax, ncclMin, ncclProd}) {
    ASSERT_EQ(ncclAllReduce(a.data(), b.data(), 4, ncclFloat32, op, comm, nullptr), ncclSuccess);
    EXPECT_EQ(b, a) << "op " << op;
  }
  std::vector<float> in_place = a;
  ASSERT_EQ(ncclAllReduce(in_place.data(), in_place.data(), 4, ncclFloat32, ncclAvg, comm, nullptr), ncclSuccess);
  EXPECT_EQ(in_place, a);
  std::vector<unsigned short> h = {1, 2, 3}, g(3, 0);
  ASSERT_EQ(ncclAllGather(h.data(), g.data(), 3, ncclBfloat16, comm, nullptr), ncclSuccess);
  EXPECT_EQ(g, h);
  std::fill(b.begin(), b.end(), 0.0f);
  ASSERT_EQ(ncclReduceScatter(a.data(), b.data(), 4, ncclFloat32, ncclSum, comm, nullptr), ncclSuccess);
  EXPECT_EQ(b, a);
  std::fill(b.begin(), b.end(), 0.0f);
  ASSERT_EQ(ncclBroadcast(a.data(), b.data(), 4, ncclFloat32, 0, comm, nullptr), ncclSuccess);
  EXPECT_EQ(b, a);
  EXPECT_EQ(ncclBroadcast(a.data(), b.data(), 4, ncclFloat32, 1, comm, nullptr), ncclInvalidArgument) << "no rank 1";
  EXPECT_THROW(ncclAllReduce(a.data(), b.data(), 4, ncclNumTypes, ncclSum, comm, nullptr), Error);
  ncclCommDestroy(comm);
}

TEST(NcclDouble, SeveralRanksAreRefusedLoudly) {
  ncclUniqueId id;
  ncclGetUniqueId(&id);
  ncclComm_t comm = nullptr;
  try {
    ncclCommInitRank(&comm, 2, id, 0);
    FAIL() << "two ranks cannot work in one process";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("a communicator of 2 ranks"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace pgolf::emu
