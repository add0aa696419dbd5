#pragma once
// Optimizer-side kernels of the CUDA backend (contracts in src/backend/ops.hpp: muon_momentum,
// normalize_rows, transpose, sum_squares, fake_quant_int6; float32).
#include <cstddef>

#include <driver_types.h>

namespace pgolf::kernels {

// buf = mu * buf + g ; u = nesterov ? g + mu * buf : buf
void muon_momentum(float* buf, float* u, const float* g, float mu, bool nesterov, std::size_t n, cudaStream_t stream);
// Each row of x (rows x cols) divided by max(its L2 norm, eps) (float64 norm, one block per row).
void normalize_rows(float* x, int rows, int cols, float eps, cudaStream_t stream);
// dst[c, r] = src[r, c]
void transpose(float* dst, const float* src, int rows, int cols, cudaStream_t stream);
// *out (device double) = sum of x^2 in float64 over n values, in a fixed order (one block).
void sum_squares(double* out, const float* x, std::size_t n, cudaStream_t stream);
// Late-QAT fake quantisation per row: s = max(max|w_r| / 31, 1/31), dst = clamp(round(w/s), -32, 31) * s.
void fake_quant_int6(float* dst, const float* src, int rows, int cols, cudaStream_t stream);

}  // namespace pgolf::kernels
