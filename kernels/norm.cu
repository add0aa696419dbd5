// RMS normalisation (see norm.cuh).
#include "portable.cuh"  // first: it decides how the CUDA keywords compile

#include <cmath>

#include "block_reduce.cuh"
#include "norm.cuh"

namespace pgolf::kernels {

namespace {

constexpr int kThreads = 256;  // a multiple of 32
constexpr double kEps = 1.1920928955078125e-07;  // float32 epsilon, as the CPU reference

__global__ void rmsnorm_forward_kernel(float* y, float* rstd, const float* x, int dim, float multiplier) {
  __shared__ double scratch[kThreads / 32];
  const std::size_t row = static_cast<std::size_t>(blockIdx.x) * static_cast<std::size_t>(dim);
  const float* xi = x + row;
  double sq = 0.0;
  for (int c = static_cast<int>(threadIdx.x); c < dim; c += static_cast<int>(blockDim.x))
    sq += static_cast<double>(xi[c]) * xi[c];
  sq = block_sum(sq, scratch);
  const auto r = static_cast<float>(1.0 / sqrt(sq / dim + kEps));
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
  const float s = r * multiplier;
  for (int c = static_cast<int>(threadIdx.x); c < dim; c += static_cast<int>(blockDim.x)) y[row + c] = xi[c] * s;
}

__global__ void rmsnorm_backward_kernel(float* dx, const float* dy, const float* x, const float* rstd, int dim,
                                        float multiplier, bool accumulate) {
  __shared__ double scratch[kThreads / 32];
  const std::size_t row = static_cast<std::size_t>(blockIdx.x) * static_cast<std::size_t>(dim);
  const float *xi = x + row, *gi = dy + row;
  double dot = 0.0;
  for (int c = static_cast<int>(threadIdx.x); c < dim; c += static_cast<int>(blockDim.x))
    dot += static_cast<double>(gi[c]) * xi[c];
  dot = block_sum(dot, scratch);
  const float r = rstd[blockIdx.x];
  const auto k = static_cast<float>(dot * static_cast<double>(r) * r / dim);
  for (int c = static_cast<int>(threadIdx.x); c < dim; c += static_cast<int>(blockDim.x)) {
    const float v = multiplier * r * (gi[c] - xi[c] * k);
    dx[row + c] = accumulate ? dx[row + c] + v : v;
  }
}

}  // namespace

void rmsnorm_forward(float* y, float* rstd, const float* x, int n, int dim, float multiplier, cudaStream_t stream) {
  if (n == 0) return;
  PG_LAUNCH(rmsnorm_forward_kernel, dim3(static_cast<unsigned>(n)), dim3(kThreads), 0, stream, y, rstd, x, dim, multiplier);
}

void rmsnorm_backward(float* dx, const float* dy, const float* x, const float* rstd, int n, int dim, float multiplier,
                      bool accumulate, cudaStream_t stream) {
  if (n == 0) return;
  PG_LAUNCH(rmsnorm_backward_kernel, dim3(static_cast<unsigned>(n)), dim3(kThreads), 0, stream, dx, dy, x, rstd, dim,
            multiplier, accumulate);
}

}  // namespace pgolf::kernels
