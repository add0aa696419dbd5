// Token-mixing, skip and lane kernels (see mixing.cuh).
#include "portable.cuh"  // first: it decides how the CUDA keywords compile

#include <cmath>

#include "block_reduce.cuh"
#include "grid.cuh"
#include "mixing.cuh"

namespace pgolf::kernels {

namespace {

constexpr int kThreads = kGridThreads;

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

dim3 column_grid(int dim) { return dim3(static_cast<unsigned>((dim + kThreads - 1) / kThreads)); }

__global__ void smear_forward_kernel(float* y, const float* x, const float* gate, int seq, int dim, std::size_t total) {
  for (std::size_t i = first_index(); i < total; i += grid_stride()) {
    const std::size_t row = i / static_cast<std::size_t>(dim), c = i % static_cast<std::size_t>(dim);
    const float g = sigmoid(gate[c]);
    const float prev = row % static_cast<std::size_t>(seq) == 0 ? 0.0f : x[i - static_cast<std::size_t>(dim)];
    y[i] = (1.0f - g) * x[i] + g * prev;
  }
}

__global__ void smear_gate_grad_kernel(float* dgate, const float* dy, const float* x, const float* gate, int n, int seq,
                                       int dim) {
  const int c = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (c >= dim) return;
  const float g = sigmoid(gate[c]);
  double acc = 0.0;
  for (int i = 0; i < n; ++i) {
    const std::size_t o = static_cast<std::size_t>(i) * dim + static_cast<std::size_t>(c);
    const float prev = i % seq == 0 ? 0.0f : x[o - static_cast<std::size_t>(dim)];
    acc += static_cast<double>(dy[o]) * (prev - x[o]) * g * (1.0f - g);
  }
  dgate[c] += static_cast<float>(acc);
}

__global__ void smear_input_grad_kernel(float* dx, const float* dy, const float* gate, int seq, int dim, std::size_t total) {
  for (std::size_t i = first_index(); i < total; i += grid_stride()) {
    const std::size_t row = i / static_cast<std::size_t>(dim), c = i % static_cast<std::size_t>(dim);
    const float g = sigmoid(gate[c]);
    const bool last = (row + 1) % static_cast<std::size_t>(seq) == 0;
    dx[i] = (1.0f - g) * dy[i] + (last ? 0.0f : g * dy[i + static_cast<std::size_t>(dim)]);
  }
}

__global__ void skip_forward_kernel(float* x, const float* s, const float* w, const float* gate, int dim,
                                    std::size_t total) {
  for (std::size_t i = first_index(); i < total; i += grid_stride()) {
    const std::size_t c = i % static_cast<std::size_t>(dim);
    if (gate == nullptr) {
      x[i] += w[c] * s[i];
    } else {
      const float sg = sigmoid(gate[c]);
      x[i] = sg * x[i] + (1.0f - sg) * (w[c] * s[i]);
    }
  }
}

// dw and dgate, before dx is overwritten by the input-gradient kernel.
__global__ void skip_param_grad_kernel(float* dw, float* dgate, const float* dx, const float* x_before, const float* s,
                                       const float* w, const float* gate, int n, int dim) {
  const int c = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (c >= dim) return;
  const float sg = gate != nullptr ? sigmoid(gate[c]) : 0.0f;
  const float keep = gate != nullptr ? 1.0f - sg : 1.0f;
  double aw = 0.0, ag = 0.0;
  for (int i = 0; i < n; ++i) {
    const std::size_t o = static_cast<std::size_t>(i) * dim + static_cast<std::size_t>(c);
    aw += static_cast<double>(dx[o]) * keep * s[o];
    if (gate != nullptr) ag += static_cast<double>(dx[o]) * (x_before[o] - w[c] * s[o]) * sg * (1.0f - sg);
  }
  dw[c] += static_cast<float>(aw);
  if (gate != nullptr) dgate[c] += static_cast<float>(ag);
}

__global__ void skip_input_grad_kernel(float* dx, float* ds, const float* w, const float* gate, int dim,
                                       std::size_t total) {
  for (std::size_t i = first_index(); i < total; i += grid_stride()) {
    const std::size_t c = i % static_cast<std::size_t>(dim);
    const float sg = gate != nullptr ? sigmoid(gate[c]) : 0.0f;
    const float keep = gate != nullptr ? 1.0f - sg : 1.0f;
    ds[i] += dx[i] * keep * w[c];
    if (gate != nullptr) dx[i] *= sg;
  }
}

__global__ void lane_merge_forward_kernel(float* out, const float* a, const float* b, const float* m, std::size_t n) {
  const float mv = *m;
  for (std::size_t i = first_index(); i < n; i += grid_stride()) out[i] = mv * a[i] + (1.0f - mv) * b[i];
}

__global__ void lane_merge_grad_kernel(float* dm, const float* dout, const float* a, const float* b, std::size_t n) {
  __shared__ double scratch[kThreads / 32];
  double acc = 0.0;
  for (std::size_t i = threadIdx.x; i < n; i += blockDim.x) acc += static_cast<double>(dout[i]) * (a[i] - b[i]);
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) *dm += static_cast<float>(acc);
}

__global__ void lane_merge_inputs_kernel(float* da, float* db, const float* dout, const float* m, std::size_t n) {
  const float mv = *m;
  for (std::size_t i = first_index(); i < n; i += grid_stride()) {
    da[i] = mv * dout[i];
    db[i] = (1.0f - mv) * dout[i];
  }
}

}  // namespace

void smear_forward(float* y, const float* x, const float* gate, int batch, int seq, int dim, cudaStream_t stream) {
  const std::size_t total = static_cast<std::size_t>(batch) * seq * dim;
  PG_LAUNCH(smear_forward_kernel, grid_for(total), dim3(kThreads), 0, stream, y, x, gate, seq, dim, total);
}

void smear_backward(float* dx, float* dgate, const float* dy, const float* x, const float* gate, int batch, int seq,
                    int dim, cudaStream_t stream) {
  const std::size_t total = static_cast<std::size_t>(batch) * seq * dim;
  PG_LAUNCH(smear_gate_grad_kernel, column_grid(dim), dim3(kThreads), 0, stream, dgate, dy, x, gate, batch * seq, seq, dim);
  PG_LAUNCH(smear_input_grad_kernel, grid_for(total), dim3(kThreads), 0, stream, dx, dy, gate, seq, dim, total);
}

void skip_forward(float* x, const float* s, const float* w, const float* gate, int n, int dim, cudaStream_t stream) {
  const std::size_t total = static_cast<std::size_t>(n) * dim;
  PG_LAUNCH(skip_forward_kernel, grid_for(total), dim3(kThreads), 0, stream, x, s, w, gate, dim, total);
}

void skip_backward(float* dx, float* ds, float* dw, float* dgate, const float* x_before, const float* s, const float* w,
                   const float* gate, int n, int dim, cudaStream_t stream) {
  const std::size_t total = static_cast<std::size_t>(n) * dim;
  PG_LAUNCH(skip_param_grad_kernel, column_grid(dim), dim3(kThreads), 0, stream, dw, dgate,
            static_cast<const float*>(dx), x_before, s, w, gate, n, dim);
  PG_LAUNCH(skip_input_grad_kernel, grid_for(total), dim3(kThreads), 0, stream, dx, ds, w, gate, dim, total);
}

void lane_merge_forward(float* out, const float* a, const float* b, const float* m, std::size_t n, cudaStream_t stream) {
  PG_LAUNCH(lane_merge_forward_kernel, grid_for(n), dim3(kThreads), 0, stream, out, a, b, m, n);
}

void lane_merge_backward(float* da, float* db, float* dm, const float* dout, const float* a, const float* b,
                         const float* m, std::size_t n, cudaStream_t stream) {
  PG_LAUNCH(lane_merge_grad_kernel, dim3(1), dim3(kThreads), 0, stream, dm, dout, a, b, n);
  PG_LAUNCH(lane_merge_inputs_kernel, grid_for(n), dim3(kThreads), 0, stream, da, db, dout, m, n);
}

}  // namespace pgolf::kernels
