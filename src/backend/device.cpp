#include "backend/device.hpp"

#include <thread>

#include "common/error.hpp"
#include "common/strings.hpp"

#ifdef PGOLF_WITH_CUDA
#include "backend/cuda/cuda_probe.hpp"
#endif

namespace pgolf {

namespace {
#ifdef PGOLF_WITH_CUDA
std::string version_text(int v) { return cat(v / 1000, ".", (v % 1000) / 10); }
#endif
}  // namespace

DeviceReport probe_devices() {
  DeviceReport r;
  r.lines.push_back(cat("cpu: ", std::thread::hardware_concurrency(), " hardware threads (reference backend)"));
#ifdef PGOLF_WITH_CUDA
  r.cuda_compiled = true;
  cuda::CudaProbe p = cuda::probe_cuda();
  r.gpu_available = !p.gpus.empty();
  r.lines.push_back(cat("cuda runtime: ", version_text(p.runtime_version), ", driver: ",
                        p.driver_version > 0 ? version_text(p.driver_version) : std::string("not installed")));
  if (r.gpu_available) {
    for (std::size_t i = 0; i < p.gpus.size(); ++i)
      r.lines.push_back(cat("gpu ", i, ": ", p.gpus[i].name, " (sm_", p.gpus[i].compute_major, p.gpus[i].compute_minor,
                            ", ", human_bytes(p.gpus[i].memory_bytes), ")"));
  } else {
    std::string why = p.driver_version == 0 ? std::string("no NVIDIA driver is installed") : p.device_error;
    r.lines.push_back(cat("gpu: none usable (", why,
                          "); this CUDA build runs on the CPU backend, and commands that require a GPU will fail"));
  }
  r.lines.push_back(cat("cublasLt: ", p.cublaslt_version, ", handle create/destroy: ", p.cublaslt_status));
  r.lines.push_back(cat("nccl: ", p.nccl_version / 10000, ".", (p.nccl_version / 100) % 100, ".", p.nccl_version % 100));
#else
  r.lines.push_back("cuda: not compiled in (configure with -DPGOLF_CUDA=ON on a machine with the CUDA toolkit)");
#endif
  return r;
}

}  // namespace pgolf
