#pragma once
// The CUDA model backend as the rest of pgolf sees it: plain C++, no CUDA headers.
//
// One binary links exactly one implementation of these functions (CMake picks it):
// - the real one (cuda_backend_real.cpp): kernels compiled by nvcc for sm_90a, the CUDA
//   runtime, cuBLASLt and NCCL; in `pgolf` when the CUDA toolkit was found;
// - the emulated one (cuda_backend_emu.cpp): the same kernel source compiled by g++ and run
//   by the SIMT emulator, with the host doubles of the runtime, cuBLASLt and NCCL
//   (kernels/emu); in `pgolf-emu`, so whole runs go through the CUDA code path without a GPU;
// - none (cuda_backend_none.cpp): a build without the CUDA toolkit.
// The backend class itself (cuda_ops.cpp) is the same object in the first two.
#include <memory>
#include <string>
#include <vector>

#include "backend/ops.hpp"

namespace pgolf::backend {

struct CudaBackendInfo {
  bool compiled = false;   // this binary has a CUDA backend (real or emulated)
  bool emulated = false;   // its kernels run on the SIMT emulator
  bool usable = false;     // a device is there (always, for the emulator)
  std::string build;       // how the backend was built, e.g. "CUDA 13.0, sm_90a, cuBLASLt, NCCL"
  std::string device;      // the device it runs on, when usable
  std::string why_not;     // why it cannot be used, when compiled but not usable
};

// Probes once (the first call) and remembers. Never throws; never aborts without a GPU.
const CudaBackendInfo& cuda_backend_info();

// Lines for `pgolf --version`: runtime, driver, devices, cuBLASLt, NCCL (or the emulator).
std::vector<std::string> cuda_report_lines();

// The CUDA backend on device 0. Error(device) when it is not usable (naming why).
std::unique_ptr<Ops<float>> make_cuda_ops();

}  // namespace pgolf::backend
