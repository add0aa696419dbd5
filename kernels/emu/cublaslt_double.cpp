// A host double of the cuBLASLt subset pgolf's CUDA backend uses, for the emulated build
// (declarations: the real <cublasLt.h>, so signatures cannot drift). It implements
// cublasLtMatmul's documented column-major semantics,
//   D[b] = alpha * op(A[b]) op(B[b]) + beta * C[b]      (op = N or T)
// with A and B in bf16 or float32, C and D in bf16 or float32, float32 compute and scale
// types, strided batches and the default epilogue, accumulating in float32 in k order.
// Everything else (other types, compute modes, row order, conjugates, epilogues, pointer
// modes, unknown attributes, inconsistent shapes) is rejected loudly: a pgolf::emu::Error
// naming what is not supported, not a silent fallback.
#include <cublasLt.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "emu/cuda_runtime_double.hpp"
#include "emu/runtime.hpp"

namespace pgolf::emu {

namespace {

[[noreturn]] void unsupported(const std::string& what) {
  throw Error("cuBLASLt double: " + what +
              " is not supported (the emulator implements float32 compute, bf16/float32 column-major matrices, "
              "N/T operations, strided batches and the default epilogue)");
}

struct Desc {
  cublasOperation_t trans_a = CUBLAS_OP_N;
  cublasOperation_t trans_b = CUBLAS_OP_N;
};
struct Layout {
  cudaDataType type = CUDA_R_32F;
  std::uint64_t rows = 0, cols = 0;
  std::int64_t ld = 0;
  std::int32_t batch = 1;
  std::int64_t stride = 0;
};
// The opaque handles of <cublasLt.h> carry a pointer to the double's own state in their
// first word (copied in and out, so no type punning).
template <class State, class Opaque>
Opaque* make_handle(State init) {
  auto* h = new Opaque{};
  State* state = new State(init);
  std::memcpy(h->data, &state, sizeof state);
  return h;
}
template <class State, class Opaque>
State& state_of(Opaque* h) {
  State* state;
  std::memcpy(&state, h->data, sizeof state);
  return *state;
}
template <class State, class Opaque>
void destroy_handle(Opaque* h) {
  if (h == nullptr) return;
  delete &state_of<State>(h);
  delete h;
}
Desc& desc(cublasLtMatmulDesc_t d) { return state_of<Desc>(d); }
Layout& layout(cublasLtMatrixLayout_t l) { return state_of<Layout>(l); }

template <class T>
T read_attribute(const void* buf, std::size_t size, const char* name) {
  if (buf == nullptr || size != sizeof(T)) throw Error(std::string("cuBLASLt double: attribute ") + name + " expects " +
                                                       std::to_string(sizeof(T)) + " bytes, got " + std::to_string(size));
  T v;
  std::memcpy(&v, buf, sizeof v);
  return v;
}

float load(const void* base, cudaDataType type, std::int64_t index) {
  if (type == CUDA_R_32F) return static_cast<const float*>(base)[index];
  const std::uint32_t bits = std::uint32_t{static_cast<const std::uint16_t*>(base)[index]} << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

void store(void* base, cudaDataType type, std::int64_t index, float v) {
  if (type == CUDA_R_32F) {
    static_cast<float*>(base)[index] = v;
    return;
  }
  std::uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  std::uint16_t h;
  if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu) != 0) {
    h = 0x7FC0;  // NaN stays NaN
  } else {
    u += 0x7FFFu + ((u >> 16) & 1u);  // round to nearest, ties to even
    h = static_cast<std::uint16_t>(u >> 16);
  }
  static_cast<std::uint16_t*>(base)[index] = h;
}

const char* type_name(cudaDataType t) {
  return t == CUDA_R_32F ? "CUDA_R_32F" : t == CUDA_R_16BF ? "CUDA_R_16BF" : "another type";
}

}  // namespace

}  // namespace pgolf::emu

using pgolf::emu::Error;
using pgolf::emu::unsupported;

cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
  if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = reinterpret_cast<cublasLtHandle_t>(new int(1));
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
  delete reinterpret_cast<int*>(handle);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t compute, cudaDataType_t scale) {
  if (d == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  if (compute != CUBLAS_COMPUTE_32F) unsupported("compute type " + std::to_string(static_cast<int>(compute)));
  if (scale != CUDA_R_32F) unsupported(std::string("scale type ") + pgolf::emu::type_name(scale));
  *d = pgolf::emu::make_handle<pgolf::emu::Desc, cublasLtMatmulDescOpaque_t>(pgolf::emu::Desc{});
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
  pgolf::emu::destroy_handle<pgolf::emu::Desc>(d);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const void* buf,
                                              std::size_t size) {
  if (d == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  auto op = [&](const char* name) {
    const auto o = pgolf::emu::read_attribute<cublasOperation_t>(buf, size, name);
    if (o != CUBLAS_OP_N && o != CUBLAS_OP_T) unsupported(std::string(name) + " = " + std::to_string(static_cast<int>(o)));
    return o;
  };
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA: pgolf::emu::desc(d).trans_a = op("CUBLASLT_MATMUL_DESC_TRANSA"); break;
    case CUBLASLT_MATMUL_DESC_TRANSB: pgolf::emu::desc(d).trans_b = op("CUBLASLT_MATMUL_DESC_TRANSB"); break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE: {
      const auto e = pgolf::emu::read_attribute<cublasLtEpilogue_t>(buf, size, "CUBLASLT_MATMUL_DESC_EPILOGUE");
      if (e != CUBLASLT_EPILOGUE_DEFAULT) unsupported("epilogue " + std::to_string(static_cast<int>(e)));
      break;
    }
    case CUBLASLT_MATMUL_DESC_POINTER_MODE: {
      const auto m = pgolf::emu::read_attribute<cublasLtPointerMode_t>(buf, size, "CUBLASLT_MATMUL_DESC_POINTER_MODE");
      if (m != CUBLASLT_POINTER_MODE_HOST) unsupported("pointer mode " + std::to_string(static_cast<int>(m)));
      break;
    }
    default: unsupported("matmul descriptor attribute " + std::to_string(static_cast<int>(attr)));
  }
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType type, std::uint64_t rows,
                                          std::uint64_t cols, std::int64_t ld) {
  if (l == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  if (type != CUDA_R_32F && type != CUDA_R_16BF) unsupported("matrix type " + std::to_string(static_cast<int>(type)));
  if (ld < static_cast<std::int64_t>(rows))
    throw Error("cuBLASLt double: leading dimension " + std::to_string(ld) + " is smaller than the " + std::to_string(rows) +
                " rows of a column-major matrix");
  *l = pgolf::emu::make_handle<pgolf::emu::Layout, cublasLtMatrixLayoutOpaque_t>(
      pgolf::emu::Layout{type, rows, cols, ld, 1, 0});
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  pgolf::emu::destroy_handle<pgolf::emu::Layout>(l);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr,
                                                const void* buf, std::size_t size) {
  if (l == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  switch (attr) {
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: {
      const auto n = pgolf::emu::read_attribute<std::int32_t>(buf, size, "CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT");
      if (n < 1) throw Error("cuBLASLt double: batch count " + std::to_string(n) + " must be >= 1");
      pgolf::emu::layout(l).batch = n;
      break;
    }
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET:
      pgolf::emu::layout(l).stride =
          pgolf::emu::read_attribute<std::int64_t>(buf, size, "CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET");
      break;
    case CUBLASLT_MATRIX_LAYOUT_ORDER: {
      const auto o = pgolf::emu::read_attribute<cublasLtOrder_t>(buf, size, "CUBLASLT_MATRIX_LAYOUT_ORDER");
      if (o != CUBLASLT_ORDER_COL) unsupported("matrix order " + std::to_string(static_cast<int>(o)));
      break;
    }
    default: unsupported("matrix layout attribute " + std::to_string(static_cast<int>(attr)));
  }
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) {
  if (p == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *p = new cublasLtMatmulPreferenceOpaque_t{};
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
  delete p;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void* buf, std::size_t size) {
  if (p == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  if (attr != CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES)
    unsupported("matmul preference attribute " + std::to_string(static_cast<int>(attr)));
  (void)pgolf::emu::read_attribute<std::uint64_t>(buf, size, "CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES");
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t, cublasLtMatrixLayout_t,
                                              cublasLtMatrixLayout_t, cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                                              cublasLtMatmulPreference_t, int requested,
                                              cublasLtMatmulHeuristicResult_t results[], int* returned) {
  if (requested < 1 || results == nullptr || returned == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  results[0] = cublasLtMatmulHeuristicResult_t{};  // one algorithm, no workspace
  results[0].state = CUBLAS_STATUS_SUCCESS;
  results[0].wavesCount = 1.0f;
  *returned = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t computeDesc, const void* alpha, const void* A,
                              cublasLtMatrixLayout_t Adesc, const void* B, cublasLtMatrixLayout_t Bdesc, const void* beta,
                              const void* C, cublasLtMatrixLayout_t Cdesc, void* D, cublasLtMatrixLayout_t Ddesc,
                              const cublasLtMatmulAlgo_t*, void*, std::size_t, cudaStream_t) {
  pgolf::emu::DeviceAccess device_memory_open;
  using pgolf::emu::layout;
  if (handle == nullptr || computeDesc == nullptr || alpha == nullptr || beta == nullptr || A == nullptr ||
      B == nullptr || D == nullptr || Adesc == nullptr || Bdesc == nullptr || Cdesc == nullptr || Ddesc == nullptr)
    return CUBLAS_STATUS_INVALID_VALUE;
  const pgolf::emu::Desc& op = pgolf::emu::desc(computeDesc);
  const pgolf::emu::Layout &la = layout(Adesc), &lb = layout(Bdesc), &lc = layout(Cdesc), &ld = layout(Ddesc);
  if (la.type != lb.type) unsupported(std::string("A as ") + pgolf::emu::type_name(la.type) + " with B as " +
                                      pgolf::emu::type_name(lb.type));
  if (lc.type != ld.type) unsupported("C and D of different types");
  if (la.type == CUDA_R_32F && ld.type != CUDA_R_32F) unsupported("float32 A and B with a bf16 output");
  const bool ta = op.trans_a == CUBLAS_OP_T, tb = op.trans_b == CUBLAS_OP_T;
  const std::uint64_t m = ta ? la.cols : la.rows, k = ta ? la.rows : la.cols;
  const std::uint64_t kb = tb ? lb.cols : lb.rows, n = tb ? lb.rows : lb.cols;
  auto shape_error = [&](const std::string& what) {
    throw Error("cuBLASLt double: inconsistent shapes: " + what + " (op(A) is " + std::to_string(m) + " x " +
                std::to_string(k) + ", op(B) " + std::to_string(kb) + " x " + std::to_string(n) + ", C " +
                std::to_string(lc.rows) + " x " + std::to_string(lc.cols) + ", D " + std::to_string(ld.rows) + " x " +
                std::to_string(ld.cols) + ")");
  };
  if (k != kb) shape_error("inner dimensions differ");
  if (lc.rows != m || lc.cols != n || ld.rows != m || ld.cols != n) shape_error("C or D is not m x n");
  if (lc.ld != ld.ld) shape_error("C and D have different leading dimensions");
  const std::int32_t batch = ld.batch;
  if (la.batch != batch || lb.batch != batch || lc.batch != batch)
    shape_error("batch counts differ (A " + std::to_string(la.batch) + ", B " + std::to_string(lb.batch) + ", C " +
                std::to_string(lc.batch) + ", D " + std::to_string(batch) + ")");
  float a_scale, b_scale;
  std::memcpy(&a_scale, alpha, sizeof a_scale);
  std::memcpy(&b_scale, beta, sizeof b_scale);
  if (b_scale != 0.0f && C == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  for (std::int32_t bi = 0; bi < batch; ++bi) {
    const std::int64_t oa = bi * la.stride, ob = bi * lb.stride, oc = bi * lc.stride, od = bi * ld.stride;
    for (std::uint64_t j = 0; j < n; ++j)
      for (std::uint64_t i = 0; i < m; ++i) {
        float acc = 0.0f;
        for (std::uint64_t p = 0; p < k; ++p) {
          // Column-major: element (r, c) of a stored matrix is at r + c * ld.
          const auto ia = static_cast<std::int64_t>(ta ? p + i * static_cast<std::uint64_t>(la.ld)
                                                       : i + p * static_cast<std::uint64_t>(la.ld));
          const auto ib = static_cast<std::int64_t>(tb ? j + p * static_cast<std::uint64_t>(lb.ld)
                                                       : p + j * static_cast<std::uint64_t>(lb.ld));
          acc += pgolf::emu::load(A, la.type, oa + ia) * pgolf::emu::load(B, lb.type, ob + ib);
        }
        const auto ic = static_cast<std::int64_t>(i + j * static_cast<std::uint64_t>(lc.ld));
        float v = a_scale * acc;
        if (b_scale != 0.0f) v += b_scale * pgolf::emu::load(C, lc.type, oc + ic);  // beta = 0 never reads C
        pgolf::emu::store(D, ld.type, od + ic, v);
      }
  }
  return CUBLAS_STATUS_SUCCESS;
}
