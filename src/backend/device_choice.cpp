#include "backend/device_choice.hpp"

#include <cstdlib>
#include <string>

#include "common/error.hpp"
#include "common/strings.hpp"

namespace pgolf::backend {

LocalRank local_rank_from(const Environment& getenv) {
  for (const char* name : kLocalRankVariables) {
    const char* value = getenv(name);
    if (value == nullptr) continue;
    char* end = nullptr;
    const long v = std::strtol(value, &end, 10);
    if (*value == 0 || *end != 0 || v < 0 || v >= 4096)
      fail(ErrorKind::usage, name, "=", value, ": expected the process's local rank, a whole number in [0, 4096)");
    return LocalRank{static_cast<int>(v), cat(name, "=", value)};
  }
  return {};
}

Environment process_environment() {
  return [](const char* name) -> const char* { return std::getenv(name); };
}

void require_single_process(const Environment& getenv) {
  for (const char* name : kWorldSizeVariables) {
    const char* value = getenv(name);
    if (value == nullptr || std::string(value) == "1" || *value == 0) continue;
    fail(ErrorKind::usage, "started as one of several processes (", name, "=", value,
         "), but pgolf trains and evaluates in one process until multi-rank training lands (issue 15); each rank "
         "would train the whole model alone and overwrite the others' outputs: run it without mpirun/torchrun");
  }
}

DeviceChoice choose_device(const LocalRank& local, int device_count) {
  const std::string from = local.source.empty() ? std::string("no launcher's local rank set") : cat("from ", local.source);
  if (device_count <= 0) fail(ErrorKind::device, "no CUDA device is visible");
  if (device_count == 1) return {0, cat("GPU 0 of 1 (", from, ")")};
  if (local.rank >= device_count)
    fail(ErrorKind::device, "local rank ", local.rank, " (", local.source, ") has no GPU of its own: ", device_count,
         " are visible; start at most ", device_count, " ranks per node, or give each rank one GPU (CUDA_VISIBLE_DEVICES)");
  return {local.rank, cat("GPU ", local.rank, " of ", device_count, " (", from, ")")};
}

}  // namespace pgolf::backend
