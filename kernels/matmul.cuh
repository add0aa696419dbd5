#pragma once
// Matrix products of the CUDA backend through cuBLASLt (contracts in src/backend/ops.hpp:
// matmul_forward/backward and gemm, row-major float32 tensors). cuBLASLt is column-major: a
// row-major r x c matrix is the column-major c x r matrix with leading dimension c, so each
// product is issued transposed (see matmul.cu). Float32 operands and float32 compute here;
// the bf16 path of SPEC 9 will add a conversion in front of the same calls.
#include <cublasLt.h>
#include <driver_types.h>

#include <stdexcept>

namespace pgolf::kernels {

// A cuBLASLt call that returned an error status (the backend reports it as a device error).
class CublasError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// y[n, out] (= or +=) x[n, in] @ w[out, in]^T
void matmul_forward(cublasLtHandle_t lt, float* y, const float* x, const float* w, int n, int in, int out,
                    bool accumulate, cudaStream_t stream);
// dx[n, in] (= or += per accumulate_dx; skipped when null) = dy @ w ; dw[out, in] += dy^T @ x (skipped when null)
void matmul_backward(cublasLtHandle_t lt, float* dx, float* dw, const float* dy, const float* x, const float* w, int n,
                     int in, int out, bool accumulate_dx, cudaStream_t stream);
// c[m, n] = alpha * op(a) @ op(b) + beta * c, op(x) = x or x^T; a is m x k after op, b k x n.
void gemm(cublasLtHandle_t lt, float* c, const float* a, const float* b, int m, int n, int k, bool trans_a, bool trans_b,
          float alpha, float beta, cudaStream_t stream);

}  // namespace pgolf::kernels
