#include "emu/cuda_runtime_double.hpp"

#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <sstream>
#include <string>

#include "emu/runtime.hpp"

// The opaque handle types of driver_types.h.
struct CUstream_st {
  int unused = 0;
};
struct CUevent_st {
  std::chrono::steady_clock::time_point at{};
  bool recorded = false;
};

namespace pgolf::emu {

namespace {

constexpr std::size_t kGuard = 256;          // bytes of guard zone on each side
constexpr unsigned char kGuardByte = 0xA5;
constexpr unsigned char kPoisonByte = 0xFF;  // fresh device memory reads as NaN / -1

struct Allocation {
  std::uint64_t id = 0;
  std::size_t bytes = 0;
  std::unique_ptr<unsigned char[]> block;  // guard + bytes + guard
};

struct DeviceState {
  std::map<std::uintptr_t, Allocation> live;  // keyed by the user pointer
  std::uint64_t next_id = 1;
  cudaError_t last_error = cudaSuccess;
};

DeviceState& state() {
  static DeviceState d;
  return d;
}

cudaError_t record(cudaError_t e) {
  if (e != cudaSuccess) state().last_error = e;
  return e;
}

// True when [p, p + bytes) lies inside one live allocation.
bool is_device(const void* p, std::size_t bytes) {
  auto& live = state().live;
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  auto it = live.upper_bound(a);
  if (it == live.begin()) return false;
  --it;
  return a >= it->first && a + bytes <= it->first + it->second.bytes;
}

void check_one(std::uintptr_t user, const Allocation& al, const std::string& after) {
  const unsigned char* before_zone = al.block.get();
  const unsigned char* after_zone = al.block.get() + kGuard + al.bytes;
  for (std::size_t i = 0; i < kGuard; ++i) {
    const bool below = before_zone[i] != kGuardByte, above = after_zone[i] != kGuardByte;
    if (!below && !above) continue;
    std::ostringstream os;
    os << "SIMT emulator: device memory outside allocation #" << al.id << " (" << al.bytes << " bytes at 0x" << std::hex
       << user << std::dec << ") was written, ";
    if (above)
      os << "at byte offset " << al.bytes + i << ", past its end";
    else
      os << "at byte offset -" << (kGuard - i) << ", before its start";
    os << "; found after " << after;
    throw Error(os.str());
  }
}

// Which copy directions may read `src` and write `dst`.
cudaError_t check_copy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
  const bool dst_dev = is_device(dst, bytes), src_dev = is_device(src, bytes);
  bool ok = true;
  switch (kind) {
    case cudaMemcpyHostToDevice: ok = dst_dev && !src_dev; break;
    case cudaMemcpyDeviceToHost: ok = src_dev && !dst_dev; break;
    case cudaMemcpyDeviceToDevice: ok = src_dev && dst_dev; break;
    case cudaMemcpyHostToHost: ok = !src_dev && !dst_dev; break;
    case cudaMemcpyDefault: ok = true; break;
    default: return record(cudaErrorInvalidMemcpyDirection);
  }
  if (!ok && settings().strict) {
    std::ostringstream os;
    os << "SIMT emulator: cudaMemcpy of " << bytes << " bytes, kind " << static_cast<int>(kind) << ": the "
       << (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice ? "destination" : "source")
       << " range is not (entirely) inside one device allocation, or a host side is";
    throw Error(os.str());
  }
  return cudaSuccess;
}

}  // namespace

void check_device_memory(const char* after) {
  for (const auto& [user, al] : state().live) check_one(user, al, after);
}

std::size_t live_allocations() { return state().live.size(); }

}  // namespace pgolf::emu

using pgolf::emu::record;
using pgolf::emu::state;

cudaError_t cudaMalloc(void** ptr, std::size_t bytes) {
  if (ptr == nullptr) return record(cudaErrorInvalidValue);
  const std::size_t n = bytes == 0 ? 1 : bytes;
  pgolf::emu::Allocation al;
  al.id = state().next_id++;
  al.bytes = bytes;
  al.block.reset(new (std::nothrow) unsigned char[n + 2 * pgolf::emu::kGuard]);
  if (!al.block) return record(cudaErrorMemoryAllocation);
  std::memset(al.block.get(), pgolf::emu::kGuardByte, pgolf::emu::kGuard);
  std::memset(al.block.get() + pgolf::emu::kGuard, pgolf::emu::kPoisonByte, bytes);
  std::memset(al.block.get() + pgolf::emu::kGuard + bytes, pgolf::emu::kGuardByte, pgolf::emu::kGuard);
  void* user = al.block.get() + pgolf::emu::kGuard;
  state().live.emplace(reinterpret_cast<std::uintptr_t>(user), std::move(al));
  *ptr = user;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  auto& live = state().live;
  const auto it = live.find(reinterpret_cast<std::uintptr_t>(ptr));
  if (it == live.end()) return record(cudaErrorInvalidValue);
  // Released either way, so a damaged allocation is reported once, here or after its launch.
  const std::uintptr_t user = it->first;
  pgolf::emu::Allocation al = std::move(it->second);
  live.erase(it);
  pgolf::emu::check_one(user, al, "cudaFree");
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
  if (bytes == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr) return record(cudaErrorInvalidValue);
  if (const cudaError_t e = pgolf::emu::check_copy(dst, src, bytes, kind); e != cudaSuccess) return e;
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
  return cudaMemcpy(dst, src, bytes, kind);
}

cudaError_t cudaMemset(void* ptr, int value, std::size_t bytes) {
  if (bytes == 0) return cudaSuccess;
  if (!pgolf::emu::is_device(ptr, bytes)) return record(cudaErrorInvalidValue);
  std::memset(ptr, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* ptr, int value, std::size_t bytes, cudaStream_t) {
  return cudaMemset(ptr, value, bytes);
}

cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return record(cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : record(cudaErrorInvalidDevice); }

cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return record(cudaErrorInvalidValue);
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
  pgolf::emu::check_device_memory("cudaDeviceSynchronize");
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  if (stream == nullptr) return record(cudaErrorInvalidValue);
  *stream = new CUstream_st;
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  delete stream;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) {
  pgolf::emu::check_device_memory("cudaStreamSynchronize");
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  if (event == nullptr) return record(cudaErrorInvalidValue);
  *event = new CUevent_st;
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
  if (event == nullptr) return record(cudaErrorInvalidResourceHandle);
  event->at = std::chrono::steady_clock::now();
  event->recorded = true;
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  return event != nullptr && event->recorded ? cudaSuccess : record(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (ms == nullptr || start == nullptr || end == nullptr || !start->recorded || !end->recorded)
    return record(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(end->at - start->at).count();
  return cudaSuccess;
}

cudaError_t cudaGetLastError() {
  const cudaError_t e = state().last_error;
  state().last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() { return state().last_error; }

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    default: return "unrecognized error code (SIMT emulator)";
  }
}
