#pragma once
// Which GPU a process uses. Under a launcher (mpirun, srun, torchrun) every rank of a node runs
// on the GPU of its local rank, read from the launcher's environment; a single process uses
// GPU 0. Plain C++ (no CUDA headers), so the rule is tested on machines without a GPU.
#include <functional>
#include <string>

namespace pgolf::backend {

struct LocalRank {
  int rank = 0;
  std::string source;  // "OMPI_COMM_WORLD_LOCAL_RANK=3", or "" when no launcher set one
};

// The launchers' local-rank variables, in the order they are consulted: MPI's (SPEC 8: pgolf is
// started by mpirun), then torchrun's LOCAL_RANK before Slurm's SLURM_LOCALID, since a torchrun
// started by srun is the inner launcher (its workers inherit the srun task's SLURM_LOCALID).
inline constexpr const char* kLocalRankVariables[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID",
                                                      "MV2_COMM_WORLD_LOCAL_RANK", "LOCAL_RANK", "SLURM_LOCALID"};

// The first of kLocalRankVariables that is set. Error(usage) naming the variable when its value
// is not a whole number in [0, 4096).
using Environment = std::function<const char*(const char*)>;
Environment process_environment();  // std::getenv
LocalRank local_rank_from(const Environment& getenv);

// The launchers' world-size variables (mpirun, MPICH's PMI, torchrun). pgolf runs as one
// process until multi-rank training lands (issue 15); started as several, each rank would train
// the whole model on its own and write the same outputs, so that is refused.
inline constexpr const char* kWorldSizeVariables[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "WORLD_SIZE"};
// Error(usage) naming the variable when a launcher started more than one process.
void require_single_process(const Environment& getenv);

struct DeviceChoice {
  int index = 0;
  std::string reason;  // "GPU 3 of 8, from OMPI_COMM_WORLD_LOCAL_RANK=3"
};

// The GPU for `local` among `device_count` visible ones: its local rank, or 0 when only one GPU
// is visible (a launcher that gives each rank its own CUDA_VISIBLE_DEVICES). Error(device) when
// none is visible or the local rank has no GPU of its own.
DeviceChoice choose_device(const LocalRank& local, int device_count);

}  // namespace pgolf::backend
