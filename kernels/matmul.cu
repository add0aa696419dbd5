// Row-major products through cuBLASLt's column-major matmul (see matmul.cuh). With R(M) the
// column-major view of a row-major matrix M (its transpose, same bytes):
//   y = x w^T          ->  R(y)  = op_T(R(w)) R(x)         (m = out, n = n, k = in)
//   dx = dy w          ->  R(dx) = R(w) R(dy)               (m = in,  n = n, k = out)
//   dw += dy^T x       ->  R(dw) = R(x) op_T(R(dy)), beta 1 (m = in,  n = out, k = n)
//   c = op(a) op(b)    ->  R(c)  = op(R(b)) op(R(a))        (m = n, n = m)
#include "portable.cuh"  // first: it decides how the CUDA keywords compile

#include <cstdint>
#include <string>

#include "matmul.cuh"

namespace pgolf::kernels {

namespace {

void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw CublasError(std::string("cuBLASLt: ") + what + " failed with status " + std::to_string(static_cast<int>(s)));
}

// One column-major float32 product D = alpha op(A) op(B) + beta D, A stored rows_a x cols_a
// (leading dimension rows_a), B likewise, D m x n.
void lt_matmul(cublasLtHandle_t lt, float* d, const float* a, int rows_a, int cols_a, bool trans_a, const float* b,
               int rows_b, int cols_b, bool trans_b, int m, int n, float alpha, float beta, cudaStream_t stream) {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, ld = nullptr;
  check(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul descriptor");
  const cublasOperation_t ta = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "TRANSA");
  check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "TRANSB");
  check(cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, static_cast<std::uint64_t>(rows_a), static_cast<std::uint64_t>(cols_a),
                                   rows_a),
        "layout A");
  check(cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, static_cast<std::uint64_t>(rows_b), static_cast<std::uint64_t>(cols_b),
                                   rows_b),
        "layout B");
  check(cublasLtMatrixLayoutCreate(&ld, CUDA_R_32F, static_cast<std::uint64_t>(m), static_cast<std::uint64_t>(n), m),
        "layout D");
  const cublasStatus_t s =
      cublasLtMatmul(lt, desc, &alpha, a, la, b, lb, &beta, d, ld, d, ld, nullptr, nullptr, 0, stream);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(ld);
  cublasLtMatmulDescDestroy(desc);
  check(s, "matmul");
}

}  // namespace

void matmul_forward(cublasLtHandle_t lt, float* y, const float* x, const float* w, int n, int in, int out,
                    bool accumulate, cudaStream_t stream) {
  if (n == 0 || out == 0) return;
  lt_matmul(lt, y, w, in, out, true, x, in, n, false, out, n, 1.0f, accumulate ? 1.0f : 0.0f, stream);
}

void matmul_backward(cublasLtHandle_t lt, float* dx, float* dw, const float* dy, const float* x, const float* w, int n,
                     int in, int out, bool accumulate_dx, cudaStream_t stream) {
  if (n == 0) return;
  if (dx != nullptr) lt_matmul(lt, dx, w, in, out, false, dy, out, n, false, in, n, 1.0f, accumulate_dx ? 1.0f : 0.0f, stream);
  if (dw != nullptr) lt_matmul(lt, dw, x, in, n, false, dy, out, n, true, in, out, 1.0f, 1.0f, stream);
}

void gemm(cublasLtHandle_t lt, float* c, const float* a, const float* b, int m, int n, int k, bool trans_a, bool trans_b,
          float alpha, float beta, cudaStream_t stream) {
  if (m == 0 || n == 0) return;
  // R(b) is n x k stored (b row-major k x n) unless trans_b (then b is n x k row-major: R is k x n).
  lt_matmul(lt, c, b, trans_b ? k : n, trans_b ? n : k, trans_b, a, trans_a ? m : k, trans_a ? k : m, trans_a, n, m, alpha,
            beta, stream);
}

}  // namespace pgolf::kernels
