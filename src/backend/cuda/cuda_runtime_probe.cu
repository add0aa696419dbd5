// The CUDA toolchain's first real translation unit: queries the runtime and driver, lists
// GPUs, creates and destroys a cuBLASLt handle and asks NCCL for its version. It exists so
// that CI compiles (sm_90a, warnings as errors) and links the whole CUDA stack from day one.
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include "backend/cuda/cuda_probe.hpp"

namespace pgolf::cuda {

CudaProbe probe_cuda() {
  CudaProbe p;
  cudaRuntimeGetVersion(&p.runtime_version);
  if (cudaDriverGetVersion(&p.driver_version) != cudaSuccess) p.driver_version = 0;

  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    p.device_error = cudaGetErrorString(err);
    count = 0;
    cudaGetLastError();  // clear the sticky error so later queries are not confused by it
  } else if (count == 0) {
    p.device_error = "no CUDA device found";
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    p.gpus.push_back(GpuInfo{prop.name, prop.major, prop.minor, static_cast<unsigned long long>(prop.totalGlobalMem),
                             prop.multiProcessorCount, prop.l2CacheSize,
                             static_cast<unsigned long long>(prop.sharedMemPerBlockOptin), prop.pciBusID});
  }

  p.cublaslt_version = static_cast<unsigned long long>(cublasLtGetVersion());
  cublasLtHandle_t handle = nullptr;
  cublasStatus_t status = cublasLtCreate(&handle);
  if (status == CUBLAS_STATUS_SUCCESS) {
    status = cublasLtDestroy(handle);
    p.cublaslt_status = status == CUBLAS_STATUS_SUCCESS ? "ok" : cublasLtGetStatusString(status);
  } else {
    p.cublaslt_status = cublasLtGetStatusString(status);
  }

  int nccl = 0;
  if (ncclGetVersion(&nccl) == ncclSuccess) p.nccl_version = nccl;
  return p;
}

}  // namespace pgolf::cuda
