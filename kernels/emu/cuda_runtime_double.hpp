#pragma once
// A host double of the CUDA runtime subset pgolf uses, for the emulated build only (the real
// build includes <cuda_runtime.h>). Same names, types and error codes as the real API;
// everything is synchronous. Device memory is host memory with poisoned contents and guard
// zones: a kernel or copy that writes outside an allocation is reported after the launch
// (or at the next synchronisation) with the allocation and the kernel named.
// The declarations are the real ones: the double defines functions of <cuda_runtime_api.h>,
// so any difference of signature is a compile error rather than a silent mismatch. The
// functions defined (kernels/emu/cuda_runtime_double.cpp): cudaMalloc, cudaFree,
// cudaMemcpy[Async], cudaMemset[Async], cudaMemGetInfo, cudaGetDeviceCount, cudaSetDevice, cudaGetDevice,
// cudaDeviceSynchronize, cudaStreamCreate/Destroy/Synchronize, cudaEventCreate[WithFlags]/Destroy/
// Record/Query/Synchronize/ElapsedTime, cudaHostAlloc/cudaFreeHost (ordinary host memory), cudaFuncSetAttribute (cudaFuncAttributeMaxDynamicSharedMemorySize
// only: the launch then allows that much, emu/runtime.hpp), cudaGetLastError, cudaPeekAtLastError, cudaGetErrorString.
// Calling any other runtime function fails to link in the emulated build.
#include <cuda_runtime_api.h>

#include <cstddef>

namespace pgolf::emu {

// Checks every live allocation's guard zones; throws Error naming the allocation (and
// `after`, e.g. the kernel just launched) when one was overwritten. Called after every
// launch and by the synchronising calls above.
void check_device_memory(const char* after);
// Live allocations and their bytes (tests use it to find leaks).
std::size_t live_allocations();
// The memory cudaMemGetInfo reports: an H100's 80 GiB, less the live allocations, so memory
// plans are checked against the device the emulator stands for (its allocations are host
// memory, which may run out first: cudaMalloc then fails with cudaErrorMemoryAllocation).
inline constexpr std::size_t kEmulatedDeviceBytes = std::size_t{80} << 30;

// Opens every device allocation to the emulator's own device-side work for its scope
// (nested scopes are fine): kernel launches, copies, the cuBLASLt and NCCL doubles.
class DeviceAccess {
 public:
  DeviceAccess();
  ~DeviceAccess();
  DeviceAccess(const DeviceAccess&) = delete;
  DeviceAccess& operator=(const DeviceAccess&) = delete;
};

}  // namespace pgolf::emu
