// The CUDA backend of a build without the CUDA toolkit (see cuda_backend.hpp): there is none,
// and asking for it says so.
#include "backend/cuda/cuda_backend.hpp"
#include "common/error.hpp"

namespace pgolf::backend {

namespace {
constexpr const char* kWhy = "this binary was built without the CUDA toolkit (configure with -DPGOLF_CUDA=ON on a machine that has it)";
}

const CudaBackendInfo& cuda_backend_info() {
  static const CudaBackendInfo info = [] {
    CudaBackendInfo i;
    i.why_not = kWhy;
    return i;
  }();
  return info;
}

std::vector<std::string> cuda_report_lines() {
  return {"cuda: not compiled in (configure with -DPGOLF_CUDA=ON on a machine with the CUDA toolkit)"};
}

std::unique_ptr<Ops<float>> make_cuda_ops() { fail(ErrorKind::device, "CUDA backend: ", kWhy); }

}  // namespace pgolf::backend
