#pragma once
// Memory before allocation: what a command will allocate on its backend (the plan, added up from
// the same sizes the allocating code uses), what the backend has available, and a refusal that
// names the knobs to change when the plan does not fit, instead of std::bad_alloc halfway or the
// kernel's OOM killer once zero-filling touches overcommitted pages.
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace pgolf::backend {

class Device;

struct MemoryInfo {
  bool known = false;
  std::uint64_t available = 0;  // bytes a new allocation can use now
  std::uint64_t total = 0;
  std::string source;           // where the figure comes from ("/proc/meminfo MemAvailable", ...)
};

// Host memory: MemAvailable of /proc/meminfo, lowered to the room left under a cgroup memory
// limit (v2 memory.max, or v1 memory.limit_in_bytes) when the process runs in one.
MemoryInfo host_memory_info();

class MemoryPlan {
 public:
  struct Part {
    std::string name;
    std::uint64_t bytes = 0;
  };
  void add(std::string name, std::uint64_t bytes);
  std::uint64_t total() const;
  const std::vector<Part>& parts() const { return parts_; }
  // "parameters 4.69 MiB + gradients 4.69 MiB + activations 120 MiB = 129 MiB"
  std::string summary() const;

 private:
  std::vector<Part> parts_;
};

// Fails with Error(config) when the plan exceeds what `device` has available, naming `knobs`
// (the config keys that size the plan, e.g. "train.batch_tokens or model.*") and both figures;
// else returns the line to print: "memory: <summary> planned on <device>; <available> available
// (<source>)".
std::string check_memory_plan(const MemoryPlan& plan, Device& device, const std::string& knobs);
// The same against given figures (`where` names the memory: "host", a device).
std::string check_memory_plan(const MemoryPlan& plan, const MemoryInfo& info, const std::string& where,
                              const std::string& knobs);

// The bytes a backend holds through its allocate()/release() (what a memory plan predicts, and
// its peak_bytes()), one ledger for every backend. Thread-safe.
class AllocationLedger {
 public:
  void add(const void* p, std::uint64_t bytes);
  void remove(const void* p);  // a pointer it never saw is ignored
  std::uint64_t live() const;
  std::uint64_t peak() const;

 private:
  mutable std::mutex mutex_;
  std::unordered_map<const void*, std::uint64_t> sizes_;
  std::uint64_t live_ = 0, peak_ = 0;
};

}  // namespace pgolf::backend
