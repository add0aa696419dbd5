#pragma once
// Optimizer-side kernels of the CUDA backend (contracts in src/backend/ops.hpp: muon_momentum,
// normalize_rows, transpose, sum_squares, fake_quant_int6; float32).
#include <cstddef>

#include <driver_types.h>

namespace pgolf::kernels {

// The per-step values of a training step live on the device (ops.hpp: kStepSkip, kStepClipCoef):
// `skip` (a device double, may be null) non-zero leaves the state untouched.
// buf = mu * buf + g ; u = nesterov ? g + mu * buf : buf, with mu = *mu (device)
void muon_momentum(float* buf, float* u, const float* g, const float* mu, bool nesterov, std::size_t n,
                   const double* skip, cudaStream_t stream);
// y = ab[0] * y + ab[1] * x (ab on the device)
void axpby_step(float* y, const float* x, const float* ab, std::size_t n, const double* skip, cudaStream_t stream);
// x *= float(1 / (sqrt(*sum_sq) + eps)) (sum_sq a device double)
void scale_by_inverse_norm(float* x, std::size_t n, const double* sum_sq, double eps, cudaStream_t stream);
// *acc += double(*loss_sum) / divisor (one thread)
void accumulate_loss(double* acc, const float* loss_sum, double divisor, cudaStream_t stream);
// state[skip] = 1 when *loss or sqrt(*sum_sq) is not finite; state[clip coefficient] as ops.hpp says (one thread)
void step_guard(double* state, const double* loss, const double* sum_sq, double max_norm, cudaStream_t stream);
// x *= float(state[clip coefficient]) when it is below 1 and state[skip] is 0
void clip_scale(float* x, std::size_t n, const double* state, cudaStream_t stream);
// Each row of x (rows x cols) divided by max(its L2 norm, eps) (float64 norm, one block per row).
void normalize_rows(float* x, int rows, int cols, float eps, cudaStream_t stream);
// dst[c, r] = src[r, c]
void transpose(float* dst, const float* src, int rows, int cols, cudaStream_t stream);
// *out (device double) = sum of x^2 in float64 over n values, in a fixed order (one block).
void sum_squares(double* out, const float* x, std::size_t n, cudaStream_t stream);
// Late-QAT fake quantisation per row: s = max(max|w_r| / 31, 1/31), dst = clamp(round(w/s), -32, 31) * s.
void fake_quant_int6(float* dst, const float* src, int rows, int cols, cudaStream_t stream);

}  // namespace pgolf::kernels
