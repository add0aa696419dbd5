#include "emu/fiber.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define PGOLF_EMU_ASAN 1
#endif

// Valgrind must be told which memory is a stack, or it reports every switch as a wild stack
// pointer; the client requests are no-ops outside Valgrind.
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define PGOLF_EMU_VALGRIND 1
#endif

#if !defined(__x86_64__)
#error "the SIMT emulator's context switch is written for x86-64 (System V ABI)"
#endif

// pgolf_emu_switch(void** save_sp, void* load_sp): saves the callee-saved registers, MXCSR
// and the x87 control word on the current stack, stores the stack pointer in *save_sp, loads
// load_sp and restores the same set from there. pgolf_emu_fiber_start is where a fresh
// fiber's first switch "returns" to: it calls entry(arg) with entry in r13 and arg in r12.
asm(R"(
  .text
  .globl pgolf_emu_switch
  .type pgolf_emu_switch, @function
pgolf_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size pgolf_emu_switch, .-pgolf_emu_switch

  .globl pgolf_emu_fiber_start
  .type pgolf_emu_fiber_start, @function
pgolf_emu_fiber_start:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size pgolf_emu_fiber_start, .-pgolf_emu_fiber_start
  .section .note.GNU-stack,"",@progbits
  .text
)");

extern "C" void pgolf_emu_switch(void** save_sp, void* load_sp);
extern "C" void pgolf_emu_fiber_start();

namespace pgolf::emu {

Fiber::~Fiber() {
#if defined(PGOLF_EMU_VALGRIND)
  if (stack_ != nullptr) VALGRIND_STACK_DEREGISTER(valgrind_id_);
#endif
  if (stack_ != nullptr) ::munmap(stack_, mapped_);
}

void Fiber::reset(Entry entry, void* arg, std::size_t stack_bytes) {
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  if (stack_ == nullptr || stack_bytes_ != stack_bytes) {
    if (stack_ != nullptr) {
#if defined(PGOLF_EMU_VALGRIND)
      VALGRIND_STACK_DEREGISTER(valgrind_id_);
#endif
      ::munmap(stack_, mapped_);
    }
    stack_bytes_ = (stack_bytes + page - 1) / page * page;
    mapped_ = stack_bytes_ + page;
    stack_ = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (stack_ == MAP_FAILED) {
      stack_ = nullptr;
      throw std::runtime_error("SIMT emulator: cannot map a fiber stack");
    }
    // A guard page below the stack turns an overflow into a fault instead of corruption.
    ::mprotect(stack_, page, PROT_NONE);
#if defined(PGOLF_EMU_VALGRIND)
    valgrind_id_ = VALGRIND_STACK_REGISTER(static_cast<std::byte*>(stack_) + page, static_cast<std::byte*>(stack_) + mapped_);
#endif
  }
#if defined(PGOLF_EMU_ASAN)
  // Frames of an earlier use of this stack that never returned (a kernel stopped by an
  // error, the fiber's own entry) leave their redzones poisoned; start clean.
  ASAN_UNPOISON_MEMORY_REGION(static_cast<std::byte*>(stack_) + page, stack_bytes_);
#endif
  auto* top = static_cast<std::byte*>(stack_) + mapped_;  // page aligned, so 16-byte aligned
  // Frame read by pgolf_emu_switch: [mxcsr, fpucw][r15 r14 r13 r12 rbx rbp][return address].
  // The return address sits at top - 24 so that the start routine runs with rsp 16-byte
  // aligned at its call, as the ABI requires.
  auto* ret = reinterpret_cast<std::uint64_t*>(top - 24);
  *ret = reinterpret_cast<std::uint64_t>(&pgolf_emu_fiber_start);
  std::uint64_t* regs = ret - 6;  // r15 r14 r13 r12 rbx rbp, lowest address first
  std::memset(regs, 0, 6 * sizeof(std::uint64_t));
  regs[2] = reinterpret_cast<std::uint64_t>(entry);  // r13
  regs[3] = reinterpret_cast<std::uint64_t>(arg);    // r12
  auto* control = reinterpret_cast<std::uint32_t*>(regs - 1);
  control[0] = 0x1F80;  // MXCSR: all exceptions masked, round to nearest
  control[1] = 0x037F;  // x87 control word: the same defaults
  sp_ = control;
  asan_bottom_ = static_cast<std::byte*>(stack_) + page;
  asan_size_ = stack_bytes_;
}

void switch_context(Fiber& from, Fiber& to, bool from_finished) {
#if defined(PGOLF_EMU_ASAN)
  // A finished fiber passes no fake-stack slot, so ASan releases its fake frames.
  __sanitizer_start_switch_fiber(from_finished ? nullptr : &from.asan_fake_stack_, to.asan_bottom_, to.asan_size_);
#else
  (void)from_finished;
#endif
  pgolf_emu_switch(&from.sp_, to.sp_);
#if defined(PGOLF_EMU_ASAN)
  __sanitizer_finish_switch_fiber(from.asan_fake_stack_, nullptr, nullptr);
#endif
}

void Fiber::started(Fiber& scheduler) {
#if defined(PGOLF_EMU_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &scheduler.asan_bottom_, &scheduler.asan_size_);
#else
  (void)scheduler;
#endif
}

void Fiber::resume_from(Fiber& scheduler) { switch_context(scheduler, *this, false); }
void Fiber::yield_to(Fiber& scheduler, bool finished) { switch_context(*this, scheduler, finished); }

}  // namespace pgolf::emu
