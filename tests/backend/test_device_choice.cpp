// Which GPU a process uses (backend/device_choice.hpp): the launcher's local rank, GPU 0 alone,
// and refusals naming the variable or the missing GPU.
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <string>

#include "backend/device_choice.hpp"
#include "common/error.hpp"

namespace pgolf::backend {
namespace {

Environment env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(DeviceChoice, TheLocalRankComesFromTheFirstLauncherVariableSet) {
  EXPECT_EQ(local_rank_from(env({})).rank, 0);
  EXPECT_EQ(local_rank_from(env({})).source, "");
  const LocalRank ompi = local_rank_from(env({{"OMPI_COMM_WORLD_LOCAL_RANK", "3"}, {"LOCAL_RANK", "5"}}));
  EXPECT_EQ(ompi.rank, 3);
  EXPECT_EQ(ompi.source, "OMPI_COMM_WORLD_LOCAL_RANK=3");
  EXPECT_EQ(local_rank_from(env({{"SLURM_LOCALID", "0"}, {"LOCAL_RANK", "5"}})).rank, 5) << "torchrun inside srun";
  EXPECT_EQ(local_rank_from(env({{"SLURM_LOCALID", "2"}})).rank, 2);
  EXPECT_EQ(local_rank_from(env({{"MPI_LOCALRANKID", "1"}})).source, "MPI_LOCALRANKID=1");
  EXPECT_EQ(local_rank_from(env({{"LOCAL_RANK", "7"}})).rank, 7);
}

TEST(DeviceChoice, ALocalRankThatIsNotAWholeNumberIsAUsageErrorNamingTheVariable) {
  for (const char* bad : {"", "-1", "x", "1.5", "4096", "2 "}) {
    const std::string e = error_of([&] { local_rank_from(env({{"OMPI_COMM_WORLD_LOCAL_RANK", bad}})); });
    EXPECT_NE(e.find(std::string("OMPI_COMM_WORLD_LOCAL_RANK=") + bad + ": expected the process's local rank"),
              std::string::npos)
        << "'" << bad << "': " << e;
  }
}

TEST(DeviceChoice, EachRankGetsTheGpuOfItsLocalRankAndAloneGpuZero) {
  const DeviceChoice c = choose_device(LocalRank{3, "OMPI_COMM_WORLD_LOCAL_RANK=3"}, 8);
  EXPECT_EQ(c.index, 3);
  EXPECT_EQ(c.reason, "GPU 3 of 8 (from OMPI_COMM_WORLD_LOCAL_RANK=3)");
  EXPECT_EQ(choose_device(LocalRank{}, 8).index, 0);
  EXPECT_EQ(choose_device(LocalRank{}, 8).reason, "GPU 0 of 8 (no launcher's local rank set)");
  // One visible GPU (the launcher gave each rank its own CUDA_VISIBLE_DEVICES): it is the rank's.
  EXPECT_EQ(choose_device(LocalRank{5, "LOCAL_RANK=5"}, 1).index, 0);
}

TEST(DeviceChoice, ALocalRankWithoutAGpuAndNoGpuAtAllAreRefused) {
  const std::string e = error_of([] { choose_device(LocalRank{4, "SLURM_LOCALID=4"}, 2); });
  EXPECT_NE(e.find("local rank 4 (SLURM_LOCALID=4) has no GPU of its own: 2 are visible"), std::string::npos) << e;
  EXPECT_NE(error_of([] { choose_device(LocalRank{}, 0); }).find("no CUDA device is visible"), std::string::npos);
}

TEST(DeviceChoice, MoreThanOneProcessIsRefusedNamingTheLauncherVariable) {
  require_single_process(env({}));
  require_single_process(env({{"OMPI_COMM_WORLD_SIZE", "1"}, {"WORLD_SIZE", "1"}}));
  for (const char* name : kWorldSizeVariables) {
    const std::string e = error_of([&] { require_single_process(env({{name, "8"}})); });
    EXPECT_NE(e.find(std::string("started as one of several processes (") + name + "=8)"), std::string::npos) << e;
    EXPECT_NE(e.find("multi-rank training lands (issue 15)"), std::string::npos) << e;
  }
}

}  // namespace
}  // namespace pgolf::backend
