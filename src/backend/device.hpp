#pragma once
// What compute this binary has: the always-present CPU backend, and the CUDA backend when
// it was compiled in and a GPU is actually usable. `pgolf --version` prints this report.
#include <string>
#include <vector>

namespace pgolf {

struct DeviceReport {
  bool cuda_compiled = false;
  bool gpu_available = false;
  std::vector<std::string> lines;  // human-readable, one fact per line
};

DeviceReport probe_devices();

}  // namespace pgolf
