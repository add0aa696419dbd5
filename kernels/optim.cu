// Optimizer-side kernels (see optim.cuh).
#include "portable.cuh"  // first: it decides how the CUDA keywords compile

#include <cmath>

#include "block_reduce.cuh"
#include "grid.cuh"
#include "optim.cuh"

namespace pgolf::kernels {

namespace {

constexpr int kThreads = kGridThreads;

// Must match ops.hpp's kStepSkip / kStepClipCoef (the kernels do not include the op interface).
constexpr int kSkip = 0, kClipCoef = 1;

__device__ __forceinline__ bool skipped(const double* skip) { return skip != nullptr && *skip != 0.0; }
// Finite: x - x is 0 for every finite x and NaN for an infinity or a NaN (no math-library call,
// so host and device builds agree).
__device__ __forceinline__ bool finite_value(double x) { return x - x == 0.0; }

__global__ void muon_momentum_kernel(float* buf, float* u, const float* g, const float* mu_value, bool nesterov,
                                     std::size_t n, const double* skip) {
  if (skipped(skip)) return;
  const float mu = *mu_value;
  for (std::size_t i = first_index(); i < n; i += grid_stride()) {
    buf[i] = mu * buf[i] + g[i];
    u[i] = nesterov ? g[i] + mu * buf[i] : buf[i];
  }
}

__global__ void axpby_step_kernel(float* y, const float* x, const float* ab, std::size_t n, const double* skip) {
  if (skipped(skip)) return;
  const float a = ab[0], b = ab[1];
  for (std::size_t i = first_index(); i < n; i += grid_stride()) y[i] = a * y[i] + b * x[i];
}

__global__ void scale_by_inverse_norm_kernel(float* x, std::size_t n, const double* sum_sq, double eps) {
  const auto s = static_cast<float>(1.0 / (sqrt(*sum_sq) + eps));
  for (std::size_t i = first_index(); i < n; i += grid_stride()) x[i] *= s;
}

__global__ void accumulate_loss_kernel(double* acc, const float* loss_sum, double divisor) {
  *acc += static_cast<double>(*loss_sum) / divisor;
}

__global__ void step_guard_kernel(double* state, const double* loss, const double* sum_sq, double max_norm) {
  const double norm = sqrt(*sum_sq);
  if (!(finite_value(*loss) && finite_value(norm))) state[kSkip] = 1.0;
  const double coef = max_norm / (norm + 1e-6);
  state[kClipCoef] = max_norm > 0 && finite_value(norm) ? (coef < 1.0 ? coef : 1.0) : 1.0;
}

__global__ void clip_scale_kernel(float* x, std::size_t n, const double* state) {
  if (state[kSkip] != 0.0 || !(state[kClipCoef] < 1.0)) return;
  const auto s = static_cast<float>(state[kClipCoef]);
  for (std::size_t i = first_index(); i < n; i += grid_stride()) x[i] *= s;
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

void muon_momentum(float* buf, float* u, const float* g, const float* mu, bool nesterov, std::size_t n,
                   const double* skip, cudaStream_t stream) {
  PG_LAUNCH(muon_momentum_kernel, grid_for(n), dim3(kThreads), 0, stream, buf, u, g, mu, nesterov, n, skip);
}

void axpby_step(float* y, const float* x, const float* ab, std::size_t n, const double* skip, cudaStream_t stream) {
  PG_LAUNCH(axpby_step_kernel, grid_for(n), dim3(kThreads), 0, stream, y, x, ab, n, skip);
}

void scale_by_inverse_norm(float* x, std::size_t n, const double* sum_sq, double eps, cudaStream_t stream) {
  PG_LAUNCH(scale_by_inverse_norm_kernel, grid_for(n), dim3(kThreads), 0, stream, x, n, sum_sq, eps);
}

void accumulate_loss(double* acc, const float* loss_sum, double divisor, cudaStream_t stream) {
  PG_LAUNCH(accumulate_loss_kernel, dim3(1), dim3(1), 0, stream, acc, loss_sum, divisor);
}

void step_guard(double* state, const double* loss, const double* sum_sq, double max_norm, cudaStream_t stream) {
  PG_LAUNCH(step_guard_kernel, dim3(1), dim3(1), 0, stream, state, loss, sum_sq, max_norm);
}

void clip_scale(float* x, std::size_t n, const double* state, cudaStream_t stream) {
  PG_LAUNCH(clip_scale_kernel, grid_for(n), dim3(kThreads), 0, stream, x, n, state);
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
