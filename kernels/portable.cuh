#pragma once
// The one header every kernel file includes (besides cuda_bf16.h / cuda_fp16.h). It lets the
// same source compile with nvcc for the GPU and with g++ against the SIMT host emulator
// (kernels/emu/, kernels/README.md), which the tests run on machines without a GPU.
//
//   PG_LAUNCH(kernel, grid, block, smem_bytes, stream, args...)  instead of kernel<<<...>>>(...)
//     (a template kernel is launched through a pointer: auto k = f<float, 4>; PG_LAUNCH(k, ...))
//   PG_DYNAMIC_SHARED(T, name)   instead of extern __shared__ T name[]  (T* name, 16-byte aligned)
//   __shared__ arrays, __syncthreads, warp shuffles/votes/reductions and atomics as usual.
#if defined(__CUDACC__)

#include <cuda_runtime.h>

#define PG_LAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#define PG_DYNAMIC_SHARED(T, name)                          \
  extern __shared__ __align__(16) unsigned char pg_dynamic_smem_[]; \
  T* name = reinterpret_cast<T*>(pg_dynamic_smem_)

#else  // the emulated build: g++ compiles the kernel source as C++

// Before any CUDA header: kernels are plain functions; __shared__ variables become
// function-static storage, shared by the fibers of the block that is running (blocks run one
// after another, so each sees the block's own copy).
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __restrict__ __restrict

#include "emu/cuda_runtime_double.hpp"
#include "emu/runtime.hpp"

#define PG_LAUNCH(kernel, grid, block, smem, stream, ...) \
  ::pgolf::emu::launch((kernel), #kernel, ::pgolf::emu::Location::current(), (grid), (block), (smem), (stream), __VA_ARGS__)
#define PG_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(::pgolf::emu::dynamic_shared())

#endif
