#include "emu/runtime.hpp"

#include <algorithm>
#include <exception>
#include <map>
#include <memory>
#include <sstream>
#include <vector>

#include "emu/cuda_runtime_double.hpp"
#include "emu/fiber.hpp"

namespace pgolf::emu {

const char* schedule_name(Schedule s) {
  switch (s) {
    case Schedule::forward: return "forward";
    case Schedule::reverse: return "reverse";
    case Schedule::random: return "random";
  }
  return "?";
}

Settings& settings() {
  static Settings s;
  return s;
}

namespace {

std::string site(const Location& w) { return std::string(w.file_name()) + ":" + std::to_string(w.line()); }
// One source line; the file names of one translation unit are usually the same pointer.
bool same_site(const Location& a, const Location& b) {
  return a.line() == b.line() && (a.file_name() == b.file_name() || std::strcmp(a.file_name(), b.file_name()) == 0);
}

enum class State { runnable, at_barrier, at_warp, exited };

struct PendingCopy {
  void* dst;
  const void* src;
  std::size_t bytes;
};

struct EmuThread {
  uint3 idx{};
  std::vector<PendingCopy> cp_open;                 // cp.async not yet committed
  std::vector<std::vector<PendingCopy>> cp_groups;  // committed groups, oldest first
  int linear = 0;
  State state = State::runnable;
  Location waiting_at;  // the barrier or warp collective it waits in
  std::uint64_t result = 0;
  Fiber fiber;
};

struct WarpState {
  bool pending = false;
  WarpOp op = WarpOp::sync;
  unsigned mask = 0;
  unsigned arrived = 0;
  int width = 32;
  Location where;
  std::uint64_t value[32] = {};
  int arg[32] = {};
  const char* custom_name = nullptr;  // warp_custom
  WarpCompute custom = nullptr;
  void* data[32] = {};
};

// The block being run; only one exists at a time (blocks run one after another).
struct Block {
  const std::function<void()>* body = nullptr;
  const char* kernel = "";
  std::vector<std::unique_ptr<EmuThread>> threads;
  std::vector<WarpState> warps;
  int n = 0;
  int alive = 0;
  int current = -1;
  Fiber scheduler;
  std::exception_ptr error;
  // Barrier phase.
  int arrived = 0;
  Location barrier_at;
  int reduce_acc[3] = {0, 1, 0};  // count, and, or
  int reduce_result[3] = {0, 1, 0};
  std::vector<unsigned char> dynamic_smem;
  std::uint64_t rng = 0;
  // No runnable thread lies below `lowest` or above `highest` (kept by mark_runnable), so the
  // forward and reverse schedules find the next thread without rescanning the block.
  int lowest = 0, highest = -1;
  // The random schedule's runnable threads (a thread leaves it when picked: it only comes back
  // to the scheduler waiting or exited).
  std::vector<int> ready;
};

Block* g_block = nullptr;

// Emulated threads (and their mapped stacks) are kept between launches: mapping a stack per
// thread per launch cost more than running small kernels.
std::vector<std::unique_ptr<EmuThread>>& thread_pool() {
  static std::vector<std::unique_ptr<EmuThread>> pool;
  return pool;
}

// Hands a block's threads back to the pool when the launch ends, normally or by an error.
struct ReturnThreads {
  Block& b;
  ~ReturnThreads() {
    for (auto& t : b.threads) thread_pool().push_back(std::move(t));
    b.threads.clear();
  }
};

void mark_runnable(Block& b, EmuThread& t) {
  t.state = State::runnable;
  b.lowest = std::min(b.lowest, t.linear);
  b.highest = std::max(b.highest, t.linear);
  if (settings().schedule == Schedule::random) b.ready.push_back(t.linear);
}

[[noreturn]] void fail_here(const std::string& what) {
  Block& b = *g_block;
  const EmuThread& t = *b.threads[static_cast<std::size_t>(b.current)];
  std::ostringstream os;
  os << "SIMT emulator: kernel " << b.kernel << ", block (" << blockIdx.x << "," << blockIdx.y << "," << blockIdx.z
     << "), thread (" << t.idx.x << "," << t.idx.y << "," << t.idx.z << "): " << what;
  throw Error(os.str());
}

EmuThread& me() { return *g_block->threads[static_cast<std::size_t>(g_block->current)]; }

void wait(State s, Location where) {
  EmuThread& t = me();
  t.state = s;
  t.waiting_at = where;
  t.fiber.yield_to(g_block->scheduler);
}

void fiber_main(void* arg) {
  auto* t = static_cast<EmuThread*>(arg);
  Block& b = *g_block;
  t->fiber.started(b.scheduler);
  try {
    (*b.body)();
  } catch (...) {
    if (!b.error) b.error = std::current_exception();
  }
  t->state = State::exited;
  --b.alive;
  t->fiber.yield_to(b.scheduler, true);
  __builtin_unreachable();
}

std::uint64_t next_random(std::uint64_t& s) {
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

int pick_runnable(Block& b) {
  const Schedule sched = settings().schedule;
  if (sched == Schedule::random) {
    if (b.ready.empty()) return -1;
    const std::size_t k = next_random(b.rng) % b.ready.size();
    const int i = b.ready[k];
    b.ready[k] = b.ready.back();
    b.ready.pop_back();
    return i;
  }
  if (sched == Schedule::reverse) {
    for (; b.highest >= 0; --b.highest)
      if (b.threads[static_cast<std::size_t>(b.highest)]->state == State::runnable) return b.highest;
    b.lowest = b.n;
    return -1;
  }
  for (; b.lowest < b.n; ++b.lowest)
    if (b.threads[static_cast<std::size_t>(b.lowest)]->state == State::runnable) return b.lowest;
  b.highest = -1;
  return -1;
}

// Releases the barrier when every thread still running has arrived.
void try_release_barrier(Block& b) {
  if (b.arrived == 0 || b.arrived < b.alive) return;
  if (settings().strict && b.alive < b.n)
    for (const auto& t : b.threads)
      if (t->state == State::exited) {
        std::ostringstream os;
        os << "SIMT emulator: kernel " << b.kernel << ", block (" << blockIdx.x << "," << blockIdx.y << "," << blockIdx.z
           << "), thread (" << t->idx.x << "," << t->idx.y << "," << t->idx.z
           << ") exited while the other threads wait at __syncthreads at " << site(b.barrier_at)
           << " (strict mode: every thread of the block must reach every barrier)";
        throw Error(os.str());
      }
  for (int k = 0; k < 3; ++k) b.reduce_result[k] = b.reduce_acc[k];
  b.reduce_acc[0] = 0;
  b.reduce_acc[1] = 1;
  b.reduce_acc[2] = 0;
  b.arrived = 0;
  for (auto& t : b.threads)
    if (t->state == State::at_barrier) mark_runnable(b, *t);
}

[[noreturn]] void deadlock(Block& b) {
  std::ostringstream os;
  os << "SIMT emulator: kernel " << b.kernel << ", block (" << blockIdx.x << "," << blockIdx.y << "," << blockIdx.z
     << "): deadlock, no thread can continue:";
  int shown = 0;
  for (const auto& t : b.threads) {
    if (t->state == State::exited || t->state == State::runnable) continue;
    if (shown++ == 8) {
      os << " ...";
      break;
    }
    os << " thread (" << t->idx.x << "," << t->idx.y << "," << t->idx.z << ") waits at "
       << (t->state == State::at_barrier ? "__syncthreads" : "a warp collective") << " at " << site(t->waiting_at) << ";";
  }
  throw Error(os.str());
}

void run_block(Block& b) {
  b.lowest = b.n;
  b.highest = -1;
  b.ready.clear();
  for (auto& t : b.threads) {
    mark_runnable(b, *t);
    t->cp_open.clear();
    t->cp_groups.clear();
    t->fiber.reset(&fiber_main, t.get(), settings().stack_bytes);
  }
  for (auto& w : b.warps) w = WarpState{};
  b.alive = b.n;
  b.arrived = 0;
  b.error = nullptr;
  std::fill(b.dynamic_smem.begin(), b.dynamic_smem.end(), static_cast<unsigned char>(0xFF));
  while (b.alive > 0) {
    int i = pick_runnable(b);
    if (i < 0) {
      try_release_barrier(b);
      i = pick_runnable(b);
      if (i < 0) deadlock(b);
    }
    b.current = i;
    EmuThread& t = *b.threads[static_cast<std::size_t>(i)];
    threadIdx = t.idx;
    t.fiber.resume_from(b.scheduler);
    if (b.error) std::rethrow_exception(b.error);
    if (t.state == State::exited) {
      // A lane that leaves while its warp waits for it in a collective can never arrive.
      const WarpState& w = b.warps[static_cast<std::size_t>(t.linear / 32)];
      if (w.pending && (w.mask >> (t.linear % 32) & 1u) && !(w.arrived >> (t.linear % 32) & 1u)) {
        std::ostringstream os;
        os << "SIMT emulator: kernel " << b.kernel << ", thread (" << t.idx.x << "," << t.idx.y << "," << t.idx.z
           << ") exited without joining the warp collective at " << site(w.where) << " whose mask 0x" << std::hex
           << w.mask << " names it";
        throw Error(os.str());
      }
      try_release_barrier(b);
    }
  }
}

}  // namespace

unsigned char* dynamic_shared() {
  if (g_block == nullptr) throw Error("SIMT emulator: dynamic shared memory used outside a kernel");
  if (g_block->dynamic_smem.empty()) fail_here("uses dynamic shared memory but the launch gave 0 bytes");
  return g_block->dynamic_smem.data();
}

namespace {
std::map<const void*, std::size_t>& dynamic_shared_limits() {
  static std::map<const void*, std::size_t> limits;
  return limits;
}
}  // namespace

std::size_t dynamic_shared_limit(const void* entry) {
  const auto it = dynamic_shared_limits().find(entry);
  return it == dynamic_shared_limits().end() ? kDefaultDynamicShared : it->second;
}

bool set_dynamic_shared_limit(const void* entry, int bytes) {
  if (entry == nullptr || bytes < 0 || static_cast<std::size_t>(bytes) > kMaxDynamicSharedOptin) return false;
  dynamic_shared_limits()[entry] = static_cast<std::size_t>(bytes);
  return true;
}

void run_grid(const std::function<void()>& body, dim3 grid, dim3 block, std::size_t dynamic_smem, const char* kernel,
              const void* entry, Location where) {
  const std::uint64_t n = std::uint64_t{block.x} * block.y * block.z;
  auto bad = [&](const std::string& what) {
    throw Error("SIMT emulator: launch of " + std::string(kernel) + " at " + site(where) + ": " + what);
  };
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || n == 0) bad("empty grid or block");
  if (n > 1024) bad("a block of " + std::to_string(n) + " threads exceeds 1024");
  if (block.z > 64) bad("blockDim.z exceeds 64");
  if (grid.y > 65535 || grid.z > 65535) bad("gridDim.y and gridDim.z are limited to 65535");
  if (dynamic_smem > kMaxDynamicSharedOptin)
    bad("dynamic shared memory of " + std::to_string(dynamic_smem) + " bytes exceeds 227 KiB, the most a block can have");
  if (const std::size_t limit = dynamic_shared_limit(entry); dynamic_smem > limit)
    bad("dynamic shared memory of " + std::to_string(dynamic_smem) + " bytes exceeds the kernel's limit of " +
        std::to_string(limit) + " bytes" +
        (limit == kDefaultDynamicShared ? std::string(" (48 KiB unless raised)") : std::string()) +
        ": call cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, " +
        std::to_string(dynamic_smem) + ") before launching, as the hardware requires");
  if (g_block != nullptr) bad("kernels cannot launch kernels in the emulator");

  static std::uint64_t launches = 0;
  ++launches;
  DeviceAccess device_memory_open;  // kernels reach device memory; host code does not
  Block b;
  b.body = &body;
  b.kernel = kernel;
  b.n = static_cast<int>(n);
  b.threads.reserve(n);
  ReturnThreads give_back{b};
  for (unsigned z = 0; z < block.z; ++z)
    for (unsigned y = 0; y < block.y; ++y)
      for (unsigned x = 0; x < block.x; ++x) {
        std::unique_ptr<EmuThread> t;
        if (!thread_pool().empty()) {
          t = std::move(thread_pool().back());
          thread_pool().pop_back();
        } else {
          t = std::make_unique<EmuThread>();
        }
        t->idx = uint3{x, y, z};
        t->linear = static_cast<int>(b.threads.size());
        b.threads.push_back(std::move(t));
      }
  b.warps.resize((n + 31) / 32);
  b.dynamic_smem.resize(dynamic_smem);
  blockDim = block;
  gridDim = grid;
  g_block = &b;
  try {
    for (unsigned z = 0; z < grid.z; ++z)
      for (unsigned y = 0; y < grid.y; ++y)
        for (unsigned x = 0; x < grid.x; ++x) {
          blockIdx = uint3{x, y, z};
          b.rng = (settings().seed * 0x9E3779B97F4A7C15ull) ^ (launches << 32) ^
                  ((std::uint64_t{z} * grid.y + y) * grid.x + x) ^ 0x2545F4914F6CDD1Dull;
          if (b.rng == 0) b.rng = 1;
          run_block(b);
        }
  } catch (...) {
    g_block = nullptr;
    throw;
  }
  g_block = nullptr;
  // A kernel that wrote outside its buffers is named right away, not at the next free.
  check_device_memory(("kernel " + std::string(kernel) + " launched at " + site(where)).c_str());
}

void syncthreads(Location where) {
  if (g_block == nullptr) throw Error("SIMT emulator: __syncthreads outside a kernel");
  Block& b = *g_block;
  if (b.arrived == 0) {
    b.barrier_at = where;
  } else if (settings().strict && !same_site(b.barrier_at, where)) {
    fail_here("reached __syncthreads at " + site(where) + " while other threads wait at the one at " + site(b.barrier_at) +
              " (a divergent barrier)");
  }
  ++b.arrived;
  wait(State::at_barrier, where);
}

int syncthreads_reduce(int predicate, int kind, Location where) {
  Block& b = *g_block;
  b.reduce_acc[0] += predicate != 0 ? 1 : 0;
  b.reduce_acc[1] &= predicate != 0 ? 1 : 0;
  b.reduce_acc[2] |= predicate != 0 ? 1 : 0;
  syncthreads(where);
  return b.reduce_result[kind];
}

unsigned lane_id() { return static_cast<unsigned>(me().linear % 32); }

unsigned active_mask() {
  Block& b = *g_block;
  const int warp = me().linear / 32;
  unsigned m = 0;
  for (int l = 0; l < 32; ++l) {
    const int i = warp * 32 + l;
    if (i < b.n && b.threads[static_cast<std::size_t>(i)]->state != State::exited) m |= 1u << l;
  }
  return m;
}

namespace {

// The PTX rules of shfl.sync for lane `lane` in a segment of `width` lanes: the source lane,
// or -1 when the lane keeps its own value.
int shuffle_source(WarpOp op, int lane, int arg, int width) {
  const int segment = lane & ~(width - 1);
  switch (op) {
    case WarpOp::shfl_idx: return segment + (arg & (width - 1));
    case WarpOp::shfl_up: return (lane - segment) >= arg ? lane - arg : -1;
    case WarpOp::shfl_down: return (lane - segment) + arg < width ? lane + arg : -1;
    case WarpOp::shfl_xor: {
      const int src = lane ^ arg;
      return src < segment + width ? src : -1;  // later segments are out of reach
    }
    default: return -1;
  }
}

void complete(Block& b, WarpState& w, int warp) {
  const unsigned mask = w.mask;
  std::uint64_t results[32] = {};
  switch (w.op) {
    case WarpOp::sync: break;
    case WarpOp::shfl_idx:
    case WarpOp::shfl_up:
    case WarpOp::shfl_down:
    case WarpOp::shfl_xor:
      for (int l = 0; l < 32; ++l) {
        if (!(mask >> l & 1u)) continue;
        const int src = shuffle_source(w.op, l, w.arg[l], w.width);
        if (src < 0) {
          results[l] = w.value[l];
        } else if (src < 32 && (mask >> src & 1u)) {
          results[l] = w.value[src];
        } else {
          // PTX: reading a lane outside the mask gives an undefined value.
          std::ostringstream os;
          os << "SIMT emulator: kernel " << b.kernel << ", warp " << warp << ": lane " << l << " reads lane " << src
             << " in the shuffle at " << site(w.where) << ", which is not in its mask 0x" << std::hex << mask;
          throw Error(os.str());
        }
      }
      break;
    default: {
      std::uint64_t acc = 0;
      bool first = true;
      for (int l = 0; l < 32; ++l) {
        if (!(mask >> l & 1u)) continue;
        const std::uint64_t v = w.value[l];
        const auto u = static_cast<std::uint32_t>(v);
        const auto i = static_cast<std::int32_t>(u);
        switch (w.op) {
          case WarpOp::ballot: acc |= v != 0 ? (1ull << l) : 0; break;
          case WarpOp::any: acc |= v != 0 ? 1 : 0; break;
          case WarpOp::all: acc = first ? (v != 0) : (acc & (v != 0 ? 1u : 0u)); break;
          case WarpOp::reduce_add_u: acc = static_cast<std::uint32_t>(acc + u); break;
          case WarpOp::reduce_min_u: acc = first ? u : std::min<std::uint64_t>(acc, u); break;
          case WarpOp::reduce_max_u: acc = first ? u : std::max<std::uint64_t>(acc, u); break;
          case WarpOp::reduce_min_i:
            acc = first ? u : static_cast<std::uint32_t>(std::min(static_cast<std::int32_t>(acc), i));
            break;
          case WarpOp::reduce_max_i:
            acc = first ? u : static_cast<std::uint32_t>(std::max(static_cast<std::int32_t>(acc), i));
            break;
          case WarpOp::reduce_and: acc = first ? u : (acc & u); break;
          case WarpOp::reduce_or: acc |= u; break;
          case WarpOp::reduce_xor: acc ^= u; break;
          default: break;
        }
        first = false;
      }
      for (int l = 0; l < 32; ++l) results[l] = acc;
    }
  }
  for (int l = 0; l < 32; ++l) {
    if (!(mask >> l & 1u)) continue;
    EmuThread& t = *b.threads[static_cast<std::size_t>(warp * 32 + l)];
    t.result = results[l];
    if (t.state == State::at_warp) mark_runnable(b, t);
  }
  w.pending = false;
  w.arrived = 0;
}

// The first lane of `mask` (among the warp's first `lanes` lanes) that has exited, or -1.
// A collective checks it when its first lane arrives: a lane that exits later, while the
// collective waits for it, is reported by the scheduler (run_block).
int exited_lane(const Block& b, int warp, unsigned mask, int lanes) {
  for (int l = 0; l < lanes; ++l)
    if ((mask >> l & 1u) && b.threads[static_cast<std::size_t>(warp * 32 + l)]->state == State::exited) return l;
  return -1;
}

}  // namespace

std::uint64_t warp_collective(WarpOp op, unsigned mask, std::uint64_t value, int arg, int width, Location where) {
  if (g_block == nullptr) throw Error("SIMT emulator: a warp collective outside a kernel");
  Block& b = *g_block;
  EmuThread& t = me();
  const int warp = t.linear / 32, lane = t.linear % 32;
  WarpState& w = b.warps[static_cast<std::size_t>(warp)];
  if (!(mask >> lane & 1u))
    fail_here("calls the warp collective at " + site(where) + " with a mask that does not include its own lane " +
              std::to_string(lane));
  if (width < 1 || width > 32 || (width & (width - 1)) != 0)
    fail_here("shuffle width " + std::to_string(width) + " at " + site(where) + " is not a power of two in 1..32");
  const int lanes_in_warp = std::min(32, b.n - warp * 32);
  if (lanes_in_warp < 32 && (mask >> lanes_in_warp) != 0)
    fail_here("the mask at " + site(where) + " names lanes beyond the block's last thread");
  if (!w.pending) {
    if (const int l = exited_lane(b, warp, mask, lanes_in_warp); l >= 0)
      fail_here("the mask at " + site(where) + " names lane " + std::to_string(l) + ", which has exited");
    w.pending = true;
    w.op = op;
    w.mask = mask;
    w.width = width;
    w.where = where;
    w.arrived = 0;
  } else if (w.custom != nullptr || w.op != op || w.mask != mask ||
             (settings().strict && !same_site(w.where, where))) {
    fail_here("reaches the warp collective at " + site(where) + " while its warp waits in a different one at " +
              site(w.where) + " (divergent warp collectives or masks)");
  }
  w.value[lane] = value;
  w.arg[lane] = arg;
  w.arrived |= 1u << lane;
  if (w.arrived == w.mask) {
    complete(b, w, warp);  // the last lane to arrive finishes the collective for all
    return t.result;
  }
  wait(State::at_warp, where);
  return t.result;
}

void warp_custom(const char* what, void* lane_data, WarpCompute compute, Location where) {
  if (g_block == nullptr) throw Error(std::string("SIMT emulator: ") + what + " outside a kernel");
  Block& b = *g_block;
  EmuThread& t = me();
  const int warp = t.linear / 32, lane = t.linear % 32;
  if (b.n - warp * 32 < 32) fail_here(std::string(what) + " at " + site(where) + " needs a full warp of 32 threads");
  WarpState& w = b.warps[static_cast<std::size_t>(warp)];
  if (!w.pending) {
    if (const int l = exited_lane(b, warp, 0xffffffffu, 32); l >= 0)
      fail_here(std::string(what) + " at " + site(where) + " needs all 32 lanes, but lane " + std::to_string(l) +
                " has exited");
    w.pending = true;
    w.op = WarpOp::sync;
    w.custom = compute;
    w.custom_name = what;
    w.mask = 0xffffffffu;
    w.where = where;
    w.arrived = 0;
  } else if (w.custom != compute ||
             (settings().strict && !same_site(w.where, where))) {
    fail_here(std::string("reaches ") + what + " at " + site(where) + " while its warp waits in " +
              (w.custom_name != nullptr ? w.custom_name : "a warp collective") + " at " + site(w.where));
  }
  w.data[lane] = lane_data;
  w.arrived |= 1u << lane;
  if (w.arrived == 0xffffffffu) {
    w.custom(w.data);
    for (int l = 0; l < 32; ++l) {
      EmuThread& other = *b.threads[static_cast<std::size_t>(warp * 32 + l)];
      if (other.state == State::at_warp) mark_runnable(b, other);
    }
    w.pending = false;
    w.custom = nullptr;
    w.arrived = 0;
    return;
  }
  wait(State::at_warp, where);
}

void cp_async(void* shared_dst, const void* global_src, std::size_t bytes) {
  if (g_block == nullptr) throw Error("SIMT emulator: cp.async outside a kernel");
  me().cp_open.push_back(PendingCopy{shared_dst, global_src, bytes});
}

void cp_async_commit() {
  EmuThread& t = me();
  t.cp_groups.push_back(std::move(t.cp_open));
  t.cp_open.clear();
}

void cp_async_wait(int newest_groups_left_pending) {
  EmuThread& t = me();
  const auto keep = static_cast<std::size_t>(std::max(0, newest_groups_left_pending));
  while (t.cp_groups.size() > keep) {
    for (const PendingCopy& c : t.cp_groups.front()) std::memcpy(c.dst, c.src, c.bytes);
    t.cp_groups.erase(t.cp_groups.begin());
  }
}

}  // namespace pgolf::emu
