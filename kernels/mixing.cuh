#pragma once
// Token-mixing, skip and lane kernels of the CUDA backend (contracts in src/backend/ops.hpp:
// smear, skip, lane_merge, forward and backward; float32, gates and scalars as device
// pointers). Parameter gradients are float64 column sums in row order (one thread per column),
// deterministic; they agree with the CPU's chunked sums to about an ulp.
#include <cstddef>

#include <driver_types.h>

namespace pgolf::kernels {

// SmearGate over batch sequences of seq rows: y[t] = (1-g) x[t] + g x[t-1], g = sigmoid(gate)
void smear_forward(float* y, const float* x, const float* gate, int batch, int seq, int dim, cudaStream_t stream);
void smear_backward(float* dx, float* dgate, const float* dy, const float* x, const float* gate, int batch, int seq,
                    int dim, cudaStream_t stream);
// In place: x += w * s, or x = sigmoid(g) x + (1 - sigmoid(g)) (w s) with a gate
void skip_forward(float* x, const float* s, const float* w, const float* gate, int n, int dim, cudaStream_t stream);
// dx in: gradient of the updated x, out: of x before the update; ds +=; dw +=; dgate += (gate may be null)
void skip_backward(float* dx, float* ds, float* dw, float* dgate, const float* x_before, const float* s, const float* w,
                   const float* gate, int n, int dim, cudaStream_t stream);
// out = m a + (1 - m) b ; da = m dout ; db = (1 - m) dout ; dm += sum dout (a - b)
void lane_merge_forward(float* out, const float* a, const float* b, const float* m, std::size_t n, cudaStream_t stream);
void lane_merge_backward(float* da, float* db, float* dm, const float* dout, const float* a, const float* b,
                         const float* m, std::size_t n, cudaStream_t stream);

}  // namespace pgolf::kernels
