#pragma once
// The one header every kernel file includes (besides cuda_bf16.h / cuda_fp16.h). It lets the
// same source compile with nvcc for the GPU and with g++ against the SIMT host emulator
// (kernels/emu/, kernels/README.md), which the tests run on machines without a GPU.
//
//   PG_LAUNCH(kernel, grid, block, smem_bytes, stream, args...)  instead of kernel<<<...>>>(...)
//     (a template kernel is launched through a pointer: auto k = f<float, 4>; PG_LAUNCH(k, ...))
//   PG_DYNAMIC_SHARED(T, name)   instead of extern __shared__ T name[]  (T* name, 16-byte aligned)
//   __shared__ arrays, __syncthreads, warp shuffles/votes/reductions and atomics as usual.
//   Inline PTX only through the named wrappers at the end of this file (pg_mma_*,
//   pg_ldmatrix_*, pg_cp_async_*), each of which the emulator implements.
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
// (#undef first: a CUDA header included earlier defines them as attributes g++ ignores.)
#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __shared__
#undef __launch_bounds__
#undef __restrict__
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

// ----- named wrappers for inline PTX ---------------------------------------------------------------
// D = A B + C for one warp (mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32). Per lane,
// with g = lane / 4 and t = lane % 4: a[0] = A(g, 2t..2t+1), a[1] = A(g+8, 2t..), a[2] =
// A(g, 2t+8..), a[3] = A(g+8, 2t+8..) (two bf16 each, lower column in the low half);
// b[0] = B(2t..2t+1, g), b[1] = B(2t+8.., g); c and d: (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1).
// ldmatrix (.m8n8.b16, x1/x2/x4, optionally .trans): lanes 8i..8i+7 pass the addresses of
// the 8 rows (16 bytes each) of matrix i in shared memory; lane l receives in r[i] the
// elements (l / 4, 2 (l % 4)) and (l / 4, 2 (l % 4) + 1) of matrix i (of its transpose).
// cp.async (.cg, 16 bytes, shared <- global): completes only when a cp_async_wait<N> retires
// its commit group; __syncthreads does not wait for it.
#if defined(__CUDACC__)

__device__ __forceinline__ void pg_mma_m16n8k16_bf16(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                                                     const float (&c)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
}
__device__ __forceinline__ unsigned pg_shared_address(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void pg_ldmatrix_x1(unsigned (&r)[1], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(pg_shared_address(row)));
}
__device__ __forceinline__ void pg_ldmatrix_x2(unsigned (&r)[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(pg_shared_address(row)));
}
__device__ __forceinline__ void pg_ldmatrix_x4(unsigned (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(pg_shared_address(row)));
}
__device__ __forceinline__ void pg_ldmatrix_x2_trans(unsigned (&r)[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(pg_shared_address(row)));
}
__device__ __forceinline__ void pg_ldmatrix_x4_trans(unsigned (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(pg_shared_address(row)));
}
__device__ __forceinline__ void pg_cp_async_16(void* shared_dst, const void* global_src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(pg_shared_address(shared_dst)), "l"(global_src));
}
__device__ __forceinline__ void pg_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void pg_cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

#else

inline void pg_mma_m16n8k16_bf16(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2], const float (&c)[4],
                                 ::pgolf::emu::Location where = ::pgolf::emu::Location::current()) {
  ::pgolf::emu::mma_m16n8k16_bf16(d, a, b, c, where);
}
inline void pg_ldmatrix_x1(unsigned (&r)[1], const void* row, ::pgolf::emu::Location where = ::pgolf::emu::Location::current()) {
  ::pgolf::emu::ldmatrix(r, 1, false, row, where);
}
inline void pg_ldmatrix_x2(unsigned (&r)[2], const void* row, ::pgolf::emu::Location where = ::pgolf::emu::Location::current()) {
  ::pgolf::emu::ldmatrix(r, 2, false, row, where);
}
inline void pg_ldmatrix_x4(unsigned (&r)[4], const void* row, ::pgolf::emu::Location where = ::pgolf::emu::Location::current()) {
  ::pgolf::emu::ldmatrix(r, 4, false, row, where);
}
inline void pg_ldmatrix_x2_trans(unsigned (&r)[2], const void* row,
                                 ::pgolf::emu::Location where = ::pgolf::emu::Location::current()) {
  ::pgolf::emu::ldmatrix(r, 2, true, row, where);
}
inline void pg_ldmatrix_x4_trans(unsigned (&r)[4], const void* row,
                                 ::pgolf::emu::Location where = ::pgolf::emu::Location::current()) {
  ::pgolf::emu::ldmatrix(r, 4, true, row, where);
}
inline void pg_cp_async_16(void* shared_dst, const void* global_src) { ::pgolf::emu::cp_async(shared_dst, global_src, 16); }
inline void pg_cp_async_commit() { ::pgolf::emu::cp_async_commit(); }
template <int N>
void pg_cp_async_wait() {
  ::pgolf::emu::cp_async_wait(N);
}

#endif
