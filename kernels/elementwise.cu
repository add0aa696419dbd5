// Elementwise kernels (see elementwise.cuh): one thread per element, grid-stride loops so any
// n fits the grid limits.
#include "portable.cuh"  // first: it decides how the CUDA keywords compile

#include <cmath>

#include "elementwise.cuh"
#include "grid.cuh"

namespace pgolf::kernels {

namespace {

constexpr int kThreads = kGridThreads;

__global__ void axpby_kernel(float* y, const float* x, float a, float b, std::size_t n) {
  for (std::size_t i = first_index(); i < n; i += grid_stride()) y[i] = a * y[i] + b * x[i];
}

__global__ void scale_kernel(float* x, float s, std::size_t n) {
  for (std::size_t i = first_index(); i < n; i += grid_stride()) x[i] *= s;
}

__global__ void add_into_kernel(float* y, const float* x, std::size_t n) {
  for (std::size_t i = first_index(); i < n; i += grid_stride()) y[i] += x[i];
}

__global__ void leaky_relu_sq_forward_kernel(float* z, const float* h, float slope, std::size_t n) {
  for (std::size_t i = first_index(); i < n; i += grid_stride()) {
    const float a = h[i] > 0.0f ? h[i] : slope * h[i];
    z[i] = a * a;
  }
}

__global__ void leaky_relu_sq_backward_kernel(float* dh, const float* dz, const float* h, float slope, std::size_t n) {
  for (std::size_t i = first_index(); i < n; i += grid_stride()) {
    const bool pos = h[i] > 0.0f;
    const float a = pos ? h[i] : slope * h[i];
    dh[i] = dz[i] * 2.0f * a * (pos ? 1.0f : slope);
  }
}

__global__ void sgd_momentum_kernel(float* p, const float* g, float* buf, std::size_t n, float lr, float momentum) {
  for (std::size_t i = first_index(); i < n; i += grid_stride()) {
    buf[i] = momentum * buf[i] + g[i];
    p[i] -= lr * buf[i];
  }
}

__device__ __forceinline__ void adamw_values(float* p, const float* g, float* m, float* v, std::size_t n, float step,
                                             float decay, float beta1, float beta2, float bias2_sqrt, float eps) {
  for (std::size_t i = first_index(); i < n; i += grid_stride()) {
    p[i] *= decay;
    m[i] = beta1 * m[i] + (1.0f - beta1) * g[i];
    v[i] = beta2 * v[i] + (1.0f - beta2) * g[i] * g[i];
    p[i] -= step * m[i] / (sqrtf(v[i]) / bias2_sqrt + eps);
  }
}

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, std::size_t n, float step, float decay,
                             float beta1, float beta2, float bias2_sqrt, float eps) {
  adamw_values(p, g, m, v, n, step, decay, beta1, beta2, bias2_sqrt, eps);
}

__global__ void adamw_step_kernel(float* p, const float* g, float* m, float* v, std::size_t n, const float* c,
                                  float beta1, float beta2, float eps, const double* skip) {
  if (skip != nullptr && *skip != 0.0) return;
  adamw_values(p, g, m, v, n, c[0], c[1], beta1, beta2, c[2], eps);
}

}  // namespace

void axpby(float* y, const float* x, float a, float b, std::size_t n, cudaStream_t stream) {
  PG_LAUNCH(axpby_kernel, grid_for(n), dim3(kThreads), 0, stream, y, x, a, b, n);
}
void scale_values(float* x, float s, std::size_t n, cudaStream_t stream) {
  PG_LAUNCH(scale_kernel, grid_for(n), dim3(kThreads), 0, stream, x, s, n);
}
void add_into(float* y, const float* x, std::size_t n, cudaStream_t stream) {
  PG_LAUNCH(add_into_kernel, grid_for(n), dim3(kThreads), 0, stream, y, x, n);
}
void leaky_relu_sq_forward(float* z, const float* h, float slope, std::size_t n, cudaStream_t stream) {
  PG_LAUNCH(leaky_relu_sq_forward_kernel, grid_for(n), dim3(kThreads), 0, stream, z, h, slope, n);
}
void leaky_relu_sq_backward(float* dh, const float* dz, const float* h, float slope, std::size_t n, cudaStream_t stream) {
  PG_LAUNCH(leaky_relu_sq_backward_kernel, grid_for(n), dim3(kThreads), 0, stream, dh, dz, h, slope, n);
}
void sgd_momentum_update(float* p, const float* g, float* buf, std::size_t n, float lr, float momentum,
                         cudaStream_t stream) {
  PG_LAUNCH(sgd_momentum_kernel, grid_for(n), dim3(kThreads), 0, stream, p, g, buf, n, lr, momentum);
}
void adamw_update(float* p, const float* g, float* m, float* v, std::size_t n, float step, float decay, float bias2_sqrt,
                  float beta1, float beta2, float eps, cudaStream_t stream) {
  PG_LAUNCH(adamw_kernel, grid_for(n), dim3(kThreads), 0, stream, p, g, m, v, n, step, decay, beta1, beta2, bias2_sqrt,
            eps);
}
void adamw_step(float* p, const float* g, float* m, float* v, std::size_t n, const float* c, float beta1, float beta2,
                float eps, const double* skip, cudaStream_t stream) {
  PG_LAUNCH(adamw_step_kernel, grid_for(n), dim3(kThreads), 0, stream, p, g, m, v, n, c, beta1, beta2, eps, skip);
}

cudaError_t check_kernel_image() {
#if defined(__CUDACC__)
  cudaFuncAttributes attributes{};
  return cudaFuncGetAttributes(&attributes, reinterpret_cast<const void*>(axpby_kernel));
#else
  return cudaSuccess;  // the emulator runs any kernel
#endif
}

}  // namespace pgolf::kernels
