// The SIMT host emulator (kernels/emu/): intrinsic semantics against the PTX ISA's rules,
// results independent of the schedule, and the planted bugs it must catch. Every test runs
// under the three schedules (forward, reverse, seeded random).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <ostream>
#include <string>
#include <vector>

#include "emu/cuda_runtime_double.hpp"
#include "emu/runtime.hpp"
#include "kernels/emu_errors.hpp"
#include "kernels/intrinsics_kernels.cuh"
#include "kernels/tensor_core_kernels.cuh"

namespace pgolf::emu {

// gtest (and ctest's test names) print a schedule by its name, not its bytes.
void PrintTo(Schedule s, std::ostream* os) { *os << schedule_name(s); }

namespace {

class Emulator : public ::testing::TestWithParam<Schedule> {
 protected:
  void SetUp() override {
    saved_ = settings();
    settings().schedule = GetParam();
    settings().seed = 12345;
    settings().strict = true;
  }
  void TearDown() override { settings() = saved_; }
  Settings saved_;
};

// What the PTX ISA says shfl.sync returns to `lane` (every lane participating), written
// from the ISA's pseudocode: the segment is [lane - lane % width, + width).
int expected_shuffle(const std::vector<int>& v, int op, int lane, int arg, int width) {
  const int first = lane / width * width, last = first + width - 1;
  int src = lane;
  bool in_range = true;
  switch (op) {
    case 0: src = first + arg % width; break;
    case 1: src = lane - arg; in_range = src >= first; break;
    case 2: src = lane + arg; in_range = src <= last; break;
    default: src = lane ^ arg; in_range = src <= last; break;
  }
  return in_range ? v[static_cast<std::size_t>(src)] : v[static_cast<std::size_t>(lane)];
}

TEST_P(Emulator, ShufflesFollowThePtxRulesForEveryVariantAndWidth) {
  std::vector<int> in(32), out(32);
  for (int i = 0; i < 32; ++i) in[static_cast<std::size_t>(i)] = 1000 + 7 * i;
  const char* names[] = {"idx", "up", "down", "xor"};
  for (int op = 0; op < 4; ++op)
    for (int width : {1, 2, 4, 8, 16, 32})
      for (int arg : {0, 1, 3, 5, 16, 31}) {
        launch_shuffle(in.data(), out.data(), op, arg, width);
        for (int lane = 0; lane < 32; ++lane)
          ASSERT_EQ(out[static_cast<std::size_t>(lane)], expected_shuffle(in, op, lane, arg, width))
              << names[op] << " width " << width << " arg " << arg << " lane " << lane;
      }
}

TEST_P(Emulator, VotesAndReductionsCombineEveryLane) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<int> pred(32);
    for (auto& p : pred) p = static_cast<int>(rng() % 3);  // 0, 1 or 2
    if (trial == 0) std::fill(pred.begin(), pred.end(), 1);
    if (trial == 1) std::fill(pred.begin(), pred.end(), 0);
    std::vector<unsigned> out(32 * 8);
    launch_vote(pred.data(), out.data());
    unsigned ballot = 0, add = 0, mx = 0, xr = 0;
    int mn = 1 << 30, any = 0, all = 1, count = 0;
    for (int l = 0; l < 32; ++l) {
      const int p = pred[static_cast<std::size_t>(l)];
      ballot |= p != 0 ? 1u << l : 0u;
      any |= p != 0;
      all &= p != 0;
      add += static_cast<unsigned>(p);
      mx = std::max(mx, static_cast<unsigned>(p));
      mn = std::min(mn, p - 5);
      xr ^= static_cast<unsigned>(p);
      count += p != 0;
    }
    for (int l = 0; l < 32; ++l) {
      const unsigned* r = out.data() + l * 8;
      ASSERT_EQ(r[0], ballot);
      ASSERT_EQ(r[1], static_cast<unsigned>(any));
      ASSERT_EQ(r[2], static_cast<unsigned>(all));
      ASSERT_EQ(r[3], add);
      ASSERT_EQ(r[4], mx);
      ASSERT_EQ(static_cast<int>(r[5]), mn);
      ASSERT_EQ(r[6], xr);
      ASSERT_EQ(static_cast<int>(r[7]), count);
    }
  }
}

TEST_P(Emulator, ABlockSumWithItsBarriersIsExactUnderEverySchedule) {
  for (int n : {1, 255, 256, 1000, 4097}) {
    std::vector<float> x(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) x[static_cast<std::size_t>(i)] = static_cast<float>(i % 17);  // exact in float
    float want = 0;
    for (float v : x) want += v;
    for (int block : {64, 256}) {
      float got = 0;
      launch_block_sum(x.data(), &got, n, block, false);
      EXPECT_EQ(got, want) << n << " values, blocks of " << block;
    }
  }
}

// Planted bug 1: without the barrier after the stores, a thread reads its partner's slot
// before the partner has written it; dynamic shared memory is poisoned (0xFF bytes, a NaN)
// at the start of every block, so the sum goes wrong. The forward schedule runs each thread
// to its first barrier in order, so readers (low threads) run before writers (high ones);
// random schedules interleave them. (The reverse schedule runs the writers first and hides
// this particular race, which is why the suite runs all three.)
TEST(EmulatorBugs, AMissingSyncthreadsIsCaughtUnderForwardAndRandomSchedules) {
  const Settings saved = settings();
  std::vector<float> x(1024, 1.0f);
  float correct = 0;
  launch_block_sum(x.data(), &correct, 1024, 256, false);
  ASSERT_EQ(correct, 1024.0f);
  settings().schedule = Schedule::forward;
  float got = 0;
  launch_block_sum(x.data(), &got, 1024, 256, true);
  EXPECT_NE(got, correct) << "forward schedule";
  settings().schedule = Schedule::random;
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    settings().seed = seed;
    got = 0;
    launch_block_sum(x.data(), &got, 1024, 256, true);
    EXPECT_NE(got, correct) << "random schedule, seed " << seed;
  }
  settings() = saved;
}

// Planted bug 2: threads of one block wait at two different __syncthreads.
TEST_P(Emulator, ADivergentBarrierIsCaughtWithBothSites) {
  std::vector<int> out(64);
  const std::string e = error_of([&] { launch_divergent_barrier(out.data()); });
  EXPECT_NE(e.find("divergent barrier"), std::string::npos) << e;
  EXPECT_NE(e.find("intrinsics_kernels.cu:"), std::string::npos) << e;
  EXPECT_NE(e.find("divergent_barrier_kernel"), std::string::npos) << e;
}

TEST_P(Emulator, AnExitBeforeABarrierIsCaughtInStrictMode) {
  std::vector<int> out(64);
  const std::string e = error_of([&] { launch_exit_before_barrier(out.data()); });
  EXPECT_NE(e.find("thread (3,0,0) exited while the other threads wait at __syncthreads"), std::string::npos) << e;
  settings().strict = false;  // hardware lets exited threads count as arrived
  EXPECT_EQ(error_of([&] { launch_exit_before_barrier(out.data()); }), "");
}

TEST_P(Emulator, AShuffleWhoseMaskNamesAMissingLaneIsCaught) {
  std::vector<int> out(32);
  const std::string e = error_of([&] { launch_bad_mask(out.data()); });
  EXPECT_NE(e.find("thread (5,0,0) exited without joining the warp collective"), std::string::npos) << e;
}

TEST_P(Emulator, ADeadlockNamesWhereEachThreadWaits) {
  std::vector<int> out(32);
  const std::string e = error_of([&] { launch_deadlock(out.data()); });
  EXPECT_NE(e.find("deadlock"), std::string::npos) << e;
  EXPECT_NE(e.find("waits at __syncthreads"), std::string::npos) << e;
  EXPECT_NE(e.find("waits at a warp collective"), std::string::npos) << e;
}

// Whole-warp operations (mma.sync, ldmatrix) need all 32 lanes: one that has left, before or
// after the others arrive, is named, not reported as a bare deadlock.
TEST_P(Emulator, AWholeWarpOperationMissingAnExitedLaneIsCaught) {
  std::vector<float> out(32);
  for (int exit_lane : {0, 31}) {
    const std::string e = error_of([&] { launch_mma_after_early_exit(out.data(), exit_lane); });
    // Which message depends on the schedule: did the lane leave before the first arrival?
    const std::string n = std::to_string(exit_lane);
    EXPECT_TRUE(e.find("but lane " + n + " has exited") != std::string::npos ||
                e.find("thread (" + n + ",0,0) exited without joining") != std::string::npos)
        << e;
    EXPECT_EQ(e.find("deadlock"), std::string::npos) << e;
  }
}

// Planted bug 3 in the normal build: device memory from the cudaMalloc double has guard
// zones, checked after every launch, so the write one past the end is named at once.
TEST_P(Emulator, AnOutOfBoundsWriteToDeviceMemoryIsCaughtAfterTheLaunch) {
  int* out = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&out), 40 * sizeof(int)), cudaSuccess);
  const std::string e = error_of([&] { launch_out_of_bounds(out, 40); });
  EXPECT_NE(e.find("outside allocation #"), std::string::npos) << e;
  EXPECT_NE(e.find("(160 bytes at 0x"), std::string::npos) << e;
  EXPECT_NE(e.find("at byte offset 160, past its end"), std::string::npos) << e;
  EXPECT_NE(e.find("kernel out_of_bounds_kernel launched at"), std::string::npos) << e;
  // The same kernel within bounds passes, and the allocation is released cleanly.
  int* wide = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&wide), 41 * sizeof(int)), cudaSuccess);
  EXPECT_THROW(cudaFree(out), Error) << "its guard is still damaged: freeing reports it again";
  EXPECT_EQ(error_of([&] { launch_out_of_bounds(wide, 40); }), "");
  EXPECT_EQ(cudaFree(wide), cudaSuccess);
}

// As on the hardware: up to 48 KiB of dynamic shared memory per block by default; more only
// after cudaFuncSetAttribute raised the kernel's limit, and never more than 227 KiB.
TEST(Emulator, DynamicSharedMemoryBeyond48KiBNeedsTheKernelsOptIn) {
  float sum = 0.0f;
  EXPECT_EQ(error_of([&] { launch_large_shared(&sum, 48 << 10, 0, 0); }), "");
  EXPECT_EQ(sum, static_cast<float>((48 << 10) / 4));
  const std::string e = error_of([&] { launch_large_shared(&sum, 64 << 10, 0, 0); });
  EXPECT_NE(e.find("launch of kernel"), std::string::npos) << e;
  EXPECT_NE(e.find("65536 bytes exceeds the kernel's limit of 49152 bytes (48 KiB unless raised)"), std::string::npos) << e;
  EXPECT_NE(e.find("cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 65536)"), std::string::npos) << e;
  sum = 0.0f;
  int status = -1;
  EXPECT_EQ(error_of([&] { status = launch_large_shared(&sum, 64 << 10, 1, 64 << 10); }), "");
  EXPECT_EQ(status, static_cast<int>(cudaSuccess));
  EXPECT_EQ(sum, static_cast<float>((64 << 10) / 4));
  // The limit raised to 64 KiB stays (a later launch without the call uses it) but does not
  // allow 96 KiB; raising one kernel leaves the other at 48 KiB; no limit goes past 227 KiB.
  EXPECT_EQ(error_of([&] { launch_large_shared(&sum, 64 << 10, 1, 0); }), "");
  const std::string beyond = error_of([&] { launch_large_shared(&sum, 96 << 10, 1, 0); });
  EXPECT_NE(beyond.find("98304 bytes exceeds the kernel's limit of 65536 bytes:"), std::string::npos) << beyond;
  EXPECT_NE(error_of([&] { launch_large_shared(&sum, 64 << 10, 0, 0); }).find("limit of 49152 bytes"), std::string::npos);
  EXPECT_EQ(launch_large_shared(&sum, 228 << 10, 1, 228 << 10), static_cast<int>(cudaErrorInvalidValue));
  cudaGetLastError();
  EXPECT_NE(error_of([&] { launch_large_shared(&sum, 96 << 10, 1, 0); }).find("limit of 65536"), std::string::npos)
      << "a refused raise leaves the limit as it was";
}

TEST(CudaRuntimeDouble, CopiesCheckDirectionsAndMemoryStartsPoisoned) {
  float* d = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), 4 * sizeof(float)), cudaSuccess);
  float h[4] = {1, 2, 3, 4}, back[4] = {};
  ASSERT_EQ(cudaMemcpy(back, d, sizeof back, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_TRUE(std::isnan(back[0])) << "fresh device memory is poisoned";
  ASSERT_EQ(cudaMemcpy(d, h, sizeof h, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(back, d, sizeof back, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(back[3], 4.0f);
  EXPECT_THROW(cudaMemcpy(d, h, sizeof h, cudaMemcpyDeviceToHost), Error) << "direction swapped";
  EXPECT_THROW(cudaMemcpy(d + 1, h, sizeof h, cudaMemcpyHostToDevice), Error) << "runs past the allocation";
  EXPECT_EQ(cudaFree(h), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "reading the error clears it";
  EXPECT_EQ(cudaFree(d), cudaSuccess);
}

// Device memory is out of host code's reach, as on a GPU: dereferencing a device pointer on
// the host kills the process with a message naming the allocation, while kernels and copies
// still reach it.
TEST(CudaRuntimeDouble, HostCodeTouchingDeviceMemoryDiesNamingTheAllocation) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  float* d = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), 64 * sizeof(float)), cudaSuccess);
  const float h[2] = {1.5f, 2.5f};
  ASSERT_EQ(cudaMemcpy(d + 8, h, sizeof h, cudaMemcpyHostToDevice), cudaSuccess);
  float back[2] = {};
  ASSERT_EQ(cudaMemcpy(back, d + 8, sizeof back, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(back[1], 2.5f) << "copies reach device memory";
  EXPECT_DEATH(
      {
        volatile float x = d[9];
        (void)x;
      },
      "host code accessed device memory at byte offset 36 of allocation #[0-9]+ \\(256 bytes at 0x");
  EXPECT_DEATH(d[0] = 1.0f, "host code accessed device memory at byte offset 0 ");
  EXPECT_EQ(cudaFree(d), cudaSuccess);
}

std::uint16_t to_bf16_bits(float f) {  // f must be exactly representable in bf16
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return static_cast<std::uint16_t>(u >> 16);
}

// mma.sync m16n8k16 against a float64 GEMM of the same bf16 values, with the fragments
// built element by element from the PTX ISA's layout and, independently, through ldmatrix
// (whose layout is specified separately): both must give the reference product.
TEST_P(Emulator, MmaMatchesAReferenceGemmThroughBothFragmentPaths) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> small(-64, 64);
  std::vector<std::uint16_t> A(256), B(128);
  std::vector<float> Af(256), Bf(128), C(128), D(128);
  for (int i = 0; i < 256; ++i) Af[static_cast<std::size_t>(i)] = static_cast<float>(small(rng)) / 16.0f;
  for (int i = 0; i < 128; ++i) Bf[static_cast<std::size_t>(i)] = static_cast<float>(small(rng)) / 8.0f;
  for (int i = 0; i < 128; ++i) C[static_cast<std::size_t>(i)] = static_cast<float>(small(rng)) / 4.0f;
  for (int i = 0; i < 256; ++i) A[static_cast<std::size_t>(i)] = to_bf16_bits(Af[static_cast<std::size_t>(i)]);
  for (int i = 0; i < 128; ++i) B[static_cast<std::size_t>(i)] = to_bf16_bits(Bf[static_cast<std::size_t>(i)]);
  for (bool ldm : {false, true}) {
    launch_mma(A.data(), B.data(), C.data(), D.data(), ldm);
    for (int m = 0; m < 16; ++m)
      for (int n = 0; n < 8; ++n) {
        double ref = C[static_cast<std::size_t>(m * 8 + n)];
        for (int k = 0; k < 16; ++k)
          ref += static_cast<double>(Af[static_cast<std::size_t>(m * 16 + k)]) * Bf[static_cast<std::size_t>(k * 8 + n)];
        // These values are multiples of 1/128 below 2^12: every partial sum is exact in float.
        ASSERT_EQ(D[static_cast<std::size_t>(m * 8 + n)], ref) << (ldm ? "ldmatrix" : "direct") << " m " << m << " n " << n;
      }
  }
}

// cp.async completes at the wait that retires its group: wait_group 0 retires both groups,
// wait_group 1 only the older one, and a missing wait (planted bug) leaves shared memory
// stale (poisoned), exactly what a GPU may show.
TEST_P(Emulator, CpAsyncCompletesOnlyAtTheWaitThatRetiresItsGroup) {
  const int threads = 64;
  std::vector<float> in(static_cast<std::size_t>(2 * threads * 4)), out(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i) + 0.5f;
  launch_cp_async(in.data(), out.data(), threads, 2);
  EXPECT_EQ(out, in);
  launch_cp_async(in.data(), out.data(), threads, 1);
  const std::size_t half = in.size() / 2;
  EXPECT_TRUE(std::equal(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(half), in.begin()));
  for (std::size_t i = half; i < out.size(); ++i) ASSERT_TRUE(std::isnan(out[i])) << "the newer group is pending";
  launch_cp_async(in.data(), out.data(), threads, 0);
  for (float v : out) ASSERT_TRUE(std::isnan(v)) << "no wait: nothing arrived";
}

#if defined(__SANITIZE_ADDRESS__)
// Planted bug 3 under the sanitizer job (PGOLF_EMU_SANITIZE): AddressSanitizer follows the
// emulator's fiber switches and reports the write one past the end of a heap buffer.
TEST(EmulatorBugs, AnOutOfBoundsWriteIsCaughtByAddressSanitizer) {
  EXPECT_DEATH(
      {
        std::vector<int> out(40);
        launch_out_of_bounds(out.data(), 40);
      },
      "heap-buffer-overflow");
}
#endif

INSTANTIATE_TEST_SUITE_P(Schedules, Emulator,
                         ::testing::Values(Schedule::forward, Schedule::reverse, Schedule::random),
                         [](const auto& p) { return std::string(schedule_name(p.param)); });

}  // namespace
}  // namespace pgolf::emu
