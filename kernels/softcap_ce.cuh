#pragma once
// The head's softcapped cross-entropy (contracts: softcap_ce_forward/backward in
// src/backend/ops.hpp, float32 logits, float64 row statistics like the CPU reference).
#include <cstddef>
#include <cstdint>

#include <driver_types.h>

namespace pgolf::kernels {

// In place on z (n x vocab): logits = cap * tanh(z / cap); nll[i] (may be null) = logsumexp -
// logit[target]; *loss_sum = the float64 sum of the row NLLs, rounded to float. `row_nll` is
// workspace of n doubles (device).
void softcap_ce_forward(float* logits, float* nll, float* loss_sum, const std::int32_t* targets, int n, int vocab,
                        float cap, double* row_nll, cudaStream_t stream);
// dz = d(scale * sum nll)/dz from the softcapped logits; dz may be logits (in place).
void softcap_ce_backward(float* dz, const float* logits, const std::int32_t* targets, int n, int vocab, float cap,
                         float scale, cudaStream_t stream);
// Both in one pass per row (FusedOp::softcap_ce): z ends holding dz; nll, *loss_sum as the forward.
void softcap_ce_fused(float* z, float* nll, float* loss_sum, const std::int32_t* targets, int n, int vocab, float cap,
                      float scale, double* row_nll, cudaStream_t stream);

}  // namespace pgolf::kernels
