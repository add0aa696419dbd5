#pragma once
// Fibers for the SIMT emulator: each emulated CUDA thread runs on its own small stack and
// hands control back to the block scheduler at every barrier and warp collective. The
// context switch is a few instructions of x86-64 assembly (fiber.cpp): ucontext would make a
// system call per switch, an order of magnitude slower.
#include <cstddef>

namespace pgolf::emu {

class Fiber {
 public:
  using Entry = void (*)(void* arg);

  Fiber() = default;
  ~Fiber();
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  // Reserves `stack_bytes` of stack (plus a guard page below it) on first use and prepares
  // the fiber to run entry(arg) at its next resume. Entry must never return: it ends by
  // switching back for the last time.
  void reset(Entry entry, void* arg, std::size_t stack_bytes);

  // Switches from the scheduler's context into this fiber; and from this fiber back to the
  // scheduler (`finished`: for the last time, until the next reset()).
  void resume_from(Fiber& scheduler);
  void yield_to(Fiber& scheduler, bool finished = false);
  // The first thing a fiber's entry does (AddressSanitizer learns the scheduler's stack).
  void started(Fiber& scheduler);

 private:
  void* sp_ = nullptr;          // saved stack pointer while not running
  void* stack_ = nullptr;       // mapping: guard page + stack
  std::size_t mapped_ = 0;
  std::size_t stack_bytes_ = 0;
  unsigned valgrind_id_ = 0;  // the stack's registration with Valgrind (when built with its header)
  // AddressSanitizer's view of the stack being switched to (see fiber.cpp).
  void* asan_fake_stack_ = nullptr;
  const void* asan_bottom_ = nullptr;
  std::size_t asan_size_ = 0;
  friend void switch_context(Fiber& from, Fiber& to, bool from_finished);
};

void switch_context(Fiber& from, Fiber& to, bool from_finished);

}  // namespace pgolf::emu
