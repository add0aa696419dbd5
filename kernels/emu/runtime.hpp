#pragma once
// The SIMT host emulator (kernels/README.md): CUDA kernel source compiled by g++ runs on the
// CPU, one fiber per CUDA thread, blocks one after another. This header is what
// kernels/portable.cuh pulls in for the emulated build; it supplies the built-in variables,
// __syncthreads, warp collectives with the PTX rules, atomics, the launch and the dynamic
// shared memory. Nothing here is compiled by nvcc.
#include <driver_types.h>  // cudaStream_t, cudaError_t: plain host types
#include <vector_types.h>  // dim3, uint3, float4, ...

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <source_location>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace pgolf::emu {

// The order in which runnable threads of a block are run between synchronisation points.
// Kernels must give the same results under all three; a missing barrier usually does not.
enum class Schedule { forward, reverse, random };
const char* schedule_name(Schedule s);

struct Settings {
  Schedule schedule = Schedule::forward;
  std::uint64_t seed = 1;      // for Schedule::random (mixed with the launch and block index)
  bool strict = true;          // divergent barriers, early exits before a barrier, bad masks: errors
  std::size_t stack_bytes = 64 << 10;  // per emulated thread
};
Settings& settings();

// Everything the emulator detects: the message names the kernel, the thread and file:line.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ----- the launch --------------------------------------------------------------------------
using Location = std::source_location;

// Dynamic shared memory as the hardware allows it: 48 KiB per block by default, up to the
// limit a kernel raised with cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
// bytes) (at most kMaxDynamicSharedOptin, an H100's 227 KiB). A launch asking for more is an
// error naming the kernel and the call it lacks.
inline constexpr std::size_t kDefaultDynamicShared = std::size_t{48} << 10;
inline constexpr std::size_t kMaxDynamicSharedOptin = std::size_t{227} << 10;
// The opted-in limit of `entry` (a kernel's address), kDefaultDynamicShared when never raised.
std::size_t dynamic_shared_limit(const void* entry);
// What cudaFuncSetAttribute records; false when `bytes` is negative or above kMaxDynamicSharedOptin.
bool set_dynamic_shared_limit(const void* entry, int bytes);

// Runs body() as every thread of every block of the grid. `kernel` names the kernel in errors,
// `entry` is its address (for its shared-memory limit).
void run_grid(const std::function<void()>& body, dim3 grid, dim3 block, std::size_t dynamic_smem, const char* kernel,
              const void* entry, Location where);

template <class... Params, class... Args>
void launch(void (*kernel)(Params...), const char* name, Location where, dim3 grid, dim3 block,
            std::size_t dynamic_smem, cudaStream_t /*stream: launches are synchronous*/, Args&&... args) {
  // The arguments convert to the parameter types once, as a real launch copies them; each
  // thread then receives its own copies.
  std::tuple<std::decay_t<Params>...> params(static_cast<std::decay_t<Params>>(std::forward<Args>(args))...);
  run_grid([&] { std::apply(kernel, params); }, grid, block, dynamic_smem, name, reinterpret_cast<const void*>(kernel),
           where);
}

// The running block's dynamic shared memory (poisoned with 0xFF bytes before each block, so
// a read before any write shows up as NaN or -1).
unsigned char* dynamic_shared();

// ----- per-thread hooks called by the intrinsics below --------------------------------------
void syncthreads(Location where);
int syncthreads_reduce(int predicate, int kind, Location where);  // kind: 0 count, 1 and, 2 or

enum class WarpOp : int { sync, shfl_idx, shfl_up, shfl_down, shfl_xor, ballot, any, all, reduce_add_u, reduce_min_u,
                          reduce_max_u, reduce_min_i, reduce_max_i, reduce_and, reduce_or, reduce_xor };
// A warp collective: every lane of `mask` contributes `value` (raw bits) and `arg`; the last
// lane to arrive computes every lane's result (PTX semantics) and releases the others.
std::uint64_t warp_collective(WarpOp op, unsigned mask, std::uint64_t value, int arg, int width, Location where);
// A whole-warp operation on per-lane data (mma.sync, ldmatrix): every lane of a full warp
// passes a pointer to its own data; the last to arrive calls compute(lanes) with all 32.
using WarpCompute = void (*)(void* const* lanes);
void warp_custom(const char* what, void* lane_data, WarpCompute compute, Location where);
// cp.async with deferred completion: copies are queued per thread and performed only when a
// wait_group retires their group, so a missing wait leaves shared memory stale.
void cp_async(void* shared_dst, const void* global_src, std::size_t bytes);
void cp_async_commit();
void cp_async_wait(int newest_groups_left_pending);
unsigned active_mask();
unsigned lane_id();

// The tensor-core instructions behind portable.cuh's wrappers (emu/tensor_core.cpp), with
// the PTX ISA's fragment layouts.
void mma_m16n8k16_bf16(float* d, const unsigned* a, const unsigned* b, const float* c, Location where);
void ldmatrix(unsigned* r, int matrices, bool trans, const void* row, Location where);

}  // namespace pgolf::emu

// ----- CUDA built-ins for kernel source (global namespace, as in CUDA) ------------------------
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;
inline constexpr int warpSize = 32;

inline void __syncthreads(pgolf::emu::Location where = pgolf::emu::Location::current()) {
  pgolf::emu::syncthreads(where);
}
inline int __syncthreads_count(int p, pgolf::emu::Location where = pgolf::emu::Location::current()) {
  return pgolf::emu::syncthreads_reduce(p, 0, where);
}
inline int __syncthreads_and(int p, pgolf::emu::Location where = pgolf::emu::Location::current()) {
  return pgolf::emu::syncthreads_reduce(p, 1, where);
}
inline int __syncthreads_or(int p, pgolf::emu::Location where = pgolf::emu::Location::current()) {
  return pgolf::emu::syncthreads_reduce(p, 2, where);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, pgolf::emu::Location where = pgolf::emu::Location::current()) {
  pgolf::emu::warp_collective(pgolf::emu::WarpOp::sync, mask, 0, 0, 32, where);
}
inline unsigned __activemask() { return pgolf::emu::active_mask(); }

namespace pgolf::emu {
template <class T>
std::uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "warp shuffles move at most 64 bits");
  std::uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <class T>
T from_bits(std::uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}
}  // namespace pgolf::emu

template <class T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize,
              pgolf::emu::Location where = pgolf::emu::Location::current()) {
  return pgolf::emu::from_bits<T>(
      pgolf::emu::warp_collective(pgolf::emu::WarpOp::shfl_idx, mask, pgolf::emu::to_bits(var), src_lane, width, where));
}
template <class T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                 pgolf::emu::Location where = pgolf::emu::Location::current()) {
  return pgolf::emu::from_bits<T>(pgolf::emu::warp_collective(pgolf::emu::WarpOp::shfl_up, mask, pgolf::emu::to_bits(var),
                                                              static_cast<int>(delta), width, where));
}
template <class T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                   pgolf::emu::Location where = pgolf::emu::Location::current()) {
  return pgolf::emu::from_bits<T>(pgolf::emu::warp_collective(pgolf::emu::WarpOp::shfl_down, mask,
                                                              pgolf::emu::to_bits(var), static_cast<int>(delta), width, where));
}
template <class T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize,
                  pgolf::emu::Location where = pgolf::emu::Location::current()) {
  return pgolf::emu::from_bits<T>(
      pgolf::emu::warp_collective(pgolf::emu::WarpOp::shfl_xor, mask, pgolf::emu::to_bits(var), lane_mask, width, where));
}
inline unsigned __ballot_sync(unsigned mask, int pred, pgolf::emu::Location where = pgolf::emu::Location::current()) {
  return static_cast<unsigned>(pgolf::emu::warp_collective(pgolf::emu::WarpOp::ballot, mask, pred != 0, 0, 32, where));
}
inline int __any_sync(unsigned mask, int pred, pgolf::emu::Location where = pgolf::emu::Location::current()) {
  return static_cast<int>(pgolf::emu::warp_collective(pgolf::emu::WarpOp::any, mask, pred != 0, 0, 32, where));
}
inline int __all_sync(unsigned mask, int pred, pgolf::emu::Location where = pgolf::emu::Location::current()) {
  return static_cast<int>(pgolf::emu::warp_collective(pgolf::emu::WarpOp::all, mask, pred != 0, 0, 32, where));
}
inline unsigned __reduce_add_sync(unsigned mask, unsigned v, pgolf::emu::Location where = pgolf::emu::Location::current()) {
  return static_cast<unsigned>(pgolf::emu::warp_collective(pgolf::emu::WarpOp::reduce_add_u, mask, v, 0, 32, where));
}
inline unsigned __reduce_min_sync(unsigned mask, unsigned v, pgolf::emu::Location where = pgolf::emu::Location::current()) {
  return static_cast<unsigned>(pgolf::emu::warp_collective(pgolf::emu::WarpOp::reduce_min_u, mask, v, 0, 32, where));
}
inline unsigned __reduce_max_sync(unsigned mask, unsigned v, pgolf::emu::Location where = pgolf::emu::Location::current()) {
  return static_cast<unsigned>(pgolf::emu::warp_collective(pgolf::emu::WarpOp::reduce_max_u, mask, v, 0, 32, where));
}
inline int __reduce_min_sync(unsigned mask, int v, pgolf::emu::Location where = pgolf::emu::Location::current()) {
  return static_cast<int>(static_cast<std::uint32_t>(pgolf::emu::warp_collective(
      pgolf::emu::WarpOp::reduce_min_i, mask, static_cast<std::uint32_t>(v), 0, 32, where)));
}
inline int __reduce_max_sync(unsigned mask, int v, pgolf::emu::Location where = pgolf::emu::Location::current()) {
  return static_cast<int>(static_cast<std::uint32_t>(pgolf::emu::warp_collective(
      pgolf::emu::WarpOp::reduce_max_i, mask, static_cast<std::uint32_t>(v), 0, 32, where)));
}
inline unsigned __reduce_and_sync(unsigned mask, unsigned v, pgolf::emu::Location where = pgolf::emu::Location::current()) {
  return static_cast<unsigned>(pgolf::emu::warp_collective(pgolf::emu::WarpOp::reduce_and, mask, v, 0, 32, where));
}
inline unsigned __reduce_or_sync(unsigned mask, unsigned v, pgolf::emu::Location where = pgolf::emu::Location::current()) {
  return static_cast<unsigned>(pgolf::emu::warp_collective(pgolf::emu::WarpOp::reduce_or, mask, v, 0, 32, where));
}
inline unsigned __reduce_xor_sync(unsigned mask, unsigned v, pgolf::emu::Location where = pgolf::emu::Location::current()) {
  return static_cast<unsigned>(pgolf::emu::warp_collective(pgolf::emu::WarpOp::reduce_xor, mask, v, 0, 32, where));
}

// Atomics: emulated threads switch only at synchronisation points, so a plain
// read-modify-write is atomic here.
namespace pgolf::emu {
template <class T, class F>
T read_modify_write(T* p, F update) {
  const T old = *p;
  *p = static_cast<T>(update(old));
  return old;
}
}  // namespace pgolf::emu
template <class T>
T atomicAdd(T* p, T v) { return pgolf::emu::read_modify_write(p, [v](T o) { return o + v; }); }
template <class T>
T atomicSub(T* p, T v) { return pgolf::emu::read_modify_write(p, [v](T o) { return o - v; }); }
template <class T>
T atomicExch(T* p, T v) { return pgolf::emu::read_modify_write(p, [v](T) { return v; }); }
template <class T>
T atomicMin(T* p, T v) { return pgolf::emu::read_modify_write(p, [v](T o) { return v < o ? v : o; }); }
template <class T>
T atomicMax(T* p, T v) { return pgolf::emu::read_modify_write(p, [v](T o) { return v > o ? v : o; }); }
template <class T>
T atomicCAS(T* p, T compare, T v) { return pgolf::emu::read_modify_write(p, [=](T o) { return o == compare ? v : o; }); }
template <class T>
T atomicAnd(T* p, T v) { return pgolf::emu::read_modify_write(p, [v](T o) { return o & v; }); }
template <class T>
T atomicOr(T* p, T v) { return pgolf::emu::read_modify_write(p, [v](T o) { return o | v; }); }
template <class T>
T atomicXor(T* p, T v) { return pgolf::emu::read_modify_write(p, [v](T o) { return o ^ v; }); }
inline void __threadfence() {}
inline void __threadfence_block() {}
template <class T>
T __ldg(const T* p) {
  return *p;
}

// Bit and type-punning intrinsics.
inline unsigned __float_as_uint(float f) { return pgolf::emu::from_bits<unsigned>(pgolf::emu::to_bits(f)); }
inline float __uint_as_float(unsigned u) { return pgolf::emu::from_bits<float>(pgolf::emu::to_bits(u)); }
inline int __float_as_int(float f) { return pgolf::emu::from_bits<int>(pgolf::emu::to_bits(f)); }
inline float __int_as_float(int i) { return pgolf::emu::from_bits<float>(pgolf::emu::to_bits(i)); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
