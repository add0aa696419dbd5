#pragma once
// Host launchers of tests/kernels/intrinsics_kernels.cu (device or emulated pointers).
#include <cstddef>

void launch_shuffle(const int* in, int* out, int op, int arg, int width);  // op: 0 idx, 1 up, 2 down, 3 xor
void launch_vote(const int* pred, unsigned* out);  // 32 threads, 8 results each
void launch_block_sum(const float* in, float* out, int n, int block, bool missing_sync);
void launch_divergent_barrier(int* out);
void launch_exit_before_barrier(int* out);
void launch_bad_mask(int* out);
void launch_deadlock(int* out);
void launch_barrier_rounds(int* out, int threads, int rounds);
void launch_out_of_bounds(int* out, int n);  // writes out[0..n], one past the end
// Sums `bytes` of dynamic shared memory (bytes / 4 floats, each thread writes its stride and
// thread 0 adds them) into out[0], with one of two instantiations of the kernel (`variant` 0
// or 1, so that tests can keep one unraised); with `raise_to` > 0, first raises that kernel's
// dynamic shared-memory limit to `raise_to` bytes (cudaFuncSetAttribute), as the hardware needs
// beyond 48 KiB. Returns what cudaFuncSetAttribute returned (nothing is launched unless it
// succeeded); cudaSuccess without raise_to.
int launch_large_shared(float* out, int bytes, int variant, int raise_to);
