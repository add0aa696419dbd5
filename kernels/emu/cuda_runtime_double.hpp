#pragma once
// A host double of the CUDA runtime subset pgolf uses, for the emulated build only (the real
// build includes <cuda_runtime.h>). Same names, types and error codes as the real API;
// everything is synchronous. Device memory is host memory with poisoned contents and guard
// zones: a kernel or copy that writes outside an allocation is reported after the launch
// (or at the next synchronisation) with the allocation and the kernel named.
#include <driver_types.h>
#include <vector_types.h>

#include <cstddef>

// ----- memory ---------------------------------------------------------------------------------
cudaError_t cudaMalloc(void** ptr, std::size_t bytes);
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* ptr, int value, std::size_t bytes);
cudaError_t cudaMemsetAsync(void* ptr, int value, std::size_t bytes, cudaStream_t stream = nullptr);

// ----- devices, streams, events, errors ---------------------------------------------------------
cudaError_t cudaGetDeviceCount(int* count);  // 1: the emulator
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorString(cudaError_t error);

namespace pgolf::emu {

// Checks every live allocation's guard zones; throws Error naming the allocation (and
// `after`, e.g. the kernel just launched) when one was overwritten. Called after every
// launch and by the synchronising calls above.
void check_device_memory(const char* after);
// Live allocations and their bytes (tests use it to find leaks).
std::size_t live_allocations();

}  // namespace pgolf::emu
