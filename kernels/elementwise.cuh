#pragma once
// Elementwise kernels of the CUDA backend (the op contracts are those of src/backend/ops.hpp,
// float32): host launchers taking device pointers. Each computes exactly the arithmetic of
// the CPU reference, in the same order; nvcc compiles the kernels without FMA contraction
// (kernels/CMakeLists.txt), so the results match the CPU's bit for bit on the GPU as in the
// emulated build (tests/kernels checks both against CpuOps).
#include <cstddef>
#include <cstdint>

#include <driver_types.h>  // cudaStream_t

namespace pgolf::kernels {

// y = a * y + b * x
void axpby(float* y, const float* x, float a, float b, std::size_t n, cudaStream_t stream);
// x *= s
void scale_values(float* x, float s, std::size_t n, cudaStream_t stream);
// y += x
void add_into(float* y, const float* x, std::size_t n, cudaStream_t stream);
// z = leaky_relu(h, slope)^2 ; dh = dz * d/dh
void leaky_relu_sq_forward(float* z, const float* h, float slope, std::size_t n, cudaStream_t stream);
void leaky_relu_sq_backward(float* dh, const float* dz, const float* h, float slope, std::size_t n, cudaStream_t stream);
// buf = momentum * buf + g ; p -= lr * buf
void sgd_momentum_update(float* p, const float* g, float* buf, std::size_t n, float lr, float momentum,
                         cudaStream_t stream);
// cudaSuccess when this binary holds code the current device can run (an sm_90a build on an
// older or newer GPU gets cudaErrorNoKernelImageForDevice here instead of at the first launch).
cudaError_t check_kernel_image();
// AdamW (torch semantics) with its step constants {step size, decay, sqrt of the second bias
// correction} = backend::adamw_constants(lr, beta1, beta2, weight_decay, t)
void adamw_update(float* p, const float* g, float* m, float* v, std::size_t n, float step, float decay, float bias2_sqrt,
                  float beta1, float beta2, float eps, cudaStream_t stream);
// The same with its constants c = {step size, decay, sqrt of the second bias correction} on the
// device (backend::adamw_constants); nothing changes when *skip (device, may be null) is non-zero.
void adamw_step(float* p, const float* g, float* m, float* v, std::size_t n, const float* c, float beta1, float beta2,
                float eps, const double* skip, cudaStream_t stream);

}  // namespace pgolf::kernels
