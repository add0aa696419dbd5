#pragma once
// Embedding kernels of the CUDA backend (contracts in src/backend/ops.hpp: embedding forward
// and backward, bigram_hash, and SLOT's add_group_rows / sum_group_rows / scale_rows).
#include <cstdint>

#include <driver_types.h>

namespace pgolf::kernels {

// out[i, :] = table[ids[i], :]
void embedding_forward(float* out, const std::int32_t* ids, const float* table, int n, int dim, cudaStream_t stream);
// dtable[ids[i], :] += dout[i, :], rows added in index order per column (deterministic,
// no atomics; parallel over columns only, like the CPU reference).
void embedding_backward(float* dtable, const std::int32_t* ids, const float* dout, int n, int dim, cudaStream_t stream);
// BigramHash bucket ids for batch sequences of seq tokens (int32 wrap-around arithmetic).
void bigram_hash(std::int32_t* out, const std::int32_t* ids, int batch, int seq, int buckets, cudaStream_t stream);
// y[i, :] = x[i, :] + rows[i / group_rows, :]
void add_group_rows(float* y, const float* x, const float* rows, int groups, int group_rows, int dim, cudaStream_t stream);
// out[g, :] = sum of the group's rows (float64, in row order)
void sum_group_rows(float* out, const float* x, int groups, int group_rows, int dim, cudaStream_t stream);
// x[i, :] *= w[i]; a row with weight 0 becomes exactly 0
void scale_rows(float* x, const float* w, int n, int dim, cudaStream_t stream);

}  // namespace pgolf::kernels
