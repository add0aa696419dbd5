// main() of the test binaries that need a real GPU (pgolf_gpu_tests, pgolf_gpu_kernel_tests;
// scripts/gpu_check.sh runs them): without a usable GPU of compute capability 9.0 they say why
// and exit 77, the conventional "skipped" status, instead of failing test by test. The CI
// self-test of the device bundle (scripts/device_bundle.sh --self-test) relies on exactly that.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdio>

int main(int argc, char** argv) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  const char* why = e != cudaSuccess ? cudaGetErrorString(e) : count == 0 ? "no CUDA device found" : nullptr;
  cudaDeviceProp prop{};
  if (why == nullptr && cudaGetDeviceProperties(&prop, 0) == cudaSuccess && prop.major != 9) why = "GPU 0 is not sm_90";
  if (why != nullptr) {
    std::fprintf(stderr, "%s: no usable GPU (%s); these tests need a Hopper GPU (H100, H200): scripts/gpu_check.sh\n",
                 argv[0], why);
    return 77;
  }
  std::printf("%s: on %s (sm_%d%d, %d SMs)\n", argv[0], prop.name, prop.major, prop.minor, prop.multiProcessorCount);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
