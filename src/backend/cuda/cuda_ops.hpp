#pragma once
// Internal to the CUDA backend: the constructor of its Ops<float>, shared by the real and the
// emulated variants of cuda_backend_*.cpp (everyone else uses cuda_backend.hpp).
#include <memory>
#include <string>

#include "backend/ops.hpp"

namespace pgolf::backend {

// The backend on the current device; `device` describes it in name().
std::unique_ptr<Ops<float>> create_cuda_ops(std::string device);

}  // namespace pgolf::backend
