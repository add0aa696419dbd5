#pragma once
// Host-side view of the CUDA stack, filled by cuda_runtime_probe.cu (compiled by nvcc).
// Plain C++ types only, so the rest of pgolf never includes CUDA headers.
#include <string>
#include <vector>

namespace pgolf::cuda {

struct GpuInfo {
  std::string name;
  int compute_major = 0;
  int compute_minor = 0;
  unsigned long long memory_bytes = 0;
  int multiprocessors = 0;
  int l2_bytes = 0;
  unsigned long long shared_per_block_optin = 0;  // the most dynamic shared memory one block may opt in to
  int pci_bus = 0;
};

struct CudaProbe {
  int runtime_version = 0;          // e.g. 13000
  int driver_version = 0;           // 0 when no driver is installed
  std::string device_error;         // why no device could be used ("" when count > 0)
  std::vector<GpuInfo> gpus;
  unsigned long long cublaslt_version = 0;
  std::string cublaslt_status;      // result of creating and destroying a cuBLASLt handle
  int nccl_version = 0;
};

// Queries the runtime, the driver, every device, cuBLASLt and NCCL. Never throws and never
// aborts on a machine without a GPU: what is missing is reported in the fields.
CudaProbe probe_cuda();

}  // namespace pgolf::cuda
