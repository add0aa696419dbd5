#pragma once
// RMS normalisation kernels of the CUDA backend (contracts: rmsnorm_forward/backward in
// src/backend/ops.hpp, float32). One block per row; the row sums are accumulated in float64
// like the CPU reference, in a different order (a block tree instead of a running sum), so
// results agree to about an ulp rather than bit for bit.
#include <cstddef>

#include <driver_types.h>

namespace pgolf::kernels {

// y = multiplier * x / sqrt(mean(x^2) + eps) per row; rstd[i] = 1 / sqrt(mean(x_i^2) + eps)
void rmsnorm_forward(float* y, float* rstd, const float* x, int n, int dim, float multiplier, cudaStream_t stream);
// dx (= or += per accumulate) given dy, x and the forward's rstd
void rmsnorm_backward(float* dx, const float* dy, const float* x, const float* rstd, int n, int dim, float multiplier,
                      bool accumulate, cudaStream_t stream);

}  // namespace pgolf::kernels
