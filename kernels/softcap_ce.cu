// Softcapped cross-entropy (see softcap_ce.cuh): one block per row for the statistics, one
// block for the loss sum (rows added in index order, so the result is deterministic).
#include "portable.cuh"  // first: it decides how the CUDA keywords compile

#include <cmath>

#include "block_reduce.cuh"
#include "softcap_ce.cuh"

namespace pgolf::kernels {

namespace {

constexpr int kThreads = 256;

// sum over the row of exp(z[c] - mx), float64, for every thread of the block.
__device__ double row_exp_sum(const float* z, int vocab, double mx, double* scratch) {
  double sum = 0.0;
  for (int c = static_cast<int>(threadIdx.x); c < vocab; c += static_cast<int>(blockDim.x))
    sum += exp(static_cast<double>(z[c]) - mx);
  return block_sum(sum, scratch);
}

// d[c] = scale * (softmax(z)[c] - [c == target]) * (1 - (z[c] / cap)^2) over the row; each
// thread reads and writes only its own columns, so d may be z.
__device__ void softcap_grad_row(float* d, const float* z, int target, int vocab, float cap, float scale, double mx,
                                 double sum) {
  for (int c = static_cast<int>(threadIdx.x); c < vocab; c += static_cast<int>(blockDim.x)) {
    double p = exp(static_cast<double>(z[c]) - mx) / sum;
    if (c == target) p -= 1.0;
    const double t = static_cast<double>(z[c]) / cap;  // tanh(z_pre / cap)
    d[c] = static_cast<float>(p * scale * (1.0 - t * t));
  }
}

// The forward's rows; with `fused`, the gradient replaces the logits afterwards.
__global__ void softcap_ce_rows_kernel(float* logits, float* nll, double* row_nll, const std::int32_t* targets,
                                       int vocab, float cap, bool fused, float scale) {
  __shared__ double scratch[kThreads / 32];
  float* z = logits + static_cast<std::size_t>(blockIdx.x) * static_cast<std::size_t>(vocab);
  double mx = -INFINITY;
  for (int c = static_cast<int>(threadIdx.x); c < vocab; c += static_cast<int>(blockDim.x)) {
    z[c] = cap * tanhf(z[c] / cap);
    mx = fmax(mx, static_cast<double>(z[c]));
  }
  mx = block_max(mx, scratch);
  const double sum = row_exp_sum(z, vocab, mx, scratch);
  const int target = targets[blockIdx.x];
  if (threadIdx.x == 0) {
    const double v = mx + log(sum) - z[target];
    row_nll[blockIdx.x] = v;
    if (nll != nullptr) nll[blockIdx.x] = static_cast<float>(v);
  }
  if (!fused) return;
  __syncthreads();  // thread 0 has read z[target] before any thread overwrites it
  softcap_grad_row(z, z, target, vocab, cap, scale, mx, sum);
}

__global__ void sum_rows_kernel(float* loss_sum, const double* row_nll, int n) {
  // One thread adds the rows in index order: a deterministic total, cheap next to the rows.
  if (threadIdx.x != 0) return;
  double s = 0.0;
  for (int i = 0; i < n; ++i) s += row_nll[i];
  *loss_sum = static_cast<float>(s);
}

__global__ void softcap_ce_backward_kernel(float* dz, const float* logits, const std::int32_t* targets, int vocab,
                                           float cap, float scale) {
  __shared__ double scratch[kThreads / 32];
  const std::size_t row = static_cast<std::size_t>(blockIdx.x) * static_cast<std::size_t>(vocab);
  const float* z = logits + row;
  double mx = -INFINITY;
  for (int c = static_cast<int>(threadIdx.x); c < vocab; c += static_cast<int>(blockDim.x))
    mx = fmax(mx, static_cast<double>(z[c]));
  mx = block_max(mx, scratch);
  const double sum = row_exp_sum(z, vocab, mx, scratch);
  softcap_grad_row(dz + row, z, targets[blockIdx.x], vocab, cap, scale, mx, sum);
}

}  // namespace

namespace {

void launch_rows(float* logits, float* nll, float* loss_sum, const std::int32_t* targets, int n, int vocab, float cap,
                 bool fused, float scale, double* row_nll, cudaStream_t stream) {
  if (n > 0) {
    PG_LAUNCH(softcap_ce_rows_kernel, dim3(static_cast<unsigned>(n)), dim3(kThreads), 0, stream, logits, nll, row_nll,
              targets, vocab, cap, fused, scale);
  }
  PG_LAUNCH(sum_rows_kernel, dim3(1), dim3(32), 0, stream, loss_sum, static_cast<const double*>(row_nll), n);
}

}  // namespace

void softcap_ce_forward(float* logits, float* nll, float* loss_sum, const std::int32_t* targets, int n, int vocab,
                        float cap, double* row_nll, cudaStream_t stream) {
  launch_rows(logits, nll, loss_sum, targets, n, vocab, cap, false, 0.0f, row_nll, stream);
}

void softcap_ce_fused(float* z, float* nll, float* loss_sum, const std::int32_t* targets, int n, int vocab, float cap,
                      float scale, double* row_nll, cudaStream_t stream) {
  launch_rows(z, nll, loss_sum, targets, n, vocab, cap, true, scale, row_nll, stream);
}

void softcap_ce_backward(float* dz, const float* logits, const std::int32_t* targets, int n, int vocab, float cap,
                         float scale, cudaStream_t stream) {
  if (n == 0) return;
  PG_LAUNCH(softcap_ce_backward_kernel, dim3(static_cast<unsigned>(n)), dim3(kThreads), 0, stream, dz, logits, targets,
            vocab, cap, scale);
}

}  // namespace pgolf::kernels
