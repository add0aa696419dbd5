// Embedding and row-group kernels (see embedding.cuh).
#include "portable.cuh"  // first: it decides how the CUDA keywords compile

#include <cstdint>

#include "embedding.cuh"
#include "grid.cuh"

namespace pgolf::kernels {

namespace {

constexpr int kThreads = kGridThreads;

dim3 column_grid(int dim) { return dim3(static_cast<unsigned>((dim + kThreads - 1) / kThreads)); }

__global__ void embedding_forward_kernel(float* out, const std::int32_t* ids, const float* table, int dim,
                                         std::size_t total) {
  for (std::size_t i = first_index(); i < total; i += grid_stride()) {
    const std::size_t row = i / static_cast<std::size_t>(dim), c = i % static_cast<std::size_t>(dim);
    out[i] = table[static_cast<std::size_t>(ids[row]) * static_cast<std::size_t>(dim) + c];
  }
}

__global__ void embedding_backward_kernel(float* dtable, const std::int32_t* ids, const float* dout, int n, int dim) {
  const int c = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (c >= dim) return;
  for (int i = 0; i < n; ++i)
    dtable[static_cast<std::size_t>(ids[i]) * static_cast<std::size_t>(dim) + static_cast<std::size_t>(c)] +=
        dout[static_cast<std::size_t>(i) * static_cast<std::size_t>(dim) + static_cast<std::size_t>(c)];
}

__global__ void bigram_hash_kernel(std::int32_t* out, const std::int32_t* ids, int seq, int buckets, std::size_t total) {
  const std::int64_t mod = buckets - 1;
  for (std::size_t i = first_index(); i < total; i += grid_stride()) {
    if (i % static_cast<std::size_t>(seq) == 0) {
      out[i] = static_cast<std::int32_t>(mod);
      continue;
    }
    // 32-bit two's-complement products, as int32 tensor arithmetic does.
    const std::uint32_t a = 36313u * static_cast<std::uint32_t>(ids[i]);
    const std::uint32_t c = 27191u * static_cast<std::uint32_t>(ids[i - 1]);
    const auto v = static_cast<std::int64_t>(static_cast<std::int32_t>(a ^ c));
    out[i] = static_cast<std::int32_t>(((v % mod) + mod) % mod);
  }
}

__global__ void add_group_rows_kernel(float* y, const float* x, const float* rows, int group_rows, int dim,
                                      std::size_t total) {
  for (std::size_t i = first_index(); i < total; i += grid_stride()) {
    const std::size_t row = i / static_cast<std::size_t>(dim), c = i % static_cast<std::size_t>(dim);
    y[i] = x[i] + rows[(row / static_cast<std::size_t>(group_rows)) * static_cast<std::size_t>(dim) + c];
  }
}

// One thread per (group, column): the group's rows in order, float64.
__global__ void sum_group_rows_kernel(float* out, const float* x, int groups, int group_rows, int dim) {
  const std::size_t k = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= static_cast<std::size_t>(groups) * static_cast<std::size_t>(dim)) return;
  const std::size_t g = k / static_cast<std::size_t>(dim), c = k % static_cast<std::size_t>(dim);
  double acc = 0.0;
  for (int r = 0; r < group_rows; ++r)
    acc += static_cast<double>(x[(g * static_cast<std::size_t>(group_rows) + static_cast<std::size_t>(r)) * dim + c]);
  out[k] = static_cast<float>(acc);
}

__global__ void scale_rows_kernel(float* x, const float* w, int dim, std::size_t total) {
  for (std::size_t i = first_index(); i < total; i += grid_stride()) {
    const float wi = w[i / static_cast<std::size_t>(dim)];
    x[i] = wi == 0.0f ? 0.0f : x[i] * wi;
  }
}

}  // namespace

void embedding_forward(float* out, const std::int32_t* ids, const float* table, int n, int dim, cudaStream_t stream) {
  const std::size_t total = static_cast<std::size_t>(n) * static_cast<std::size_t>(dim);
  PG_LAUNCH(embedding_forward_kernel, grid_for(total), dim3(kThreads), 0, stream, out, ids, table, dim, total);
}

void embedding_backward(float* dtable, const std::int32_t* ids, const float* dout, int n, int dim, cudaStream_t stream) {
  if (dim == 0) return;
  PG_LAUNCH(embedding_backward_kernel, column_grid(dim), dim3(kThreads), 0, stream, dtable, ids, dout, n, dim);
}

void bigram_hash(std::int32_t* out, const std::int32_t* ids, int batch, int seq, int buckets, cudaStream_t stream) {
  const std::size_t total = static_cast<std::size_t>(batch) * static_cast<std::size_t>(seq);
  PG_LAUNCH(bigram_hash_kernel, grid_for(total), dim3(kThreads), 0, stream, out, ids, seq, buckets, total);
}

void add_group_rows(float* y, const float* x, const float* rows, int groups, int group_rows, int dim, cudaStream_t stream) {
  const std::size_t total = static_cast<std::size_t>(groups) * static_cast<std::size_t>(group_rows) * dim;
  PG_LAUNCH(add_group_rows_kernel, grid_for(total), dim3(kThreads), 0, stream, y, x, rows, group_rows, dim, total);
}

void sum_group_rows(float* out, const float* x, int groups, int group_rows, int dim, cudaStream_t stream) {
  const std::size_t k = static_cast<std::size_t>(groups) * static_cast<std::size_t>(dim);
  if (k == 0) return;
  PG_LAUNCH(sum_group_rows_kernel, dim3(static_cast<unsigned>((k + kThreads - 1) / kThreads)), dim3(kThreads), 0, stream,
            out, x, groups, group_rows, dim);
}

void scale_rows(float* x, const float* w, int n, int dim, cudaStream_t stream) {
  const std::size_t total = static_cast<std::size_t>(n) * static_cast<std::size_t>(dim);
  PG_LAUNCH(scale_rows_kernel, grid_for(total), dim3(kThreads), 0, stream, x, w, dim, total);
}

}  // namespace pgolf::kernels
