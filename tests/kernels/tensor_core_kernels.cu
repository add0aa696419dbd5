// Kernels for the tensor-core and async-copy wrappers of portable.cuh (one warp each),
// compiled by nvcc and by g++ against the emulator; tests/kernels/test_emulator.cpp checks
// them against a reference GEMM and the cp.async group rules.
#include <cstdint>

#include "portable.cuh"
#include "tensor_core_kernels.cuh"

namespace {

__device__ __forceinline__ unsigned pack(std::uint16_t lo, std::uint16_t hi) {
  return static_cast<unsigned>(lo) | (static_cast<unsigned>(hi) << 16);
}

// Fragments loaded element by element, as the PTX ISA lays them out.
__global__ void mma_direct_kernel(const std::uint16_t* A, const std::uint16_t* B, const float* C, float* D) {
  const int lane = static_cast<int>(threadIdx.x), g = lane / 4, t = lane % 4;
  unsigned a[4], b[2];
  float c[4], d[4];
  a[0] = pack(A[g * 16 + 2 * t], A[g * 16 + 2 * t + 1]);
  a[1] = pack(A[(g + 8) * 16 + 2 * t], A[(g + 8) * 16 + 2 * t + 1]);
  a[2] = pack(A[g * 16 + 2 * t + 8], A[g * 16 + 2 * t + 9]);
  a[3] = pack(A[(g + 8) * 16 + 2 * t + 8], A[(g + 8) * 16 + 2 * t + 9]);
  b[0] = pack(B[(2 * t) * 8 + g], B[(2 * t + 1) * 8 + g]);  // B is k x n, row-major
  b[1] = pack(B[(2 * t + 8) * 8 + g], B[(2 * t + 9) * 8 + g]);
  c[0] = C[g * 8 + 2 * t];
  c[1] = C[g * 8 + 2 * t + 1];
  c[2] = C[(g + 8) * 8 + 2 * t];
  c[3] = C[(g + 8) * 8 + 2 * t + 1];
  pg_mma_m16n8k16_bf16(d, a, b, c);
  D[g * 8 + 2 * t] = d[0];
  D[g * 8 + 2 * t + 1] = d[1];
  D[(g + 8) * 8 + 2 * t] = d[2];
  D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

// The usual pattern of real kernels: A through ldmatrix.x4, B (k x n, row-major) through
// ldmatrix.x2.trans, from shared memory.
__global__ void mma_ldmatrix_kernel(const std::uint16_t* A, const std::uint16_t* B, const float* C, float* D) {
  __shared__ __align__(16) std::uint16_t sa[16 * 16];
  __shared__ __align__(16) std::uint16_t sb[16 * 8];
  const int lane = static_cast<int>(threadIdx.x), g = lane / 4, t = lane % 4;
  for (int i = lane; i < 256; i += 32) sa[i] = A[i];
  for (int i = lane; i < 128; i += 32) sb[i] = B[i];
  __syncwarp();
  unsigned a[4], b[2];
  pg_ldmatrix_x4(a, &sa[(lane % 16) * 16 + (lane / 16) * 8]);
  pg_ldmatrix_x2_trans(b, &sb[(lane % 16) * 8]);
  float c[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t], C[(g + 8) * 8 + 2 * t + 1]};
  float d[4];
  pg_mma_m16n8k16_bf16(d, a, b, c);
  D[g * 8 + 2 * t] = d[0];
  D[g * 8 + 2 * t + 1] = d[1];
  D[(g + 8) * 8 + 2 * t] = d[2];
  D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

// Two commit groups of 16-byte copies (first and second half of `in`); `waits` selects how
// many groups are retired before the barrier: 2 (wait_group 0), 1 (wait_group 1) or 0 (the
// planted bug: no wait at all).
__global__ void cp_async_kernel(const float4* in, float4* out, int waits) {
  PG_DYNAMIC_SHARED(float4, staged);
  const int t = static_cast<int>(threadIdx.x), n = static_cast<int>(blockDim.x);
  pg_cp_async_16(&staged[t], &in[t]);
  pg_cp_async_commit();
  pg_cp_async_16(&staged[n + t], &in[n + t]);
  pg_cp_async_commit();
  if (waits == 2) pg_cp_async_wait<0>();
  if (waits == 1) pg_cp_async_wait<1>();
  __syncthreads();
  out[t] = staged[t];
  out[n + t] = staged[n + t];
}

// A lane that leaves before the whole-warp mma.sync: the warp can never complete it.
__global__ void mma_after_early_exit_kernel(float* D, int exit_lane) {
  const int lane = static_cast<int>(threadIdx.x);
  if (lane == exit_lane) return;
  const unsigned a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
  const float c[4] = {0, 0, 0, 0};
  float d[4];
  pg_mma_m16n8k16_bf16(d, a, b, c);
  D[lane] = d[0];
}

}  // namespace

void launch_mma_after_early_exit(float* D, int exit_lane) {
  PG_LAUNCH(mma_after_early_exit_kernel, dim3(1), dim3(32), 0, nullptr, D, exit_lane);
}

void launch_mma(const std::uint16_t* A, const std::uint16_t* B, const float* C, float* D, bool through_ldmatrix) {
  auto kernel = through_ldmatrix ? mma_ldmatrix_kernel : mma_direct_kernel;
  PG_LAUNCH(kernel, dim3(1), dim3(32), 0, nullptr, A, B, C, D);
}

void launch_cp_async(const void* in, void* out, int threads, int waits) {
  PG_LAUNCH(cp_async_kernel, dim3(1), dim3(static_cast<unsigned>(threads)),
            2 * static_cast<std::size_t>(threads) * sizeof(float4), nullptr, static_cast<const float4*>(in),
            static_cast<float4*>(out), waits);
}
