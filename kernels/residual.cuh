#pragma once
// Residual-stream kernels of the CUDA backend (contracts in src/backend/ops.hpp: add_scaled,
// residual_scale, resid_mix, forward and backward; float32, scalars as device pointers).
// Parameter gradients are float64 column (or whole-tensor) sums in row order, one thread per
// column, so they are deterministic; they agree with the CPU's chunked sums to about an ulp.
#include <cstddef>

#include <driver_types.h>

namespace pgolf::kernels {

// y += x * s1 * s2 (s2 may be null = 1)
void add_scaled_forward(float* y, const float* x, const float* s1, const float* s2, std::size_t n, cudaStream_t stream);
// dx (= or +=; skipped when null) = dy * s1 * s2; ds1 += sum(dy * x) * s2; ds2 += sum(dy * x) * s1
void add_scaled_backward(float* dx, float* ds1, float* ds2, const float* dy, const float* x, const float* s1,
                         const float* s2, std::size_t n, bool accumulate_dx, cudaStream_t stream);
// out = base + scale[c] * y per column
void residual_scale_forward(float* out, const float* base, const float* y, const float* scale, int n, int dim,
                            cudaStream_t stream);
// dy = dout * scale ; dscale[c] += sum_i dout[i, c] * y[i, c]
void residual_scale_backward(float* dy, float* dscale, const float* dout, const float* y, const float* scale, int n,
                             int dim, cudaStream_t stream);
// xin = mix[0, c] * x + mix[1, c] * x0
void resid_mix_forward(float* xin, const float* x, const float* x0, const float* mix, int n, int dim, cudaStream_t stream);
// dx = dxin * mix[0] ; dx0 += dxin * mix[1] ; dmix[0] += sum dxin * x ; dmix[1] += sum dxin * x0
void resid_mix_backward(float* dx, float* dx0, float* dmix, const float* dxin, const float* x, const float* x0,
                        const float* mix, int n, int dim, cudaStream_t stream);

}  // namespace pgolf::kernels
