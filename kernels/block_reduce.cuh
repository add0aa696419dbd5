#pragma once
// Device helpers shared by kernel files: block-wide reductions of float64 values. Include
// after portable.cuh. Every thread of the block must call them (they contain barriers), with
// blockDim.x a multiple of 32 and `scratch` a __shared__ array of blockDim.x / 32 doubles.

namespace pgolf::kernels {

// The sum over the block, returned to every thread (warp shuffles, then the warps' partial
// sums added in warp order by every thread, so all threads hold the same bits).
__device__ __forceinline__ double block_sum(double v, double* scratch) {
  const int lane = static_cast<int>(threadIdx.x) % 32, warp = static_cast<int>(threadIdx.x) / 32;
  const int warps = static_cast<int>(blockDim.x) / 32;
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  double total = 0.0;
  for (int w = 0; w < warps; ++w) total += scratch[w];
  return total;
}

// The maximum over the block, returned to every thread.
__device__ __forceinline__ double block_max(double v, double* scratch) {
  const int lane = static_cast<int>(threadIdx.x) % 32, warp = static_cast<int>(threadIdx.x) / 32;
  const int warps = static_cast<int>(blockDim.x) / 32;
  for (int o = 16; o > 0; o /= 2) {
    const double other = __shfl_xor_sync(0xffffffffu, v, o);
    v = other > v ? other : v;
  }
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  double m = scratch[0];
  for (int w = 1; w < warps; ++w) m = scratch[w] > m ? scratch[w] : m;
  return m;
}

}  // namespace pgolf::kernels
