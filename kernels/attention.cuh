#pragma once
// Causal GQA attention of the CUDA backend (contracts in src/backend/ops.hpp:
// attention_forward/backward, float32). This is the reference-grade version: the forward runs
// one thread per query row and the backward one thread per (sequence, KV head), each doing
// exactly the CPU reference's sequence of float operations, so the results match it bit for
// bit. It is correct and slow; a tiled (flash-style) kernel on tensor cores will replace it,
// checked against this one.
#include <driver_types.h>

namespace pgolf::kernels {

constexpr int kAttentionMaxSeq = 4096;  // per-thread score buffers
constexpr int kAttentionMaxHeadDim = 256;

// q (B*T x H x hd), k and v (B*T x Hkv x hd) -> y (B*T x H x hd), lse (B x H x T)
void attention_forward(float* y, float* lse, const float* q, const float* k, const float* v, int batch, int seq,
                       int heads, int kv_heads, int hd, cudaStream_t stream);
// dq =, dk =, dv (= or += per accumulate_dv). `dv_workspace` holds B*T*Hkv*hd floats.
void attention_backward(float* dq, float* dk, float* dv, const float* dy, const float* q, const float* k, const float* v,
                        const float* y, const float* lse, int batch, int seq, int heads, int kv_heads, int hd,
                        bool accumulate_dv, float* dv_workspace, cudaStream_t stream);

}  // namespace pgolf::kernels
