// Residual-stream kernels (see residual.cuh).
#include "portable.cuh"  // first: it decides how the CUDA keywords compile

#include "block_reduce.cuh"
#include "grid.cuh"
#include "residual.cuh"

namespace pgolf::kernels {

namespace {

constexpr int kThreads = kGridThreads;

__global__ void add_scaled_kernel(float* y, const float* x, const float* s1, const float* s2, std::size_t n,
                                  bool accumulate) {
  const float s = *s1 * (s2 != nullptr ? *s2 : 1.0f);
  for (std::size_t i = first_index(); i < n; i += grid_stride()) y[i] = accumulate ? y[i] + x[i] * s : x[i] * s;
}

// ds1 += dot * s2, ds2 += dot * s1 with dot = sum(dy * x) in float64 (one block, so the
// order is fixed: each thread's strided partial sum, then the block tree).
__global__ void add_scaled_grads_kernel(float* ds1, float* ds2, const float* dy, const float* x, const float* s1,
                                        const float* s2, std::size_t n) {
  __shared__ double scratch[kThreads / 32];
  double dot = 0.0;
  for (std::size_t i = threadIdx.x; i < n; i += blockDim.x) dot += static_cast<double>(dy[i]) * x[i];
  dot = block_sum(dot, scratch);
  if (threadIdx.x != 0) return;
  const float v2 = s2 != nullptr ? *s2 : 1.0f;
  if (ds1 != nullptr) *ds1 += static_cast<float>(dot * v2);
  if (ds2 != nullptr) *ds2 += static_cast<float>(dot * *s1);
}

// out[c] += sum over rows of a[i, c] * b[i, c], float64, one thread per column.
__global__ void column_dot_kernel(float* out, const float* a, const float* b, int n, int dim) {
  const int c = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (c >= dim) return;
  double s = 0.0;
  for (int i = 0; i < n; ++i) {
    const std::size_t o = static_cast<std::size_t>(i) * dim + static_cast<std::size_t>(c);
    s += static_cast<double>(a[o]) * b[o];
  }
  out[c] += static_cast<float>(s);
}

__global__ void residual_scale_forward_kernel(float* out, const float* base, const float* y, const float* scale,
                                              std::size_t total, int dim) {
  for (std::size_t i = first_index(); i < total; i += grid_stride())
    out[i] = base[i] + scale[i % static_cast<std::size_t>(dim)] * y[i];
}

__global__ void scale_columns_kernel(float* out, const float* in, const float* scale, std::size_t total, int dim) {
  for (std::size_t i = first_index(); i < total; i += grid_stride()) out[i] = in[i] * scale[i % static_cast<std::size_t>(dim)];
}

__global__ void resid_mix_forward_kernel(float* xin, const float* x, const float* x0, const float* mix, std::size_t total,
                                         int dim) {
  for (std::size_t i = first_index(); i < total; i += grid_stride()) {
    const std::size_t c = i % static_cast<std::size_t>(dim);
    xin[i] = mix[c] * x[i] + mix[static_cast<std::size_t>(dim) + c] * x0[i];
  }
}

__global__ void resid_mix_inputs_kernel(float* dx, float* dx0, const float* dxin, const float* mix, std::size_t total,
                                        int dim) {
  for (std::size_t i = first_index(); i < total; i += grid_stride()) {
    const std::size_t c = i % static_cast<std::size_t>(dim);
    dx[i] = dxin[i] * mix[c];
    dx0[i] += dxin[i] * mix[static_cast<std::size_t>(dim) + c];
  }
}

void column_dot(float* out, const float* a, const float* b, int n, int dim, cudaStream_t stream) {
  if (dim == 0) return;
  PG_LAUNCH(column_dot_kernel, dim3(static_cast<unsigned>((dim + kThreads - 1) / kThreads)), dim3(kThreads), 0, stream,
            out, a, b, n, dim);
}

}  // namespace

void add_scaled_forward(float* y, const float* x, const float* s1, const float* s2, std::size_t n, cudaStream_t stream) {
  PG_LAUNCH(add_scaled_kernel, grid_for(n), dim3(kThreads), 0, stream, y, x, s1, s2, n, true);
}

void add_scaled_backward(float* dx, float* ds1, float* ds2, const float* dy, const float* x, const float* s1,
                         const float* s2, std::size_t n, bool accumulate_dx, cudaStream_t stream) {
  PG_LAUNCH(add_scaled_grads_kernel, dim3(1), dim3(kThreads), 0, stream, ds1, ds2, dy, x, s1, s2, n);
  if (dx != nullptr) PG_LAUNCH(add_scaled_kernel, grid_for(n), dim3(kThreads), 0, stream, dx, dy, s1, s2, n, accumulate_dx);
}

void residual_scale_forward(float* out, const float* base, const float* y, const float* scale, int n, int dim,
                            cudaStream_t stream) {
  const std::size_t total = static_cast<std::size_t>(n) * static_cast<std::size_t>(dim);
  PG_LAUNCH(residual_scale_forward_kernel, grid_for(total), dim3(kThreads), 0, stream, out, base, y, scale, total, dim);
}

void residual_scale_backward(float* dy, float* dscale, const float* dout, const float* y, const float* scale, int n,
                             int dim, cudaStream_t stream) {
  const std::size_t total = static_cast<std::size_t>(n) * static_cast<std::size_t>(dim);
  column_dot(dscale, dout, y, n, dim, stream);
  PG_LAUNCH(scale_columns_kernel, grid_for(total), dim3(kThreads), 0, stream, dy, dout, scale, total, dim);
}

void resid_mix_forward(float* xin, const float* x, const float* x0, const float* mix, int n, int dim, cudaStream_t stream) {
  const std::size_t total = static_cast<std::size_t>(n) * static_cast<std::size_t>(dim);
  PG_LAUNCH(resid_mix_forward_kernel, grid_for(total), dim3(kThreads), 0, stream, xin, x, x0, mix, total, dim);
}

void resid_mix_backward(float* dx, float* dx0, float* dmix, const float* dxin, const float* x, const float* x0,
                        const float* mix, int n, int dim, cudaStream_t stream) {
  const std::size_t total = static_cast<std::size_t>(n) * static_cast<std::size_t>(dim);
  column_dot(dmix, dxin, x, n, dim, stream);
  column_dot(dmix + dim, dxin, x0, n, dim, stream);
  PG_LAUNCH(resid_mix_inputs_kernel, grid_for(total), dim3(kThreads), 0, stream, dx, dx0, dxin, mix, total, dim);
}

}  // namespace pgolf::kernels
