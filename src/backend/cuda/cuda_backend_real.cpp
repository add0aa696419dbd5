// The real CUDA backend's probe and factory (see cuda_backend.hpp): linked into `pgolf` when
// the CUDA toolkit was found, with the nvcc-built kernels and the CUDA libraries.
//
// The device: the GPU of the process's local rank (backend/device_choice.hpp), which must be a
// Hopper GPU (compute capability 9.0, the H100's and H200's: the kernels are built for
// sm_90a) for which this binary holds code. What is wrong is said once, in `why_not`, and
// `pgolf --version` lists every GPU with the properties the kernels depend on.
#include <cuda_runtime_api.h>

#include "backend/cuda/cuda_backend.hpp"
#include "backend/cuda/cuda_ops.hpp"
#include "backend/cuda/cuda_probe.hpp"
#include "backend/device_choice.hpp"
#include "common/error.hpp"
#include "common/strings.hpp"
#include "common/version.hpp"
#include "elementwise.cuh"

namespace pgolf::backend {

namespace {

// sm_90a code runs on compute capability 9.0 alone (wgmma, TMA, 227 KiB of shared memory per
// block): neither older GPUs nor newer ones (10.x, 12.x) can run it.
constexpr int kRequiredMajor = 9;

std::string version_text(int v) { return cat(v / 1000, ".", (v % 1000) / 10); }

const cuda::CudaProbe& probe() {
  static const cuda::CudaProbe p = cuda::probe_cuda();
  return p;
}

std::string gpu_text(const cuda::GpuInfo& g) {
  return cat(g.name, " (sm_", g.compute_major, g.compute_minor, ", ", g.multiprocessors, " SMs, ",
             human_bytes(g.memory_bytes), ", L2 ", human_bytes(static_cast<std::uint64_t>(g.l2_bytes)), ", ",
             human_bytes(g.shared_per_block_optin), " shared memory per block, PCI bus ", g.pci_bus, ")");
}

struct Selected {
  bool usable = false;
  int index = 0;
  std::string device;   // gpu_text and how it was chosen
  std::string why_not;
};

// The local rank's GPU, checked for what the kernels need. Never throws.
Selected select() {
  const cuda::CudaProbe& p = probe();
  Selected s;
  if (p.gpus.empty()) {
    s.why_not = p.driver_version == 0 ? std::string("no NVIDIA driver is installed") : p.device_error;
    return s;
  }
  try {
    const DeviceChoice choice = choose_device(local_rank_from(process_environment()), static_cast<int>(p.gpus.size()));
    s.index = choice.index;
    const cuda::GpuInfo& g = p.gpus[static_cast<std::size_t>(choice.index)];
    s.device = cat(gpu_text(g), ", ", choice.reason);
    if (g.compute_major != kRequiredMajor) {
      s.why_not = cat("GPU ", choice.index, " is ", g.name, " of compute capability ", g.compute_major, ".",
                      g.compute_minor, "; pgolf's kernels are built for sm_90a and need compute capability 9.0 "
                      "(Hopper: H100, H200)");
      return s;
    }
    if (const cudaError_t e = cudaSetDevice(choice.index); e != cudaSuccess) {
      s.why_not = cat("cannot select GPU ", choice.index, ": ", cudaGetErrorString(e));
      cudaGetLastError();
      return s;
    }
    if (const cudaError_t e = kernels::check_kernel_image(); e != cudaSuccess) {
      s.why_not = cat("this binary holds no kernel code for GPU ", choice.index, " (", g.name, ", sm_",
                      g.compute_major, g.compute_minor, "): ", cudaGetErrorString(e), " (built for ",
                      build_info().cuda, ")");
      cudaGetLastError();
      return s;
    }
    s.usable = true;
  } catch (const Error& e) {
    s.why_not = e.what();
  }
  return s;
}

const Selected& selected() {
  static const Selected s = select();
  return s;
}

}  // namespace

const CudaBackendInfo& cuda_backend_info() {
  static const CudaBackendInfo info = [] {
    const Selected& s = selected();
    CudaBackendInfo i;
    i.compiled = true;
    i.build = std::string(build_info().cuda);
    i.usable = s.usable;
    if (s.usable)
      i.device = s.device;
    else
      i.why_not = s.why_not;
    return i;
  }();
  return info;
}

std::vector<std::string> cuda_report_lines() {
  const cuda::CudaProbe& p = probe();
  std::vector<std::string> lines;
  lines.push_back(cat("cuda runtime: ", version_text(p.runtime_version), ", driver: ",
                      p.driver_version > 0 ? version_text(p.driver_version) : std::string("not installed")));
  for (std::size_t i = 0; i < p.gpus.size(); ++i) lines.push_back(cat("gpu ", i, ": ", gpu_text(p.gpus[i])));
  const CudaBackendInfo& info = cuda_backend_info();
  if (info.usable) {
    lines.push_back(cat("cuda backend: ", info.device));
  } else {
    lines.push_back(cat("gpu: none usable (", info.why_not,
                        "); this CUDA build runs on the CPU backend, and commands that require a GPU will fail"));
  }
  lines.push_back(cat("cublasLt: ", p.cublaslt_version, ", handle create/destroy: ", p.cublaslt_status));
  lines.push_back(cat("nccl: ", p.nccl_version / 10000, ".", (p.nccl_version / 100) % 100, ".", p.nccl_version % 100));
  return lines;
}

std::unique_ptr<Ops<float>> make_cuda_ops() {
  const CudaBackendInfo& info = cuda_backend_info();
  if (!info.usable) fail(ErrorKind::device, "CUDA backend: no usable GPU (", info.why_not, ")");
  const int index = selected().index;
  const cudaError_t e = cudaSetDevice(index);
  if (e != cudaSuccess) fail(ErrorKind::device, "CUDA backend: cannot select GPU ", index, ": ", cudaGetErrorString(e));
  return create_cuda_ops(info.device);
}

}  // namespace pgolf::backend
