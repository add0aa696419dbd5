#pragma once
// Per-head attention helpers of the CUDA backend (contracts in src/backend/ops.hpp:
// rope_apply, head_gain forward/backward, xsa forward/backward; float32).
#include <driver_types.h>

namespace pgolf::kernels {

// Partial RoPE in place on rows x heads x hd (row r is position r % seq); inverse = transpose.
void rope_apply(float* x, const float* cos_table, const float* sin_table, int rows, int seq, int heads, int hd,
                int rope_dims, bool inverse, cudaStream_t stream);
// y = x * gain[h] ; dx = dy * gain[h], dgain[h] += sum dy * x
void head_gain_forward(float* y, const float* x, const float* gain, int rows, int heads, int hd, cudaStream_t stream);
void head_gain_backward(float* dx, float* dgain, const float* dy, const float* x, const float* gain, int rows, int heads,
                        int hd, cudaStream_t stream);
// FusedOp::qk_prep (contracts in src/backend/ops.hpp): per-head RMSNorm, partial RoPE and,
// with a gain, the query gain in one pass per head vector (one warp each; hd <= 256); the
// backward reduces dgain first (head_gain_backward's kernel) and then writes dx (may be dout).
void qk_prep_forward(float* normed, float* out, float* rstd, const float* x, const float* gain, const float* cos_table,
                     const float* sin_table, int rows, int seq, int heads, int hd, int rope_dims, cudaStream_t stream);
void qk_prep_backward(float* dx, float* dgain, const float* dout, const float* x, const float* normed,
                      const float* rstd, const float* gain, const float* cos_table, const float* sin_table, int rows,
                      int seq, int heads, int hd, int rope_dims, cudaStream_t stream);
// XSA: out_h = y_h - (y_h . vhat_g) vhat_g with vhat = v / max(|v|, 1e-12) per row and KV
// head; backward writes dy and accumulates dv. One thread per (row, KV head), the same
// sequential float64 dot products as the CPU reference (hd <= 256).
void xsa_forward(float* out, const float* y, const float* v, int rows, int heads, int kv_heads, int hd,
                 cudaStream_t stream);
void xsa_backward(float* dy, float* dv, const float* dout, const float* y, const float* v, int rows, int heads,
                  int kv_heads, int hd, cudaStream_t stream);

}  // namespace pgolf::kernels
