// Kernels that exercise the CUDA intrinsics the emulator implements; compiled by nvcc
// (sm_90a) and by g++ against the emulator. tests/kernels/test_emulator.cpp launches them
// and compares with what the PTX rules say.
#include "portable.cuh"
#include "intrinsics_kernels.cuh"

__global__ void shuffle_kernel(const int* in, int* out, int op, int arg, int width) {
  const int t = static_cast<int>(threadIdx.x);
  const int v = in[t];
  int r = 0;
  switch (op) {
    case 0: r = __shfl_sync(0xffffffffu, v, arg, width); break;
    case 1: r = __shfl_up_sync(0xffffffffu, v, static_cast<unsigned>(arg), width); break;
    case 2: r = __shfl_down_sync(0xffffffffu, v, static_cast<unsigned>(arg), width); break;
    default: r = __shfl_xor_sync(0xffffffffu, v, arg, width); break;
  }
  out[t] = r;
}

__global__ void vote_kernel(const int* pred, unsigned* out) {
  const int t = static_cast<int>(threadIdx.x);
  const int p = pred[t];
  out[t * 8 + 0] = __ballot_sync(0xffffffffu, p);
  out[t * 8 + 1] = static_cast<unsigned>(__any_sync(0xffffffffu, p));
  out[t * 8 + 2] = static_cast<unsigned>(__all_sync(0xffffffffu, p));
  out[t * 8 + 3] = __reduce_add_sync(0xffffffffu, static_cast<unsigned>(p));
  out[t * 8 + 4] = __reduce_max_sync(0xffffffffu, static_cast<unsigned>(p));
  out[t * 8 + 5] = static_cast<unsigned>(__reduce_min_sync(0xffffffffu, p - 5));
  out[t * 8 + 6] = __reduce_xor_sync(0xffffffffu, static_cast<unsigned>(p));
  __syncwarp();
  out[t * 8 + 7] = static_cast<unsigned>(__syncthreads_count(p));
}

// A block sum in shared memory: the tree with a barrier per level, then a warp shuffle.
// Planted bug 1 is kWithFirstBarrier = false: without the barrier after the stores, a
// thread may read its partner's slot before the partner has written it.
template <bool kWithFirstBarrier>
__global__ void block_sum_kernel(const float* in, float* out, int n) {
  PG_DYNAMIC_SHARED(float, partial);
  const int t = static_cast<int>(threadIdx.x);
  const int i = static_cast<int>(blockIdx.x * blockDim.x) + t;
  partial[t] = i < n ? in[i] : 0.0f;
  if (kWithFirstBarrier) __syncthreads();
  for (int s = static_cast<int>(blockDim.x) / 2; s >= 32; s /= 2) {
    if (t < s) partial[t] += partial[t + s];
    __syncthreads();
  }
  if (t < 32) {
    float v = partial[t];
    for (int o = 16; o > 0; o /= 2) v += __shfl_down_sync(0xffffffffu, v, static_cast<unsigned>(o));
    if (t == 0) atomicAdd(out, v);
  }
}

// The other planted bugs the emulator must catch.
// 2. A barrier inside a branch that only some threads take.
__global__ void divergent_barrier_kernel(int* out) {
  const int t = static_cast<int>(threadIdx.x);
  if (t % 2 == 0) {
    out[t] = 1;
    __syncthreads();
  } else {
    out[t] = 2;
    __syncthreads();
  }
}

// 3. Early exit before a barrier the others wait at.
__global__ void exit_before_barrier_kernel(int* out) {
  const int t = static_cast<int>(threadIdx.x);
  if (t == 3) return;
  out[t] = t;
  __syncthreads();
}

// 4. A full-warp shuffle with a lane missing from the mask's participants.
__global__ void bad_mask_kernel(int* out) {
  const int t = static_cast<int>(threadIdx.x);
  if (t != 5) out[t] = __shfl_sync(0xffffffffu, t, 0);
}

// 5. A barrier one lane waits at while its warp waits for it in __syncwarp: a deadlock.
__global__ void deadlock_kernel(int* out) {
  const int t = static_cast<int>(threadIdx.x);
  if (t == 0) __syncthreads();
  __syncwarp();
  out[t] = t;
}

// 6. An off-by-one write past the end of the output.
__global__ void out_of_bounds_kernel(int* out, int n) {
  const int t = static_cast<int>(threadIdx.x);
  if (t <= n) out[t] = t;  // should be t < n
}

// For the benchmark: `rounds` barriers per thread, so the time per barrier per thread is the
// cost of one fiber switch plus the scheduler's bookkeeping.
__global__ void barrier_rounds_kernel(int* out, int rounds) {
  const int t = static_cast<int>(threadIdx.x);
  int acc = 0;
  for (int r = 0; r < rounds; ++r) {
    acc += t ^ r;
    __syncthreads();
  }
  out[t] = acc;
}

void launch_shuffle(const int* in, int* out, int op, int arg, int width) {
  PG_LAUNCH(shuffle_kernel, dim3(1), dim3(32), 0, nullptr, in, out, op, arg, width);
}
void launch_vote(const int* pred, unsigned* out) { PG_LAUNCH(vote_kernel, dim3(1), dim3(32), 0, nullptr, pred, out); }
// Uses every byte of its dynamic shared memory: each thread fills a stride, thread 0 sums.
// (Two instantiations so the tests' opt-in of one cannot leak into the other.)
template <int kVariant>
__global__ void large_shared_kernel(float* out, int floats) {
  PG_DYNAMIC_SHARED(float, buffer);
  for (int i = static_cast<int>(threadIdx.x); i < floats; i += static_cast<int>(blockDim.x)) buffer[i] = 1.0f;
  __syncthreads();
  if (threadIdx.x == 0) {
    float sum = 0.0f;
    for (int i = 0; i < floats; ++i) sum += buffer[i];
    out[0] = sum;
  }
}

void launch_block_sum(const float* in, float* out, int n, int block, bool missing_sync) {
  const dim3 grid(static_cast<unsigned>((n + block - 1) / block));
  const std::size_t smem = static_cast<std::size_t>(block) * sizeof(float);
  auto kernel = missing_sync ? block_sum_kernel<false> : block_sum_kernel<true>;  // templates launch via a pointer
  PG_LAUNCH(kernel, grid, dim3(static_cast<unsigned>(block)), smem, nullptr, in, out, n);
}
int launch_large_shared(float* out, int bytes, int variant, int raise_to) {
  auto kernel = variant == 1 ? large_shared_kernel<1> : large_shared_kernel<0>;
  cudaError_t e = cudaSuccess;
  if (raise_to > 0)
    e = cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize, raise_to);
  if (e == cudaSuccess)
    PG_LAUNCH(kernel, dim3(1), dim3(128), static_cast<std::size_t>(bytes), nullptr, out, bytes / static_cast<int>(sizeof(float)));
  return static_cast<int>(e);
}
void launch_divergent_barrier(int* out) { PG_LAUNCH(divergent_barrier_kernel, dim3(1), dim3(64), 0, nullptr, out); }
void launch_exit_before_barrier(int* out) { PG_LAUNCH(exit_before_barrier_kernel, dim3(1), dim3(64), 0, nullptr, out); }
void launch_bad_mask(int* out) { PG_LAUNCH(bad_mask_kernel, dim3(1), dim3(32), 0, nullptr, out); }
void launch_out_of_bounds(int* out, int n) { PG_LAUNCH(out_of_bounds_kernel, dim3(1), dim3(64), 0, nullptr, out, n); }
void launch_barrier_rounds(int* out, int threads, int rounds) {
  PG_LAUNCH(barrier_rounds_kernel, dim3(1), dim3(static_cast<unsigned>(threads)), 0, nullptr, out, rounds);
}
void launch_deadlock(int* out) { PG_LAUNCH(deadlock_kernel, dim3(1), dim3(32), 0, nullptr, out); }
