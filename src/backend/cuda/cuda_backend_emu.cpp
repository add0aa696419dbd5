// The emulated CUDA backend's probe and factory (see cuda_backend.hpp): linked into
// `pgolf-emu`, with the kernels compiled by g++ for the SIMT emulator and the host doubles of
// the CUDA runtime, cuBLASLt and NCCL (kernels/emu, kernels/README.md). There is no GPU; the
// device is the emulator, which is always there.
//
// Environment (read when the backend is made):
//   PGOLF_EMU_SCHEDULE = forward | reverse | random   the order of threads between barriers
//   PGOLF_EMU_SEED     = unsigned integer             the random schedule's seed
#include <cstdlib>
#include <string>

#include "backend/cuda/cuda_backend.hpp"
#include "backend/cuda/cuda_ops.hpp"
#include "common/error.hpp"
#include "common/strings.hpp"
#include "emu/runtime.hpp"

namespace pgolf::backend {

namespace {

emu::Schedule schedule_from_environment() {
  const char* s = std::getenv("PGOLF_EMU_SCHEDULE");
  if (s == nullptr || *s == 0) return emu::Schedule::forward;
  for (emu::Schedule v : {emu::Schedule::forward, emu::Schedule::reverse, emu::Schedule::random})
    if (std::string(s) == emu::schedule_name(v)) return v;
  fail(ErrorKind::usage, "PGOLF_EMU_SCHEDULE=", s, ": expected forward, reverse or random");
}

std::uint64_t seed_from_environment() {
  const char* s = std::getenv("PGOLF_EMU_SEED");
  if (s == nullptr || *s == 0) return 1;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s, &end, 10);
  if (*end != 0 || *s == '-') fail(ErrorKind::usage, "PGOLF_EMU_SEED=", s, ": expected an unsigned integer");
  return v;
}

}  // namespace

const CudaBackendInfo& cuda_backend_info() {
  static const CudaBackendInfo info = [] {
    CudaBackendInfo i;
    i.compiled = true;
    i.emulated = true;
    i.usable = true;
    i.build = "SIMT emulator: the kernel source compiled by g++, with host doubles of the CUDA runtime, cuBLASLt and NCCL";
    i.device = "SIMT emulator on the host CPU";
    return i;
  }();
  return info;
}

std::vector<std::string> cuda_report_lines() {
  return {"cuda: emulated (pgolf-emu): CUDA kernels run as host fibers on the SIMT emulator, one block at a time, "
          "with host doubles of the CUDA runtime, cuBLASLt and NCCL; no GPU is used",
          "cuda emulator: schedule from PGOLF_EMU_SCHEDULE (forward, reverse, random; default forward), seed from "
          "PGOLF_EMU_SEED"};
}

std::unique_ptr<Ops<float>> make_cuda_ops() {
  emu::settings().schedule = schedule_from_environment();
  emu::settings().seed = seed_from_environment();
  const std::string schedule = emu::schedule_name(emu::settings().schedule);
  return create_cuda_ops(cat(cuda_backend_info().device, ", ", schedule, " schedule",
                             emu::settings().schedule == emu::Schedule::random ? cat(", seed ", emu::settings().seed)
                                                                               : std::string()));
}

}  // namespace pgolf::backend
