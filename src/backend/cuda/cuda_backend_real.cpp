// The real CUDA backend's probe and factory (see cuda_backend.hpp): linked into `pgolf` when
// the CUDA toolkit was found, with the nvcc-built kernels and the CUDA libraries.
#include <cuda_runtime_api.h>

#include "backend/cuda/cuda_backend.hpp"
#include "backend/cuda/cuda_ops.hpp"
#include "backend/cuda/cuda_probe.hpp"
#include "common/error.hpp"
#include "common/strings.hpp"
#include "common/version.hpp"

namespace pgolf::backend {

namespace {

std::string version_text(int v) { return cat(v / 1000, ".", (v % 1000) / 10); }

const cuda::CudaProbe& probe() {
  static const cuda::CudaProbe p = cuda::probe_cuda();
  return p;
}

std::string gpu_text(const cuda::GpuInfo& g) {
  return cat(g.name, " (sm_", g.compute_major, g.compute_minor, ", ", human_bytes(g.memory_bytes), ")");
}

}  // namespace

const CudaBackendInfo& cuda_backend_info() {
  static const CudaBackendInfo info = [] {
    const cuda::CudaProbe& p = probe();
    CudaBackendInfo i;
    i.compiled = true;
    i.build = std::string(build_info().cuda);
    i.usable = !p.gpus.empty();
    if (i.usable)
      i.device = gpu_text(p.gpus[0]);
    else
      i.why_not = p.driver_version == 0 ? std::string("no NVIDIA driver is installed") : p.device_error;
    return i;
  }();
  return info;
}

std::vector<std::string> cuda_report_lines() {
  const cuda::CudaProbe& p = probe();
  std::vector<std::string> lines;
  lines.push_back(cat("cuda runtime: ", version_text(p.runtime_version), ", driver: ",
                      p.driver_version > 0 ? version_text(p.driver_version) : std::string("not installed")));
  if (!p.gpus.empty()) {
    for (std::size_t i = 0; i < p.gpus.size(); ++i) lines.push_back(cat("gpu ", i, ": ", gpu_text(p.gpus[i])));
  } else {
    lines.push_back(cat("gpu: none usable (", cuda_backend_info().why_not,
                        "); this CUDA build runs on the CPU backend, and commands that require a GPU will fail"));
  }
  lines.push_back(cat("cublasLt: ", p.cublaslt_version, ", handle create/destroy: ", p.cublaslt_status));
  lines.push_back(cat("nccl: ", p.nccl_version / 10000, ".", (p.nccl_version / 100) % 100, ".", p.nccl_version % 100));
  return lines;
}

std::unique_ptr<Ops<float>> make_cuda_ops() {
  const CudaBackendInfo& info = cuda_backend_info();
  if (!info.usable) fail(ErrorKind::device, "CUDA backend: no usable GPU (", info.why_not, ")");
  const cudaError_t e = cudaSetDevice(0);
  if (e != cudaSuccess) fail(ErrorKind::device, "CUDA backend: cannot select GPU 0: ", cudaGetErrorString(e));
  return create_cuda_ops(info.device);
}

}  // namespace pgolf::backend
