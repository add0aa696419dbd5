// Optimizer-side kernels (see optim.cuh).
#include "portable.cuh"  // first: it decides how the CUDA keywords compile

#include <cmath>

#include "block_reduce.cuh"
#include "grid.cuh"
#include "optim.cuh"

namespace pgolf::kernels {

namespace {

constexpr int kThreads = kGridThreads;

__global__ void muon_momentum_kernel(float* buf, float* u, const float* g, float mu, bool nesterov, std::size_t n) {
  for (std::size_t i = first_index(); i < n; i += grid_stride()) {
    buf[i] = mu * buf[i] + g[i];
    u[i] = nesterov ? g[i] + mu * buf[i] : buf[i];
  }
}

__global__ void normalize_rows_kernel(float* x, int cols, float eps) {
  __shared__ double scratch[kThreads / 32];
  float* row = x + static_cast<std::size_t>(blockIdx.x) * static_cast<std::size_t>(cols);
  double sq = 0.0;
  for (int c = static_cast<int>(threadIdx.x); c < cols; c += static_cast<int>(blockDim.x))
    sq += static_cast<double>(row[c]) * row[c];
  sq = block_sum(sq, scratch);
  const double norm = sqrt(sq);
  const auto inv = static_cast<float>(1.0 / (norm > static_cast<double>(eps) ? norm : static_cast<double>(eps)));
  for (int c = static_cast<int>(threadIdx.x); c < cols; c += static_cast<int>(blockDim.x)) row[c] *= inv;
}

// 32 x 32 tiles through shared memory (padded against bank conflicts), 32 x 8 threads.
__global__ void transpose_kernel(float* dst, const float* src, int rows, int cols) {
  __shared__ float tile[32][33];
  const int c0 = static_cast<int>(blockIdx.x) * 32, r0 = static_cast<int>(blockIdx.y) * 32;
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  for (int k = ty; k < 32; k += 8) {
    const int r = r0 + k, c = c0 + tx;
    if (r < rows && c < cols) tile[k][tx] = src[static_cast<std::size_t>(r) * cols + c];
  }
  __syncthreads();
  for (int k = ty; k < 32; k += 8) {
    const int c = c0 + k, r = r0 + tx;
    if (r < rows && c < cols) dst[static_cast<std::size_t>(c) * rows + r] = tile[tx][k];
  }
}

__global__ void sum_squares_kernel(double* out, const float* x, std::size_t n) {
  __shared__ double scratch[kThreads / 32];
  double s = 0.0;
  for (std::size_t i = threadIdx.x; i < n; i += blockDim.x) s += static_cast<double>(x[i]) * x[i];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) *out = s;
}

__global__ void fake_quant_int6_kernel(float* dst, const float* src, int cols) {
  __shared__ double scratch[kThreads / 32];
  const std::size_t o = static_cast<std::size_t>(blockIdx.x) * static_cast<std::size_t>(cols);
  float mx = 0.0f;
  for (int c = static_cast<int>(threadIdx.x); c < cols; c += static_cast<int>(blockDim.x)) mx = fmaxf(mx, fabsf(src[o + c]));
  // The maximum is exact in any order; float64 holds every float.
  mx = static_cast<float>(block_max(static_cast<double>(mx), scratch));
  const float s = fmaxf(mx / 31.0f, 1.0f / 31.0f);
  for (int c = static_cast<int>(threadIdx.x); c < cols; c += static_cast<int>(blockDim.x))
    dst[o + c] = fminf(fmaxf(rintf(src[o + c] / s), -32.0f), 31.0f) * s;
}

}  // namespace

void muon_momentum(float* buf, float* u, const float* g, float mu, bool nesterov, std::size_t n, cudaStream_t stream) {
  PG_LAUNCH(muon_momentum_kernel, grid_for(n), dim3(kThreads), 0, stream, buf, u, g, mu, nesterov, n);
}

void normalize_rows(float* x, int rows, int cols, float eps, cudaStream_t stream) {
  if (rows == 0) return;
  PG_LAUNCH(normalize_rows_kernel, dim3(static_cast<unsigned>(rows)), dim3(kThreads), 0, stream, x, cols, eps);
}

void transpose(float* dst, const float* src, int rows, int cols, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  const dim3 grid(static_cast<unsigned>((cols + 31) / 32), static_cast<unsigned>((rows + 31) / 32));
  PG_LAUNCH(transpose_kernel, grid, dim3(32, 8), 0, stream, dst, src, rows, cols);
}

void sum_squares(double* out, const float* x, std::size_t n, cudaStream_t stream) {
  PG_LAUNCH(sum_squares_kernel, dim3(1), dim3(kThreads), 0, stream, out, x, n);
}

void fake_quant_int6(float* dst, const float* src, int rows, int cols, cudaStream_t stream) {
  if (rows == 0) return;
  PG_LAUNCH(fake_quant_int6_kernel, dim3(static_cast<unsigned>(rows)), dim3(kThreads), 0, stream, dst, src, cols);
}

}  // namespace pgolf::kernels
