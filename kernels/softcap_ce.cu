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

__global__ void softcap_ce_rows_kernel(float* logits, float* nll, double* row_nll, const std::int32_t* targets,
                                       int vocab, float cap) {
  __shared__ double scratch[kThreads / 32];
  float* z = logits + static_cast<std::size_t>(blockIdx.x) * static_cast<std::size_t>(vocab);
  double mx = -INFINITY;
  for (int c = static_cast<int>(threadIdx.x); c < vocab; c += static_cast<int>(blockDim.x)) {
    z[c] = cap * tanhf(z[c] / cap);
    mx = fmax(mx, static_cast<double>(z[c]));
  }
  mx = block_max(mx, scratch);
  const double sum = row_exp_sum(z, vocab, mx, scratch);
  if (threadIdx.x == 0) {
    const double v = mx + log(sum) - z[targets[blockIdx.x]];
    row_nll[blockIdx.x] = v;
    if (nll != nullptr) nll[blockIdx.x] = static_cast<float>(v);
  }
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
  const int target = targets[blockIdx.x];
  for (int c = static_cast<int>(threadIdx.x); c < vocab; c += static_cast<int>(blockDim.x)) {
    double p = exp(static_cast<double>(z[c]) - mx) / sum;
    if (c == target) p -= 1.0;
    const double t = static_cast<double>(z[c]) / cap;  // tanh(z_pre / cap)
    dz[row + c] = static_cast<float>(p * scale * (1.0 - t * t));
  }
}

}  // namespace

void softcap_ce_forward(float* logits, float* nll, float* loss_sum, const std::int32_t* targets, int n, int vocab,
                        float cap, double* row_nll, cudaStream_t stream) {
  if (n > 0) {
    PG_LAUNCH(softcap_ce_rows_kernel, dim3(static_cast<unsigned>(n)), dim3(kThreads), 0, stream, logits, nll, row_nll,
              targets, vocab, cap);
  }
  PG_LAUNCH(sum_rows_kernel, dim3(1), dim3(32), 0, stream, loss_sum, static_cast<const double*>(row_nll), n);
}

void softcap_ce_backward(float* dz, const float* logits, const std::int32_t* targets, int n, int vocab, float cap,
                         float scale, cudaStream_t stream) {
  if (n == 0) return;
  PG_LAUNCH(softcap_ce_backward_kernel, dim3(static_cast<unsigned>(n)), dim3(kThreads), 0, stream, dz, logits, targets,
            vocab, cap, scale);
}

}  // namespace pgolf::kernels
