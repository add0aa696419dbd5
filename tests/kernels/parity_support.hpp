#pragma once
// Shared by the kernel parity tests (tests/kernels/test_*_parity.cpp): test inputs with the
// awkward values, device buffers, and comparisons with the CPU reference's outputs (NaN/Inf
// counts, bit-for-bit or within a few ulps).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

// The same tests run in two builds: through the SIMT emulator (device memory from its runtime
// double, with guard zones checked after every launch) and, in pgolf_gpu_kernel_tests
// (PGOLF_PARITY_ON_GPU=1), with the nvcc-built kernels on a real GPU.
#if PGOLF_PARITY_ON_GPU
#include <cuda_runtime_api.h>
#else
#include "emu/cuda_runtime_double.hpp"
#endif

namespace pgolf::test {

// "what 3x64x128 detail": names a comparison in failures and in the printed summaries.
inline std::string shape_label(const std::string& what, std::initializer_list<long long> dims, const char* detail = "") {
  std::ostringstream os;
  os << what << " ";
  const char* sep = "";
  for (long long d : dims) {
    os << sep << d;
    sep = "x";
  }
  if (*detail != 0) os << " " << detail;
  return os.str();
}

inline std::vector<float> inputs(std::size_t n, std::uint32_t seed, bool positive = false) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    switch (i % 17) {
      case 3: v[i] = 0.0f; break;
      case 5: v[i] = -0.0f; break;
      case 7: v[i] = std::numeric_limits<float>::denorm_min() * 3.0f; break;
      case 11: v[i] = 1e30f * normal(rng); break;
      default: v[i] = normal(rng);
    }
    if (positive) v[i] = std::fabs(v[i]);
  }
  return v;
}

// Device copies of host vectors, released (and their guard zones checked) at the end of the
// scope.
struct Device {
  std::vector<void*> owned;
  template <class T>
  T* upload(const std::vector<T>& h) {
    void* d = nullptr;
    EXPECT_EQ(cudaMalloc(&d, h.size() * sizeof(T)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
    owned.push_back(d);
    return static_cast<T*>(d);
  }
  template <class T>
  static std::vector<T> download(const T* d, std::size_t n) {
    std::vector<T> h(n);
    EXPECT_EQ(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }
  ~Device() {
    for (void* d : owned) EXPECT_EQ(cudaFree(d), cudaSuccess);
  }
};

inline void expect_same(const std::vector<float>& cpu, const std::vector<float>& kernel, const std::string& what) {
  ASSERT_EQ(cpu.size(), kernel.size());
  std::size_t nonfinite_cpu = 0, nonfinite_kernel = 0;
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    nonfinite_cpu += std::isfinite(cpu[i]) ? 0 : 1;
    nonfinite_kernel += std::isfinite(kernel[i]) ? 0 : 1;
    ASSERT_EQ(std::memcmp(&cpu[i], &kernel[i], sizeof(float)), 0)
        << what << ": element " << i << " cpu " << cpu[i] << " kernel " << kernel[i];
  }
  EXPECT_EQ(nonfinite_kernel, nonfinite_cpu) << what;
}

// Every element within `ulps` units in the last place of the larger magnitude (NaN matching
// NaN, infinities equal), and the same count of non-finite values. With `or_of_largest`, an
// element may instead be within `ulps` ulps of the tensor's largest finite CPU magnitude (for
// sums whose terms cancel, where the error is relative to the terms, not the result).
inline void expect_close(const std::vector<float>& cpu, const std::vector<float>& kernel, int ulps, const std::string& what,
                         bool or_of_largest = false) {
  ASSERT_EQ(cpu.size(), kernel.size());
  double worst = 0;
  std::size_t identical = 0;
  float largest = 0.0f;
  for (float a : cpu)
    if (std::isfinite(a)) largest = std::max(largest, std::fabs(a));
  const double scale_ulp = std::max(std::nextafter(largest, INFINITY) - largest, std::numeric_limits<float>::denorm_min());
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    const float a = cpu[i], b = kernel[i];
    if (std::memcmp(&a, &b, sizeof a) == 0) {
      ++identical;
      continue;
    }
    ASSERT_TRUE(std::isfinite(a) && std::isfinite(b)) << what << ": element " << i << " cpu " << a << " kernel " << b;
    const float mag = std::max(std::fabs(a), std::fabs(b));
    const double ulp = std::max(std::nextafter(mag, INFINITY) - mag, std::numeric_limits<float>::denorm_min());
    const double diff = std::fabs(static_cast<double>(a) - b);
    const double err = or_of_largest ? std::min(diff / ulp, diff / scale_ulp) : diff / ulp;
    worst = std::max(worst, err);
    ASSERT_LE(err, ulps) << what << ": element " << i << " cpu " << a << " kernel " << b;
  }
  std::printf("  %-40s %zu of %zu bit-identical, worst %.1f ulp\n", what.c_str(), identical, cpu.size(), worst);
}

// For kernels that call the CUDA math library (expf, tanhf): the emulated build runs glibc's
// functions, as the CPU reference does, and must match bit for bit; nvcc's expf and tanhf are
// within 2 ulps of the exact result (CUDA C++ Programming Guide, mathematical functions) where
// glibc's are within 1, so on a GPU every element must be within kMathUlps ulps of itself or of
// the tensor's largest magnitude (softmax-weighted sums cancel). Everything else compiles
// without FMA contraction (--fmad=false) and is compared bit for bit on the GPU too.
inline constexpr int kMathUlps = 16;
inline void expect_same_math(const std::vector<float>& cpu, const std::vector<float>& kernel, const std::string& what) {
#if PGOLF_PARITY_ON_GPU
  expect_close(cpu, kernel, kMathUlps, what + " (CUDA math library)", true);
#else
  expect_same(cpu, kernel, what);
#endif
}

}  // namespace pgolf::test
