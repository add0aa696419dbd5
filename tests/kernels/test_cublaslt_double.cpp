// The cuBLASLt double (kernels/emu/cublaslt_double.cpp) against a naive GEMM written here
// from cuBLASLt's documented column-major semantics, for every supported combination of
// operations, types, batching, beta and padded leading dimensions; and loud rejection of
// everything outside the subset.
#include <cublasLt.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "emu/runtime.hpp"
#include "kernels/emu_errors.hpp"

namespace pgolf::emu {
namespace {

float bf16_round(float f) {  // round to nearest even, as a bf16 value
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  u &= 0xFFFF0000u;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// A column-major matrix of `rows` x `cols` with leading dimension ld, `batch` copies `stride`
// elements apart, stored as float32 or as bf16 bits.
struct Matrix {
  cudaDataType type;
  int rows, cols, ld, batch;
  std::int64_t stride;
  std::vector<float> values;  // the exact values (bf16-representable when type is bf16)
  std::vector<std::uint16_t> bits;
  const void* data() const { return type == CUDA_R_32F ? static_cast<const void*>(values.data()) : bits.data(); }
  void* data() { return type == CUDA_R_32F ? static_cast<void*>(values.data()) : bits.data(); }
  float at(int b, int r, int c) const {
    const std::size_t i = static_cast<std::size_t>(b * stride + r + static_cast<std::int64_t>(c) * ld);
    if (type == CUDA_R_32F) return values[i];
    const std::uint32_t u = std::uint32_t{bits[i]} << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  }
};

Matrix make(cudaDataType type, int rows, int cols, int batch, std::mt19937& rng) {
  Matrix m{type, rows, cols, rows + 3, batch, 0, {}, {}};  // padded leading dimension
  m.stride = static_cast<std::int64_t>(m.ld) * cols + 5;    // and gaps between batches
  const std::size_t n = static_cast<std::size_t>(m.stride * batch);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  m.values.resize(n);
  for (auto& v : m.values) v = bf16_round(u(rng));
  if (type == CUDA_R_16BF) {
    m.bits.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      std::uint32_t w;
      std::memcpy(&w, &m.values[i], sizeof w);
      m.bits[i] = static_cast<std::uint16_t>(w >> 16);
    }
  }
  return m;
}

cublasLtMatrixLayout_t layout_of(const Matrix& m) {
  cublasLtMatrixLayout_t l = nullptr;
  EXPECT_EQ(cublasLtMatrixLayoutCreate(&l, m.type, static_cast<std::uint64_t>(m.rows), static_cast<std::uint64_t>(m.cols),
                                       m.ld),
            CUBLAS_STATUS_SUCCESS);
  const std::int32_t batch = m.batch;
  const std::int64_t stride = m.stride;
  EXPECT_EQ(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof batch), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride),
            CUBLAS_STATUS_SUCCESS);
  return l;
}

TEST(CublasLtDouble, MatchesANaiveGemmForEverySupportedCombination) {
  std::mt19937 rng(11);
  struct Types {
    cudaDataType ab, cd;
  };
  int cases = 0;
  for (Types t : {Types{CUDA_R_16BF, CUDA_R_16BF}, Types{CUDA_R_16BF, CUDA_R_32F}, Types{CUDA_R_32F, CUDA_R_32F}})
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (int batch : {1, 3})
          for (float beta : {0.0f, 0.5f}) {
            const int m = 7, n = 5, k = 9;
            const Matrix A = make(t.ab, ta ? k : m, ta ? m : k, batch, rng);
            const Matrix B = make(t.ab, tb ? n : k, tb ? k : n, batch, rng);
            Matrix C = make(t.cd, m, n, batch, rng);
            const Matrix C0 = C;
            cublasLtHandle_t h;
            cublasLtMatmulDesc_t d;
            ASSERT_EQ(cublasLtCreate(&h), CUBLAS_STATUS_SUCCESS);
            ASSERT_EQ(cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F), CUBLAS_STATUS_SUCCESS);
            const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
            ASSERT_EQ(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa), CUBLAS_STATUS_SUCCESS);
            ASSERT_EQ(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb), CUBLAS_STATUS_SUCCESS);
            auto la = layout_of(A), lb = layout_of(B), lc = layout_of(C);
            const float alpha = 1.25f;
            // D = C in place, as the backend accumulates.
            ASSERT_EQ(cublasLtMatmul(h, d, &alpha, A.data(), la, B.data(), lb, &beta, C.data(), lc, C.data(), lc, nullptr,
                                     nullptr, 0, nullptr),
                      CUBLAS_STATUS_SUCCESS);
            for (int b = 0; b < batch; ++b)
              for (int i = 0; i < m; ++i)
                for (int j = 0; j < n; ++j) {
                  double ref = 0, mag = 0;
                  for (int p = 0; p < k; ++p) {
                    const double x = ta ? A.at(b, p, i) : A.at(b, i, p), y = tb ? B.at(b, j, p) : B.at(b, p, j);
                    ref += x * y;
                    mag += std::fabs(x * y);
                  }
                  ref = alpha * ref + beta * C0.at(b, i, j);
                  mag = alpha * mag + std::fabs(beta * C0.at(b, i, j));
                  // float32 accumulation of k terms, plus bf16 rounding of a bf16 output.
                  const double tol = 2e-6 * k * mag + (t.cd == CUDA_R_16BF ? std::ldexp(std::fabs(ref), -8) : 0.0);
                  ASSERT_NEAR(C.at(b, i, j), ref, tol) << "types " << t.ab << "/" << t.cd << " ta " << ta << " tb " << tb
                                                       << " batch " << b << " (" << i << ", " << j << ")";
                }
            // The padding between columns and between batches is never written.
            for (std::size_t e = 0; e < C.values.size(); ++e) {
              const auto col_pos = static_cast<int>((static_cast<std::int64_t>(e) % C.stride) % C.ld);
              const bool inside_batch = static_cast<std::int64_t>(e) % C.stride < static_cast<std::int64_t>(C.ld) * n;
              if (!inside_batch || col_pos >= m) {
                if (t.cd == CUDA_R_32F) ASSERT_EQ(C.values[e], C0.values[e]) << "padding element " << e;
                else ASSERT_EQ(C.bits[e], C0.bits[e]) << "padding element " << e;
              }
            }
            cublasLtMatrixLayoutDestroy(la);
            cublasLtMatrixLayoutDestroy(lb);
            cublasLtMatrixLayoutDestroy(lc);
            cublasLtMatmulDescDestroy(d);
            cublasLtDestroy(h);
            ++cases;
          }
  EXPECT_EQ(cases, 3 * 2 * 2 * 2 * 2);
}

TEST(CublasLtDouble, RejectsWhatItDoesNotImplementLoudly) {
  cublasLtMatmulDesc_t d = nullptr;
  EXPECT_NE(error_of([&] { cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_16F, CUDA_R_16F); }).find("compute type"),
            std::string::npos);
  ASSERT_EQ(cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F), CUBLAS_STATUS_SUCCESS);
  const cublasOperation_t conj = CUBLAS_OP_C;
  EXPECT_NE(error_of([&] { cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSA, &conj, sizeof conj); })
                .find("CUBLASLT_MATMUL_DESC_TRANSA"),
            std::string::npos);
  const cublasLtEpilogue_t relu = CUBLASLT_EPILOGUE_RELU;
  EXPECT_NE(error_of([&] { cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_EPILOGUE, &relu, sizeof relu); })
                .find("epilogue"),
            std::string::npos);
  const int wrong_size = 0;
  EXPECT_NE(error_of([&] { cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_EPILOGUE, &wrong_size, 2); })
                .find("expects 4 bytes"),
            std::string::npos);
  cublasLtMatrixLayout_t l = nullptr;
  EXPECT_NE(error_of([&] { cublasLtMatrixLayoutCreate(&l, CUDA_R_16F, 4, 4, 4); }).find("matrix type"), std::string::npos);
  EXPECT_NE(error_of([&] { cublasLtMatrixLayoutCreate(&l, CUDA_R_32F, 4, 4, 3); }).find("leading dimension 3"),
            std::string::npos);
  ASSERT_EQ(cublasLtMatrixLayoutCreate(&l, CUDA_R_32F, 4, 4, 4), CUBLAS_STATUS_SUCCESS);
  const cublasLtOrder_t row = CUBLASLT_ORDER_ROW;
  EXPECT_NE(error_of([&] { cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_ORDER, &row, sizeof row); })
                .find("matrix order"),
            std::string::npos);
  // Shapes that do not fit: A 4 x 4 times B 3 x 4.
  cublasLtMatrixLayout_t lb = nullptr;
  ASSERT_EQ(cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, 3, 4, 3), CUBLAS_STATUS_SUCCESS);
  cublasLtHandle_t h;
  cublasLtCreate(&h);
  std::vector<float> a(16), b(12), c(16);
  const float one = 1, zero = 0;
  EXPECT_NE(error_of([&] {
              cublasLtMatmul(h, d, &one, a.data(), l, b.data(), lb, &zero, c.data(), l, c.data(), l, nullptr, nullptr, 0,
                             nullptr);
            }).find("inner dimensions differ"),
            std::string::npos);
  cublasLtDestroy(h);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(l);
  cublasLtMatmulDescDestroy(d);
}

}  // namespace
}  // namespace pgolf::emu
