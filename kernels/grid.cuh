#pragma once
// Launch-geometry helpers shared by the elementwise-style kernel files (include after
// portable.cuh): 256-thread blocks and grid-stride loops, so any element count fits the
// grid limits.
#include <cstddef>

namespace pgolf::kernels {

constexpr int kGridThreads = 256;

// Blocks for n elements, at least 1 and at most 65535 (the loops stride over the rest).
inline dim3 grid_for(std::size_t n) {
  const std::size_t blocks = (n + kGridThreads - 1) / kGridThreads;
  return dim3(static_cast<unsigned>(blocks == 0 ? 1 : (blocks < 65535 ? blocks : 65535)));
}

__device__ __forceinline__ std::size_t first_index() {
  return static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ std::size_t grid_stride() { return static_cast<std::size_t>(gridDim.x) * blockDim.x; }

}  // namespace pgolf::kernels
