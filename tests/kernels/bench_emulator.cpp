// Speed of the SIMT emulator (Google Benchmark; not a test): the cost of a barrier per thread
// (one fiber switch each way plus bookkeeping) and of a whole block-sum launch.
#include <benchmark/benchmark.h>

#include <vector>

#include "emu/runtime.hpp"
#include "kernels/intrinsics_kernels.cuh"

namespace {

void BM_BarrierPerThread(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0)), rounds = 1000;
  std::vector<int> out(static_cast<std::size_t>(threads));
  for (auto _ : state) launch_barrier_rounds(out.data(), threads, rounds);
  state.SetItemsProcessed(state.iterations() * threads * rounds);  // items: thread-barriers
}
BENCHMARK(BM_BarrierPerThread)->Arg(32)->Arg(256)->Arg(1024);

void BM_BlockSumLaunch(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  std::vector<float> x(static_cast<std::size_t>(n), 1.0f);
  for (auto _ : state) {
    float s = 0;
    launch_block_sum(x.data(), &s, n, 256, false);
    benchmark::DoNotOptimize(s);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_BlockSumLaunch)->Arg(1 << 12)->Arg(1 << 16);

}  // namespace

BENCHMARK_MAIN();
