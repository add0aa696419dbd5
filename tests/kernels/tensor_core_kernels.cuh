#pragma once
// Host launchers of tests/kernels/tensor_core_kernels.cu.
#include <cstdint>

// D (16 x 8, f32) = A (16 x 16 bf16 bits, row-major) B (16 x 8 bf16 bits, row-major) + C.
void launch_mma(const std::uint16_t* A, const std::uint16_t* B, const float* C, float* D, bool through_ldmatrix);
// Every lane but `exit_lane` runs an mma.sync (a planted bug: the warp cannot complete it).
void launch_mma_after_early_exit(float* D, int exit_lane);
// Copies 2 * threads * 16 bytes through shared memory with two cp.async commit groups;
// waits = 2, 1 or 0 groups retired before the barrier.
void launch_cp_async(const void* in, void* out, int threads, int waits);
