#include "emu/cuda_runtime_double.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <sstream>
#include <string>
#include <utility>

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

// One allocation's own mapping: guard + bytes + guard, rounded up to whole pages.
struct Mapping {
  unsigned char* base = nullptr;
  std::size_t bytes = 0;
  Mapping() = default;
  explicit Mapping(std::size_t n) : bytes(n) {
    void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    base = p == MAP_FAILED ? nullptr : static_cast<unsigned char*>(p);
  }
  Mapping(Mapping&& o) noexcept : base(std::exchange(o.base, nullptr)), bytes(std::exchange(o.bytes, 0)) {}
  Mapping& operator=(Mapping&& o) noexcept {
    std::swap(base, o.base);
    std::swap(bytes, o.bytes);
    return *this;
  }
  ~Mapping() {
    if (base != nullptr) ::munmap(base, bytes);
  }
};

struct Allocation {
  std::uint64_t id = 0;
  std::size_t bytes = 0;
  Mapping block;  // guard + bytes + guard (+ the rest of the last page)
};

struct DeviceState {
  std::map<std::uintptr_t, Allocation> live;  // keyed by the user pointer
  std::uint64_t next_id = 1;
  cudaError_t last_error = cudaSuccess;
  int open_depth = 0;  // DeviceAccess scopes alive
  bool handler_installed = false;
  struct sigaction previous_handler {};
};

DeviceState& state() {
  static DeviceState d;
  return d;
}

cudaError_t record(cudaError_t e) {
  if (e != cudaSuccess) state().last_error = e;
  return e;
}

void set_access(const Allocation& al, bool open) {
  ::mprotect(al.block.base, al.block.bytes, open ? PROT_READ | PROT_WRITE : PROT_NONE);
}

// A host access to a protected allocation: name it, then let the fault kill the process
// (the default action, on return). Any other fault goes to the handler that was there before.
void on_segv(int, siginfo_t* info, void*) {
  const auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
  for (const auto& [user, al] : state().live) {
    const auto base = reinterpret_cast<std::uintptr_t>(al.block.base);
    if (addr < base || addr >= base + al.block.bytes) continue;
    char message[400];
    const long long offset = static_cast<long long>(addr) - static_cast<long long>(user);
    const int n = std::snprintf(message, sizeof message,
                                "SIMT emulator: host code accessed device memory at byte offset %lld of allocation #%llu "
                                "(%zu bytes at %p): device memory is reachable only through kernels, cudaMemcpy and "
                                "cudaMemset (on a GPU this access would fault or read garbage)\n",
                                offset, static_cast<unsigned long long>(al.id), al.bytes, reinterpret_cast<void*>(user));
    if (n > 0 && ::write(2, message, static_cast<std::size_t>(std::min(n, 399))) < 0) {
      // Nothing else to say: the process is about to die of the fault anyway.
    }
    struct sigaction fallback {};
    fallback.sa_handler = SIG_DFL;
    ::sigaction(SIGSEGV, &fallback, nullptr);
    return;
  }
  ::sigaction(SIGSEGV, &state().previous_handler, nullptr);
}

void install_fault_handler() {
  if (state().handler_installed) return;
  struct sigaction sa {};
  sa.sa_sigaction = &on_segv;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGSEGV, &sa, &state().previous_handler);
  state().handler_installed = true;
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
  const unsigned char* before_zone = al.block.base;
  const unsigned char* after_zone = al.block.base + kGuard + al.bytes;
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
  DeviceAccess open;
  for (const auto& [user, al] : state().live) check_one(user, al, after);
}

DeviceAccess::DeviceAccess() {
  if (state().open_depth++ == 0)
    for (const auto& [user, al] : state().live) set_access(al, true);
}

DeviceAccess::~DeviceAccess() {
  if (--state().open_depth == 0)
    for (const auto& [user, al] : state().live) set_access(al, false);
}

std::size_t live_allocations() { return state().live.size(); }

}  // namespace pgolf::emu

using pgolf::emu::record;
using pgolf::emu::state;

cudaError_t cudaMalloc(void** ptr, std::size_t bytes) {
  if (ptr == nullptr) return record(cudaErrorInvalidValue);
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t mapped = (bytes + 2 * pgolf::emu::kGuard + page - 1) / page * page;
  pgolf::emu::Allocation al;
  al.id = state().next_id++;
  al.bytes = bytes;
  al.block = pgolf::emu::Mapping(mapped);
  if (al.block.base == nullptr) return record(cudaErrorMemoryAllocation);
  unsigned char* const base = al.block.base;
  std::memset(base, pgolf::emu::kGuardByte, pgolf::emu::kGuard);
  std::memset(base + pgolf::emu::kGuard, pgolf::emu::kPoisonByte, bytes);
  std::memset(base + pgolf::emu::kGuard + bytes, pgolf::emu::kGuardByte, pgolf::emu::kGuard);
  pgolf::emu::install_fault_handler();
  if (state().open_depth == 0) pgolf::emu::set_access(al, false);
  void* user = base + pgolf::emu::kGuard;
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
  pgolf::emu::set_access(al, true);  // unmapped when `al` goes, whatever check_one finds
  pgolf::emu::check_one(user, al, "cudaFree");
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
  if (bytes == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr) return record(cudaErrorInvalidValue);
  if (const cudaError_t e = pgolf::emu::check_copy(dst, src, bytes, kind); e != cudaSuccess) return e;
  pgolf::emu::DeviceAccess open;
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
  return cudaMemcpy(dst, src, bytes, kind);
}

cudaError_t cudaMemset(void* ptr, int value, std::size_t bytes) {
  if (bytes == 0) return cudaSuccess;
  if (!pgolf::emu::is_device(ptr, bytes)) return record(cudaErrorInvalidValue);
  pgolf::emu::DeviceAccess open;
  std::memset(ptr, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* ptr, int value, std::size_t bytes, cudaStream_t) {
  return cudaMemset(ptr, value, bytes);
}

cudaError_t cudaMemGetInfo(std::size_t* free, std::size_t* total) {
  if (free == nullptr || total == nullptr) return record(cudaErrorInvalidValue);
  std::size_t used = 0;
  for (const auto& [user, al] : state().live) used += al.bytes;
  *total = pgolf::emu::kEmulatedDeviceBytes;
  *free = used < *total ? *total - used : 0;
  return cudaSuccess;
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

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int) { return cudaEventCreate(event); }

// Everything ran when it was issued: a recorded event is complete (so is an unrecorded one, as on
// the real runtime).
cudaError_t cudaEventQuery(cudaEvent_t event) {
  return event != nullptr ? cudaSuccess : record(cudaErrorInvalidResourceHandle);
}

// Pinned host memory is ordinary host memory here (outside every device allocation, so a copy
// that takes it for device memory is still caught).
cudaError_t cudaHostAlloc(void** ptr, std::size_t bytes, unsigned int) {
  if (ptr == nullptr) return record(cudaErrorInvalidValue);
  *ptr = std::malloc(bytes == 0 ? 1 : bytes);
  return *ptr != nullptr ? cudaSuccess : record(cudaErrorMemoryAllocation);
}

cudaError_t cudaFreeHost(void* ptr) {
  std::free(ptr);
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

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return record(cudaErrorInvalidValue);
  return pgolf::emu::set_dynamic_shared_limit(func, value) ? cudaSuccess : record(cudaErrorInvalidValue);
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
