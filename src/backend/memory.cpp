#include "backend/memory.hpp"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>

#include "backend/ops.hpp"
#include "common/error.hpp"
#include "common/strings.hpp"

namespace pgolf::backend {

namespace {

// The first line of a small kernel file (cgroup and proc files), or "" when absent.
std::string first_line(const char* path) {
  std::ifstream f(path);
  std::string line;
  if (f) std::getline(f, line);
  return line;
}

bool parse_u64(std::string_view text, std::uint64_t& out) {
  text = trim(text);
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

}  // namespace

MemoryInfo host_memory_info() {
  MemoryInfo info;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  std::uint64_t value = 0;
  std::string unit;
  while (meminfo >> key >> value) {
    std::getline(meminfo, unit);
    if (key == "MemAvailable:") {
      info.available = value * 1024;
      info.known = true;
    } else if (key == "MemTotal:") {
      info.total = value * 1024;
    }
  }
  if (info.known) info.source = "/proc/meminfo MemAvailable";
  // A container's limit binds before the machine's memory does.
  // Usage includes the page cache (the shards just mapped, say), which the kernel reclaims
  // before it would refuse an allocation: its inactive part counts as room, as container
  // runtimes count it.
  struct Limit {
    const char* limit;
    const char* usage;
    const char* stat;
    const char* inactive_key;
    const char* name;
  };
  for (const Limit& l : {Limit{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.stat",
                               "inactive_file", "cgroup memory.max"},
                         Limit{"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes",
                               "/sys/fs/cgroup/memory/memory.stat", "total_inactive_file", "cgroup memory.limit_in_bytes"}}) {
    std::uint64_t limit = 0, usage = 0;
    if (!parse_u64(first_line(l.limit), limit) || !parse_u64(first_line(l.usage), usage)) continue;  // "max": none
    if (limit >= (std::uint64_t{1} << 60)) continue;  // v1 spells "no limit" as a huge number
    std::ifstream stat(l.stat);
    std::string stat_key;
    std::uint64_t v = 0;
    while (stat >> stat_key >> v)
      if (stat_key == l.inactive_key) {
        usage = usage > v ? usage - v : 0;
        break;
      }
    const std::uint64_t room = limit > usage ? limit - usage : 0;
    if (!info.known || room < info.available) {
      info.available = room;
      info.total = limit;
      info.source = cat(l.name, " less usage other than reclaimable cache");
      info.known = true;
    }
    break;
  }
  return info;
}

void MemoryPlan::add(std::string name, std::uint64_t bytes) {
  if (bytes > 0) parts_.push_back({std::move(name), bytes});
}

std::uint64_t MemoryPlan::total() const {
  std::uint64_t t = 0;
  for (const auto& p : parts_) t += p.bytes;
  return t;
}

std::string MemoryPlan::summary() const {
  std::string out;
  for (const auto& p : parts_) out += cat(out.empty() ? "" : " + ", p.name, " ", human_bytes(p.bytes));
  return cat(out, " = ", human_bytes(total()));
}

std::string check_memory_plan(const MemoryPlan& plan, Device& device, const std::string& knobs) {
  return check_memory_plan(plan, device.memory_info(), device.name(), knobs);
}

std::string check_memory_plan(const MemoryPlan& plan, const MemoryInfo& info, const std::string& where,
                              const std::string& knobs) {
  if (info.known && plan.total() > info.available)
    fail(ErrorKind::config, knobs, ": the memory plan needs ", human_bytes(plan.total()), " (", with_commas(plan.total()),
         " bytes: ", plan.summary(), ") on ", where, ", but only ", human_bytes(info.available), " (",
         with_commas(info.available), " bytes) are available (", info.source, "); lower these until it fits");
  return cat("memory: ", plan.summary(), " planned on ", where, "; ",
             info.known ? cat(human_bytes(info.available), " available (", info.source, ")")
                        : std::string("available memory unknown, not checked"));
}

void AllocationLedger::add(const void* p, std::uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  sizes_[p] = bytes;
  live_ += bytes;
  peak_ = std::max(peak_, live_);
}

void AllocationLedger::remove(const void* p) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (const auto it = sizes_.find(p); it != sizes_.end()) {
    live_ -= it->second;
    sizes_.erase(it);
  }
}

std::uint64_t AllocationLedger::live() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return live_;
}

std::uint64_t AllocationLedger::peak() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return peak_;
}

}  // namespace pgolf::backend
