#include "backend/cpu/cpu_ops.hpp"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>
#include <type_traits>
#include <vector>

#include "common/error.hpp"

namespace pgolf::backend {

namespace {

// Reductions are split into this many contiguous pieces whatever the thread count, and the
// pieces are combined in order, so results do not depend on how many threads ran them.
constexpr int kReduceChunks = 64;

std::size_t chunk_begin(std::size_t n, int chunk, int chunks) {
  return n * static_cast<std::size_t>(chunk) / static_cast<std::size_t>(chunks);
}

// out[c] += sum over rows i of the values f(i, acc) adds into acc[c] (acc is double[dim]).
template <class T, class F>
void column_reduce(T* out, int n, int dim, F&& f) {
  const int chunks = std::max(1, std::min(kReduceChunks, n));
  std::vector<double> partial(static_cast<std::size_t>(chunks) * dim, 0.0);
#pragma omp parallel for schedule(static)
  for (int ch = 0; ch < chunks; ++ch) {
    double* acc = partial.data() + static_cast<std::size_t>(ch) * dim;
    const auto hi = chunk_begin(static_cast<std::size_t>(n), ch + 1, chunks);
    for (auto i = chunk_begin(static_cast<std::size_t>(n), ch, chunks); i < hi; ++i) f(static_cast<int>(i), acc);
  }
  for (int c = 0; c < dim; ++c) {
    double s = 0.0;
    for (int ch = 0; ch < chunks; ++ch) s += partial[static_cast<std::size_t>(ch) * dim + c];
    out[c] += static_cast<T>(s);
  }
}

// sum over i < n of f(i), in double, in a fixed order of fixed chunks.
template <class F>
double scalar_reduce(std::size_t n, F&& f) {
  const int chunks = static_cast<int>(std::max<std::size_t>(1, std::min<std::size_t>(kReduceChunks, n)));
  std::vector<double> partial(static_cast<std::size_t>(chunks), 0.0);
#pragma omp parallel for schedule(static)
  for (int ch = 0; ch < chunks; ++ch) {
    double s = 0.0;
    const auto hi = chunk_begin(n, ch + 1, chunks);
    for (auto i = chunk_begin(n, ch, chunks); i < hi; ++i) s += f(i);
    partial[static_cast<std::size_t>(ch)] = s;
  }
  double s = 0.0;
  for (double p : partial) s += p;
  return s;
}

template <class T>
T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// c = alpha * op(a) @ op(b) + beta * c, row-major.
template <class T>
void blas_gemm(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a, int lda, const T* b, int ldb,
               T beta, T* c, int ldc) {
  const auto ta = trans_a ? CblasTrans : CblasNoTrans;
  const auto tb = trans_b ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  } else {
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
}

// XSA's direction for one row and KV head: u = v / max(|v|, 1e-12); returns the divisor.
template <class T>
T unit_direction(T* u, const T* v, int hd) {
  double sq = 0.0;
  for (int e = 0; e < hd; ++e) sq += static_cast<double>(v[e]) * v[e];
  const T norm = std::max(static_cast<T>(std::sqrt(sq)), static_cast<T>(1e-12));
  for (int e = 0; e < hd; ++e) u[e] = v[e] / norm;
  return norm;
}

}  // namespace

void set_cpu_threads(int threads) {
  int t = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  omp_set_num_threads(t);
  openblas_set_num_threads(t);
}

int cpu_threads() { return omp_get_max_threads(); }

// ----- memory -----------------------------------------------------------------------------
template <class T>
std::string CpuOps<T>::name() const {
  return std::is_same_v<T, float> ? "cpu (float32)" : "cpu (float64)";
}

// Sizes are kept beside the allocations (not in a header before them, which would move every
// buffer off the alignment the allocator gives, and OpenBLAS's threaded results with it), so
// release() can keep live_bytes() exact.
template <class T>
void* CpuOps<T>::allocate(std::size_t bytes) {
  void* p = ::operator new(std::max<std::size_t>(bytes, 1), std::align_val_t{64}, std::nothrow);
  if (p == nullptr)
    fail(ErrorKind::internal, "cpu backend: cannot allocate ", bytes, " bytes (", ledger_.live(),
         " bytes allocated so far)");
  std::memset(p, 0, bytes);
  ledger_.add(p, bytes);
  return p;
}

template <class T>
void CpuOps<T>::release(void* p) {
  if (p == nullptr) return;
  ledger_.remove(p);
  ::operator delete(p, std::align_val_t{64});
}

template <class T>
void CpuOps<T>::to_device(void* dst, const void* src, std::size_t bytes) {
  if (bytes > 0) std::memcpy(dst, src, bytes);
}

template <class T>
void CpuOps<T>::to_host(void* dst, const void* src, std::size_t bytes) {
  if (bytes > 0) std::memcpy(dst, src, bytes);
}

template <class T>
void CpuOps<T>::copy(void* dst, const void* src, std::size_t bytes) {
  if (bytes > 0) std::memmove(dst, src, bytes);
}

template <class T>
void CpuOps<T>::zero(void* p, std::size_t bytes) {
  if (bytes > 0) std::memset(p, 0, bytes);
}

// ----- elementwise ---------------------------------------------------------------------------
template <class T>
void CpuOps<T>::copy_values(T* y, const T* x, std::size_t n) {
  std::memmove(y, x, n * sizeof(T));
}

template <class T>
void CpuOps<T>::add_into(T* y, const T* x, std::size_t n) {
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) y[i] += x[i];
}

// ----- embeddings ------------------------------------------------------------------------------
template <class T>
void CpuOps<T>::embedding_forward(T* out, const std::int32_t* ids, const T* table, int n, int dim) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i)
    std::memcpy(out + static_cast<std::size_t>(i) * dim, table + static_cast<std::size_t>(ids[i]) * dim,
                sizeof(T) * static_cast<std::size_t>(dim));
}

template <class T>
void CpuOps<T>::embedding_backward(T* dtable, const std::int32_t* ids, const T* dout, int n, int dim) {
  // Rows may repeat, so threads split the columns; each row is added in order.
#pragma omp parallel
  {
    const int threads = omp_get_num_threads(), me = omp_get_thread_num();
    const int lo = static_cast<int>(chunk_begin(static_cast<std::size_t>(dim), me, threads));
    const int hi = static_cast<int>(chunk_begin(static_cast<std::size_t>(dim), me + 1, threads));
    for (int i = 0; i < n; ++i) {
      T* row = dtable + static_cast<std::size_t>(ids[i]) * dim;
      const T* g = dout + static_cast<std::size_t>(i) * dim;
      for (int c = lo; c < hi; ++c) row[c] += g[c];
    }
  }
}

template <class T>
void CpuOps<T>::bigram_hash(std::int32_t* out, const std::int32_t* ids, int batch, int seq, int buckets) {
  const std::int64_t mod = buckets - 1;
  for (int b = 0; b < batch; ++b) {
    const std::int32_t* x = ids + static_cast<std::size_t>(b) * seq;
    std::int32_t* h = out + static_cast<std::size_t>(b) * seq;
    h[0] = static_cast<std::int32_t>(mod);
    for (int t = 1; t < seq; ++t) {
      // 32-bit two's-complement products, as int32 tensor arithmetic does.
      const std::uint32_t a = 36313u * static_cast<std::uint32_t>(x[t]);
      const std::uint32_t c = 27191u * static_cast<std::uint32_t>(x[t - 1]);
      const auto v = static_cast<std::int64_t>(static_cast<std::int32_t>(a ^ c));
      h[t] = static_cast<std::int32_t>(((v % mod) + mod) % mod);
    }
  }
}

// ----- matrix products --------------------------------------------------------------------
template <class T>
void CpuOps<T>::matmul_forward(T* y, const T* x, const T* w, int n, int in, int out, bool accumulate) {
  if (n == 0 || out == 0) return;
  blas_gemm<T>(false, true, n, out, in, T(1), x, in, w, in, accumulate ? T(1) : T(0), y, out);
}

template <class T>
void CpuOps<T>::matmul_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, int n, int in, int out,
                                bool accumulate_dx) {
  if (n == 0) return;
  if (dx != nullptr) blas_gemm<T>(false, false, n, in, out, T(1), dy, out, w, in, accumulate_dx ? T(1) : T(0), dx, in);
  if (dw != nullptr) blas_gemm<T>(true, false, out, in, n, T(1), dy, out, x, in, T(1), dw, in);
}

// ----- normalisation ------------------------------------------------------------------------
namespace {

// One row of the RMSNorm, shared by rmsnorm_* and the fused q/k preparation (bit-identical).
template <class T>
T rms_row_forward(T* y, const T* x, int dim, T multiplier) {
  constexpr double eps = 1.1920928955078125e-07;  // float32 epsilon in every precision
  double sq = 0.0;
  for (int c = 0; c < dim; ++c) sq += static_cast<double>(x[c]) * x[c];
  const T r = static_cast<T>(1.0 / std::sqrt(sq / dim + eps));
  const T s = r * multiplier;
  for (int c = 0; c < dim; ++c) y[c] = x[c] * s;
  return r;
}

// d (= or +=) the row's input gradient from its output gradient g; d may be g.
template <class T>
void rms_row_backward(T* d, const T* g, const T* x, T r, int dim, T multiplier, bool accumulate) {
  double dot = 0.0;
  for (int c = 0; c < dim; ++c) dot += static_cast<double>(g[c]) * x[c];
  const T k = static_cast<T>(dot * static_cast<double>(r) * r / dim);
  for (int c = 0; c < dim; ++c) {
    const T v = multiplier * r * (g[c] - x[c] * k);
    d[c] = accumulate ? d[c] + v : v;
  }
}

// The partial rotation of one head vector (pairs j, j + half for j < half).
template <class T>
void rope_vector(T* v, const T* cs, const T* sn, int half, bool inverse) {
  for (int j = 0; j < half; ++j) {
    const T a = v[j], b = v[j + half];
    if (!inverse) {
      v[j] = a * cs[j] + b * sn[j];
      v[j + half] = -a * sn[j] + b * cs[j];
    } else {
      v[j] = a * cs[j] - b * sn[j];
      v[j + half] = a * sn[j] + b * cs[j];
    }
  }
}

// dgain[h] += sum over rows and the head's values of dy * x (head_gain_backward's reduction).
template <class T>
void head_gain_reduce(T* dgain, const T* dy, const T* x, int rows, int heads, int hd) {
  column_reduce(dgain, rows, heads, [&](int r, double* acc) {
    for (int h = 0; h < heads; ++h) {
      const std::size_t o = (static_cast<std::size_t>(r) * heads + h) * hd;
      double s = 0.0;
      for (int e = 0; e < hd; ++e) s += static_cast<double>(dy[o + e]) * x[o + e];
      acc[h] += s;
    }
  });
}

}  // namespace

template <class T>
void CpuOps<T>::rmsnorm_forward(T* y, T* rstd, const T* x, int n, int dim, T multiplier) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) {
    const std::size_t o = static_cast<std::size_t>(i) * dim;
    rstd[i] = rms_row_forward(y + o, x + o, dim, multiplier);
  }
}

template <class T>
void CpuOps<T>::rmsnorm_backward(T* dx, const T* dy, const T* x, const T* rstd, int n, int dim, T multiplier,
                                 bool accumulate) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) {
    const std::size_t o = static_cast<std::size_t>(i) * dim;
    rms_row_backward(dx + o, dy + o, x + o, rstd[i], dim, multiplier, accumulate);
  }
}

// ----- scaled additions ------------------------------------------------------------------------
template <class T>
void CpuOps<T>::add_scaled_forward(T* y, const T* x, const T* s1, const T* s2, std::size_t n) {
  const T s = *s1 * (s2 != nullptr ? *s2 : T(1));
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) y[i] += x[i] * s;
}

template <class T>
void CpuOps<T>::add_scaled_backward(T* dx, T* ds1, T* ds2, const T* dy, const T* x, const T* s1, const T* s2,
                                    std::size_t n, bool accumulate_dx) {
  const T v2 = s2 != nullptr ? *s2 : T(1);
  const double dot = scalar_reduce(n, [&](std::size_t i) { return static_cast<double>(dy[i]) * x[i]; });
  if (ds1 != nullptr) *ds1 += static_cast<T>(dot * v2);
  if (ds2 != nullptr) *ds2 += static_cast<T>(dot * *s1);
  if (dx != nullptr) {
    const T s = *s1 * v2;
#pragma omp parallel for schedule(static)
    for (std::size_t i = 0; i < n; ++i) dx[i] = accumulate_dx ? dx[i] + dy[i] * s : dy[i] * s;
  }
}

template <class T>
void CpuOps<T>::residual_scale_forward(T* out, const T* base, const T* y, const T* scale, int n, int dim) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) {
    const std::size_t o = static_cast<std::size_t>(i) * dim;
    for (int c = 0; c < dim; ++c) out[o + c] = base[o + c] + scale[c] * y[o + c];
  }
}

template <class T>
void CpuOps<T>::residual_scale_backward(T* dy, T* dscale, const T* dout, const T* y, const T* scale, int n, int dim) {
  column_reduce(dscale, n, dim, [&](int i, double* acc) {
    const std::size_t o = static_cast<std::size_t>(i) * dim;
    for (int c = 0; c < dim; ++c) acc[c] += static_cast<double>(dout[o + c]) * y[o + c];
  });
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) {
    const std::size_t o = static_cast<std::size_t>(i) * dim;
    for (int c = 0; c < dim; ++c) dy[o + c] = dout[o + c] * scale[c];
  }
}

template <class T>
void CpuOps<T>::resid_mix_forward(T* xin, const T* x, const T* x0, const T* mix, int n, int dim) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) {
    const std::size_t o = static_cast<std::size_t>(i) * dim;
    for (int c = 0; c < dim; ++c) xin[o + c] = mix[c] * x[o + c] + mix[dim + c] * x0[o + c];
  }
}

template <class T>
void CpuOps<T>::resid_mix_backward(T* dx, T* dx0, T* dmix, const T* dxin, const T* x, const T* x0, const T* mix,
                                   int n, int dim) {
  column_reduce(dmix, n, dim, [&](int i, double* acc) {
    const std::size_t o = static_cast<std::size_t>(i) * dim;
    for (int c = 0; c < dim; ++c) acc[c] += static_cast<double>(dxin[o + c]) * x[o + c];
  });
  column_reduce(dmix + dim, n, dim, [&](int i, double* acc) {
    const std::size_t o = static_cast<std::size_t>(i) * dim;
    for (int c = 0; c < dim; ++c) acc[c] += static_cast<double>(dxin[o + c]) * x0[o + c];
  });
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) {
    const std::size_t o = static_cast<std::size_t>(i) * dim;
    for (int c = 0; c < dim; ++c) {
      dx[o + c] = dxin[o + c] * mix[c];
      dx0[o + c] += dxin[o + c] * mix[dim + c];
    }
  }
}

// ----- token mixing ------------------------------------------------------------------------------
template <class T>
void CpuOps<T>::smear_forward(T* y, const T* x, const T* gate, int batch, int seq, int dim) {
  std::vector<T> g(static_cast<std::size_t>(dim));
  for (int c = 0; c < dim; ++c) g[c] = sigmoid(gate[c]);
  const int n = batch * seq;
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) {
    const std::size_t o = static_cast<std::size_t>(i) * dim;
    const bool first = i % seq == 0;
    for (int c = 0; c < dim; ++c) {
      const T prev = first ? T(0) : x[o - dim + c];
      y[o + c] = (T(1) - g[c]) * x[o + c] + g[c] * prev;
    }
  }
}

template <class T>
void CpuOps<T>::smear_backward(T* dx, T* dgate, const T* dy, const T* x, const T* gate, int batch, int seq, int dim) {
  std::vector<T> g(static_cast<std::size_t>(dim));
  for (int c = 0; c < dim; ++c) g[c] = sigmoid(gate[c]);
  const int n = batch * seq;
  column_reduce(dgate, n, dim, [&](int i, double* acc) {
    const std::size_t o = static_cast<std::size_t>(i) * dim;
    const bool first = i % seq == 0;
    for (int c = 0; c < dim; ++c) {
      const T prev = first ? T(0) : x[o - dim + c];
      acc[c] += static_cast<double>(dy[o + c]) * (prev - x[o + c]) * g[c] * (T(1) - g[c]);
    }
  });
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) {
    const std::size_t o = static_cast<std::size_t>(i) * dim;
    const bool last = (i + 1) % seq == 0;
    for (int c = 0; c < dim; ++c) dx[o + c] = (T(1) - g[c]) * dy[o + c] + (last ? T(0) : g[c] * dy[o + dim + c]);
  }
}

// ----- skips and lanes ------------------------------------------------------------------------------
template <class T>
void CpuOps<T>::skip_forward(T* x, const T* s, const T* w, const T* gate, int n, int dim) {
  std::vector<T> sg(static_cast<std::size_t>(dim), T(1));
  if (gate != nullptr)
    for (int c = 0; c < dim; ++c) sg[c] = sigmoid(gate[c]);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) {
    const std::size_t o = static_cast<std::size_t>(i) * dim;
    if (gate == nullptr) {
      for (int c = 0; c < dim; ++c) x[o + c] += w[c] * s[o + c];
    } else {
      for (int c = 0; c < dim; ++c) x[o + c] = sg[c] * x[o + c] + (T(1) - sg[c]) * (w[c] * s[o + c]);
    }
  }
}

template <class T>
void CpuOps<T>::skip_backward(T* dx, T* ds, T* dw, T* dgate, const T* x_before, const T* s, const T* w, const T* gate,
                              int n, int dim) {
  std::vector<T> sg(static_cast<std::size_t>(dim), T(0));
  if (gate != nullptr)
    for (int c = 0; c < dim; ++c) sg[c] = sigmoid(gate[c]);
  // Parameter gradients first: they read dx before it is overwritten below.
  column_reduce(dw, n, dim, [&](int i, double* acc) {
    const std::size_t o = static_cast<std::size_t>(i) * dim;
    for (int c = 0; c < dim; ++c) {
      const T keep = gate != nullptr ? T(1) - sg[c] : T(1);
      acc[c] += static_cast<double>(dx[o + c]) * keep * s[o + c];
    }
  });
  if (gate != nullptr)
    column_reduce(dgate, n, dim, [&](int i, double* acc) {
      const std::size_t o = static_cast<std::size_t>(i) * dim;
      for (int c = 0; c < dim; ++c)
        acc[c] += static_cast<double>(dx[o + c]) * (x_before[o + c] - w[c] * s[o + c]) * sg[c] * (T(1) - sg[c]);
    });
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) {
    const std::size_t o = static_cast<std::size_t>(i) * dim;
    for (int c = 0; c < dim; ++c) {
      const T keep = gate != nullptr ? T(1) - sg[c] : T(1);
      ds[o + c] += dx[o + c] * keep * w[c];
      if (gate != nullptr) dx[o + c] *= sg[c];
    }
  }
}

template <class T>
void CpuOps<T>::lane_merge_forward(T* out, const T* a, const T* b, const T* m, std::size_t n) {
  const T mv = *m;
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) out[i] = mv * a[i] + (T(1) - mv) * b[i];
}

template <class T>
void CpuOps<T>::lane_merge_backward(T* da, T* db, T* dm, const T* dout, const T* a, const T* b, const T* m,
                                    std::size_t n) {
  const T mv = *m;
  *dm += static_cast<T>(scalar_reduce(n, [&](std::size_t i) { return static_cast<double>(dout[i]) * (a[i] - b[i]); }));
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) {
    da[i] = mv * dout[i];
    db[i] = (T(1) - mv) * dout[i];
  }
}

// ----- attention --------------------------------------------------------------------------------
template <class T>
void CpuOps<T>::rope_apply(T* x, const T* cos_table, const T* sin_table, int rows, int seq, int heads, int hd,
                           int rope_dims, bool inverse) {
  const int half = rope_dims / 2;
  if (half == 0) return;
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    const std::size_t t = static_cast<std::size_t>(r % seq);
    for (int h = 0; h < heads; ++h)
      rope_vector(x + (static_cast<std::size_t>(r) * heads + h) * hd, cos_table + t * half, sin_table + t * half, half,
                  inverse);
  }
}

template <class T>
void CpuOps<T>::head_gain_forward(T* y, const T* x, const T* gain, int rows, int heads, int hd) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r)
    for (int h = 0; h < heads; ++h) {
      const std::size_t o = (static_cast<std::size_t>(r) * heads + h) * hd;
      for (int e = 0; e < hd; ++e) y[o + e] = x[o + e] * gain[h];
    }
}

template <class T>
void CpuOps<T>::head_gain_backward(T* dx, T* dgain, const T* dy, const T* x, const T* gain, int rows, int heads,
                                   int hd) {
  head_gain_reduce(dgain, dy, x, rows, heads, hd);
  head_gain_forward(dx, dy, gain, rows, heads, hd);
}

template <class T>
void CpuOps<T>::qk_prep_forward(T* normed, T* out, T* rstd, const T* x, const T* gain, const T* cos_table,
                                const T* sin_table, int rows, int seq, int heads, int hd, int rope_dims) {
  const int half = rope_dims / 2;
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    const std::size_t t = static_cast<std::size_t>(r % seq);
    for (int h = 0; h < heads; ++h) {
      const std::size_t o = (static_cast<std::size_t>(r) * heads + h) * hd;
      rstd[static_cast<std::size_t>(r) * heads + h] = rms_row_forward(normed + o, x + o, hd, T(1));
      if (half > 0) rope_vector(normed + o, cos_table + t * half, sin_table + t * half, half, false);
      if (gain != nullptr)
        for (int e = 0; e < hd; ++e) out[o + e] = normed[o + e] * gain[h];
    }
  }
}

template <class T>
void CpuOps<T>::qk_prep_backward(T* dx, T* dgain, const T* dout, const T* x, const T* normed, const T* rstd,
                                 const T* gain, const T* cos_table, const T* sin_table, int rows, int seq, int heads,
                                 int hd, int rope_dims) {
  const int half = rope_dims / 2;
  if (gain != nullptr) head_gain_reduce(dgain, dout, normed, rows, heads, hd);
#pragma omp parallel
  {
    std::vector<T> d(static_cast<std::size_t>(hd));  // one head's gradient (dx may be dout)
#pragma omp for schedule(static)
    for (int r = 0; r < rows; ++r) {
      const std::size_t t = static_cast<std::size_t>(r % seq);
      for (int h = 0; h < heads; ++h) {
        const std::size_t o = (static_cast<std::size_t>(r) * heads + h) * hd;
        for (int e = 0; e < hd; ++e) d[static_cast<std::size_t>(e)] = gain != nullptr ? dout[o + e] * gain[h] : dout[o + e];
        if (half > 0) rope_vector(d.data(), cos_table + t * half, sin_table + t * half, half, true);
        rms_row_backward(dx + o, d.data(), x + o, rstd[static_cast<std::size_t>(r) * heads + h], hd, T(1), false);
      }
    }
  }
}

// Attention runs one task per (sequence, KV head): the task copies that head's keys and
// values into contiguous (and transposed) scratch so the inner loops over positions and
// over head dims are unit-stride and vectorise, and it owns every output it writes (dq of
// its query heads, dk and dv of its KV head), so results do not depend on scheduling.
namespace {

template <class T>
struct KvScratch {
  std::vector<T> kt, vt, k, v;  // kt, vt: hd x seq ; k, v: seq x hd
  void load(const T* kbase, const T* vbase, int b, int g, int seq, int kv_heads, int hd) {
    const auto n = static_cast<std::size_t>(seq) * hd;
    kt.resize(n);
    vt.resize(n);
    k.resize(n);
    v.resize(n);
    for (int s = 0; s < seq; ++s) {
      const std::size_t src = ((static_cast<std::size_t>(b) * seq + s) * kv_heads + g) * hd;
      for (int e = 0; e < hd; ++e) {
        k[static_cast<std::size_t>(s) * hd + e] = kbase[src + e];
        v[static_cast<std::size_t>(s) * hd + e] = vbase[src + e];
        kt[static_cast<std::size_t>(e) * seq + s] = kbase[src + e];
        vt[static_cast<std::size_t>(e) * seq + s] = vbase[src + e];
      }
    }
  }
};

// scores[s] = scale * q . k[s] for s <= t
template <class T>
void causal_scores(T* scores, const T* q, const std::vector<T>& kt, int t, int seq, int hd, T scale) {
  std::fill(scores, scores + t + 1, T(0));
  for (int e = 0; e < hd; ++e) {
    const T qe = q[e] * scale;
    const T* row = kt.data() + static_cast<std::size_t>(e) * seq;
#pragma omp simd
    for (int s = 0; s <= t; ++s) scores[s] += qe * row[s];
  }
}

}  // namespace

template <class T>
void CpuOps<T>::attention_forward(T* y, T* lse, const T* q, const T* k, const T* v, int batch, int seq, int heads,
                                  int kv_heads, int hd) {
  const int group = heads / kv_heads;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hd)));
#pragma omp parallel
  {
    KvScratch<T> kv;
    std::vector<T> p(static_cast<std::size_t>(seq)), acc(static_cast<std::size_t>(hd));
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < batch; ++b)
      for (int g = 0; g < kv_heads; ++g) {
        kv.load(k, v, b, g, seq, kv_heads, hd);
        for (int h = g * group; h < (g + 1) * group; ++h)
          for (int t = 0; t < seq; ++t) {
            const std::size_t row = static_cast<std::size_t>(b) * seq + t;
            causal_scores(p.data(), q + (row * heads + h) * hd, kv.kt, t, seq, hd, scale);
            T mx = p[0];
            for (int s = 1; s <= t; ++s) mx = std::max(mx, p[s]);
            double sum = 0.0;
            for (int s = 0; s <= t; ++s) {
              p[s] = std::exp(p[s] - mx);
              sum += p[s];
            }
            std::fill(acc.begin(), acc.end(), T(0));
            for (int s = 0; s <= t; ++s) {
              const T w = p[s];
              const T* vs = kv.v.data() + static_cast<std::size_t>(s) * hd;
#pragma omp simd
              for (int e = 0; e < hd; ++e) acc[e] += w * vs[e];
            }
            const T inv = static_cast<T>(1.0 / sum);
            T* yt = y + (row * heads + h) * hd;
            for (int e = 0; e < hd; ++e) yt[e] = acc[e] * inv;
            lse[(static_cast<std::size_t>(b) * heads + h) * seq + t] = static_cast<T>(mx + std::log(sum));
          }
      }
  }
}

template <class T>
void CpuOps<T>::attention_backward(T* dq, T* dk, T* dv, const T* dy, const T* q, const T* k, const T* v, const T* y,
                                   const T* lse, int batch, int seq, int heads, int kv_heads, int hd,
                                   bool accumulate_dv) {
  const int group = heads / kv_heads;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hd)));
#pragma omp parallel
  {
    KvScratch<T> kv;
    std::vector<T> p(static_cast<std::size_t>(seq)), dp(static_cast<std::size_t>(seq));
    std::vector<T> dkacc(static_cast<std::size_t>(seq) * hd), dvacc(static_cast<std::size_t>(seq) * hd);
    std::vector<T> dqacc(static_cast<std::size_t>(hd));
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < batch; ++b)
      for (int g = 0; g < kv_heads; ++g) {
        kv.load(k, v, b, g, seq, kv_heads, hd);
        std::fill(dkacc.begin(), dkacc.end(), T(0));
        std::fill(dvacc.begin(), dvacc.end(), T(0));
        for (int h = g * group; h < (g + 1) * group; ++h)
          for (int t = 0; t < seq; ++t) {
            const std::size_t row = static_cast<std::size_t>(b) * seq + t;
            const T* qt = q + (row * heads + h) * hd;
            const T* dyt = dy + (row * heads + h) * hd;
            const T* yt = y + (row * heads + h) * hd;
            const T l = lse[(static_cast<std::size_t>(b) * heads + h) * seq + t];
            causal_scores(p.data(), qt, kv.kt, t, seq, hd, scale);
            // dp[s] = dy . v[s]
            std::fill(dp.begin(), dp.begin() + t + 1, T(0));
            for (int e = 0; e < hd; ++e) {
              const T de = dyt[e];
              const T* vrow = kv.vt.data() + static_cast<std::size_t>(e) * seq;
#pragma omp simd
              for (int s = 0; s <= t; ++s) dp[s] += de * vrow[s];
            }
            T big_d = 0;
            for (int e = 0; e < hd; ++e) big_d += dyt[e] * yt[e];
            std::fill(dqacc.begin(), dqacc.end(), T(0));
            for (int s = 0; s <= t; ++s) {
              const T pr = std::exp(p[s] - l);
              const T ds = pr * (dp[s] - big_d) * scale;
              const T* ks = kv.k.data() + static_cast<std::size_t>(s) * hd;
              T* dks = dkacc.data() + static_cast<std::size_t>(s) * hd;
              T* dvs = dvacc.data() + static_cast<std::size_t>(s) * hd;
#pragma omp simd
              for (int e = 0; e < hd; ++e) {
                dqacc[e] += ds * ks[e];
                dks[e] += ds * qt[e];
                dvs[e] += pr * dyt[e];
              }
            }
            T* dqt = dq + (row * heads + h) * hd;
            for (int e = 0; e < hd; ++e) dqt[e] = dqacc[e];
          }
        for (int s = 0; s < seq; ++s) {
          const std::size_t o = ((static_cast<std::size_t>(b) * seq + s) * kv_heads + g) * hd;
          for (int e = 0; e < hd; ++e) {
            dk[o + e] = dkacc[static_cast<std::size_t>(s) * hd + e];
            const T add = dvacc[static_cast<std::size_t>(s) * hd + e];
            dv[o + e] = accumulate_dv ? dv[o + e] + add : add;
          }
        }
      }
  }
}

template <class T>
void CpuOps<T>::xsa_forward(T* out, const T* y, const T* v, int rows, int heads, int kv_heads, int hd) {
  const int group = heads / kv_heads;
#pragma omp parallel
  {
    std::vector<T> u(static_cast<std::size_t>(hd));
#pragma omp for schedule(static)
    for (int r = 0; r < rows; ++r)
      for (int g = 0; g < kv_heads; ++g) {
        unit_direction(u.data(), v + (static_cast<std::size_t>(r) * kv_heads + g) * hd, hd);
        for (int h = g * group; h < (g + 1) * group; ++h) {
          const std::size_t o = (static_cast<std::size_t>(r) * heads + h) * hd;
          double a = 0.0;
          for (int e = 0; e < hd; ++e) a += static_cast<double>(y[o + e]) * u[e];
          for (int e = 0; e < hd; ++e) out[o + e] = y[o + e] - static_cast<T>(a) * u[e];
        }
      }
  }
}

template <class T>
void CpuOps<T>::xsa_backward(T* dy, T* dv, const T* dout, const T* y, const T* v, int rows, int heads, int kv_heads,
                             int hd) {
  const int group = heads / kv_heads;
#pragma omp parallel
  {
    std::vector<T> u(static_cast<std::size_t>(hd));
    std::vector<double> du(static_cast<std::size_t>(hd));
#pragma omp for schedule(static)
    for (int r = 0; r < rows; ++r)
      for (int g = 0; g < kv_heads; ++g) {
        const T* vg = v + (static_cast<std::size_t>(r) * kv_heads + g) * hd;
        const T norm = unit_direction(u.data(), vg, hd);
        std::fill(du.begin(), du.end(), 0.0);
        for (int h = g * group; h < (g + 1) * group; ++h) {
          const std::size_t o = (static_cast<std::size_t>(r) * heads + h) * hd;
          double a = 0.0, gu = 0.0;  // a = y . u, gu = dout . u
          for (int e = 0; e < hd; ++e) {
            a += static_cast<double>(y[o + e]) * u[e];
            gu += static_cast<double>(dout[o + e]) * u[e];
          }
          for (int e = 0; e < hd; ++e) {
            dy[o + e] = dout[o + e] - static_cast<T>(gu) * u[e];
            du[e] -= gu * y[o + e] + a * dout[o + e];
          }
        }
        // u = v / max(|v|, 1e-12): project out the radial part when the norm is active.
        double udu = 0.0;
        for (int e = 0; e < hd; ++e) udu += du[e] * u[e];
        const bool clamped = norm <= static_cast<T>(1e-12);
        T* dvg = dv + (static_cast<std::size_t>(r) * kv_heads + g) * hd;
        for (int e = 0; e < hd; ++e) dvg[e] += static_cast<T>((clamped ? du[e] : du[e] - u[e] * udu) / norm);
      }
  }
}

// ----- MLP ---------------------------------------------------------------------------------------------
template <class T>
void CpuOps<T>::leaky_relu_sq_forward(T* z, const T* h, T slope, std::size_t n) {
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) {
    const T a = h[i] > T(0) ? h[i] : slope * h[i];
    z[i] = a * a;
  }
}

template <class T>
void CpuOps<T>::leaky_relu_sq_backward(T* dh, const T* dz, const T* h, T slope, std::size_t n) {
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) {
    const bool pos = h[i] > T(0);
    const T a = pos ? h[i] : slope * h[i];
    dh[i] = dz[i] * T(2) * a * (pos ? T(1) : slope);
  }
}

// ----- head and loss ------------------------------------------------------------------------------------
namespace {

// One row of the softcapped cross-entropy, in the order every softcap_ce op uses: the logits
// are rounded to T before any statistic reads them, and the statistics are float64.
template <class T>
double softcap_row(T* z, int vocab, T cap) {  // caps z in place, returns its max
  double mx = -INFINITY;
  for (int c = 0; c < vocab; ++c) {
    z[c] = cap * std::tanh(z[c] / cap);
    mx = std::max(mx, static_cast<double>(z[c]));
  }
  return mx;
}

template <class T>
double row_max(const T* z, int vocab) {
  double mx = -INFINITY;
  for (int c = 0; c < vocab; ++c) mx = std::max(mx, static_cast<double>(z[c]));
  return mx;
}

template <class T>
double row_exp_sum(const T* z, int vocab, double mx) {
  double sum = 0.0;
  for (int c = 0; c < vocab; ++c) sum += std::exp(static_cast<double>(z[c]) - mx);
  return sum;
}

// d[c] = scale * (softmax(z)[c] - [c == target]) * (1 - (z[c] / cap)^2); d may be z.
template <class T>
void softcap_grad_row(T* d, const T* z, int target, int vocab, T cap, T scale, double mx, double sum) {
  for (int c = 0; c < vocab; ++c) {
    double p = std::exp(static_cast<double>(z[c]) - mx) / sum;
    if (c == target) p -= 1.0;
    const double t = static_cast<double>(z[c]) / cap;  // tanh(z_pre / cap)
    d[c] = static_cast<T>(p * scale * (1.0 - t * t));
  }
}

}  // namespace

template <class T>
void CpuOps<T>::softcap_ce_forward(T* logits, T* nll, T* loss_sum, const std::int32_t* targets, int n, int vocab,
                                   T cap) {
  softcap_ce_rows(logits, nll, loss_sum, targets, n, vocab, cap, nullptr);
}

template <class T>
void CpuOps<T>::softcap_ce_fused(T* z, T* nll, T* loss_sum, const std::int32_t* targets, int n, int vocab, T cap,
                                 T scale) {
  softcap_ce_rows(z, nll, loss_sum, targets, n, vocab, cap, &scale);
}

template <class T>
void CpuOps<T>::softcap_ce_rows(T* logits, T* nll, T* loss_sum, const std::int32_t* targets, int n, int vocab, T cap,
                                const T* grad_scale) {
  std::vector<double> row_nll(static_cast<std::size_t>(n));
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) {
    T* z = logits + static_cast<std::size_t>(i) * vocab;
    const double mx = softcap_row(z, vocab, cap);
    const double sum = row_exp_sum(z, vocab, mx);
    row_nll[static_cast<std::size_t>(i)] = mx + std::log(sum) - z[targets[i]];
    if (grad_scale != nullptr) softcap_grad_row(z, z, targets[i], vocab, cap, *grad_scale, mx, sum);
  }
  if (nll != nullptr)
    for (int i = 0; i < n; ++i) nll[i] = static_cast<T>(row_nll[static_cast<std::size_t>(i)]);
  *loss_sum = static_cast<T>(scalar_reduce(static_cast<std::size_t>(n), [&](std::size_t i) { return row_nll[i]; }));
}

template <class T>
void CpuOps<T>::softcap_ce_backward(T* dz, const T* logits, const std::int32_t* targets, int n, int vocab, T cap,
                                    T scale) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) {
    const T* z = logits + static_cast<std::size_t>(i) * vocab;
    const double mx = row_max(z, vocab);
    softcap_grad_row(dz + static_cast<std::size_t>(i) * vocab, z, targets[i], vocab, cap, scale, mx,
                     row_exp_sum(z, vocab, mx));
  }
}

// ----- test-time delta ------------------------------------------------------------------------------
template <class T>
void CpuOps<T>::add_group_rows(T* y, const T* x, const T* rows, int groups, int group_rows, int dim) {
  const int n = groups * group_rows;
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) {
    const T* r = rows + static_cast<std::size_t>(i / group_rows) * dim;
    const std::size_t o = static_cast<std::size_t>(i) * dim;
    for (int c = 0; c < dim; ++c) y[o + c] = x[o + c] + r[c];
  }
}

template <class T>
void CpuOps<T>::sum_group_rows(T* out, const T* x, int groups, int group_rows, int dim) {
  // One group per iteration, rows summed in order: a group's sum never depends on the others
  // (the per-window SLOT delta relies on it) nor on the thread count.
#pragma omp parallel for schedule(static)
  for (int g = 0; g < groups; ++g) {
    std::vector<double> acc(static_cast<std::size_t>(dim), 0.0);
    for (int r = 0; r < group_rows; ++r) {
      const T* row = x + (static_cast<std::size_t>(g) * group_rows + r) * dim;
      for (int c = 0; c < dim; ++c) acc[static_cast<std::size_t>(c)] += static_cast<double>(row[c]);
    }
    for (int c = 0; c < dim; ++c) out[static_cast<std::size_t>(g) * dim + c] = static_cast<T>(acc[static_cast<std::size_t>(c)]);
  }
}

template <class T>
void CpuOps<T>::scale_rows(T* x, const T* w, int n, int dim) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) {
    T* row = x + static_cast<std::size_t>(i) * dim;
    if (w[i] == T(0)) {
      std::fill(row, row + dim, T(0));
    } else {
      for (int c = 0; c < dim; ++c) row[c] *= w[i];
    }
  }
}

// ----- optimizers and training -----------------------------------------------------------------
template <class T>
void CpuOps<T>::gemm(T* c, const T* a, const T* b, int m, int n, int k, bool trans_a, bool trans_b, T alpha, T beta) {
  blas_gemm<T>(trans_a, trans_b, m, n, k, alpha, a, trans_a ? m : k, b, trans_b ? k : n, beta, c, n);
}

template <class T>
void CpuOps<T>::axpby(T* y, const T* x, T a, T b, std::size_t n) {
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) y[i] = a * y[i] + b * x[i];
}

template <class T>
void CpuOps<T>::scale_values(T* x, T s, std::size_t n) {
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) x[i] *= s;
}

template <class T>
double CpuOps<T>::sum_squares(const T* x, std::size_t n) {
  return scalar_reduce(n, [&](std::size_t i) { return static_cast<double>(x[i]) * x[i]; });
}

template <class T>
void CpuOps<T>::sum_squares_to(double* out, const T* x, std::size_t n) {
  *out = sum_squares(x, n);
}

template <class T>
void CpuOps<T>::scale_by_inverse_norm(T* x, std::size_t n, const double* sum_sq, double eps) {
  scale_values(x, static_cast<T>(1.0 / (std::sqrt(*sum_sq) + eps)), n);
}

template <class T>
void CpuOps<T>::transpose(T* dst, const T* src, int rows, int cols) {
#pragma omp parallel for schedule(static)
  for (int c = 0; c < cols; ++c)
    for (int r = 0; r < rows; ++r)
      dst[static_cast<std::size_t>(c) * rows + r] = src[static_cast<std::size_t>(r) * cols + c];
}

template <class T>
void CpuOps<T>::muon_momentum(T* buf, T* u, const T* g, const T* mu_value, bool nesterov, std::size_t n,
                              const double* skip) {
  if (skip != nullptr && *skip != 0.0) return;
  const T mu = *mu_value;
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) {
    buf[i] = mu * buf[i] + g[i];
    u[i] = nesterov ? g[i] + mu * buf[i] : buf[i];
  }
}

template <class T>
void CpuOps<T>::axpby_step(T* y, const T* x, const T* ab, std::size_t n, const double* skip) {
  if (skip != nullptr && *skip != 0.0) return;
  axpby(y, x, ab[0], ab[1], n);
}

template <class T>
void CpuOps<T>::normalize_rows(T* x, int rows, int cols, T eps) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    T* row = x + static_cast<std::size_t>(r) * cols;
    double sq = 0.0;
    for (int c = 0; c < cols; ++c) sq += static_cast<double>(row[c]) * row[c];
    const T inv = static_cast<T>(1.0 / std::max(std::sqrt(sq), static_cast<double>(eps)));
    for (int c = 0; c < cols; ++c) row[c] *= inv;
  }
}

namespace {
// AdamW on n values with its step constants c = adamw_constants(...) (torch's order of operations).
template <class T>
void adamw_values(T* p, const T* g, T* m, T* v, std::size_t n, const std::array<T, 3>& c, T beta1, T beta2, T eps) {
  const T step = c[0], decay = c[1], bias2_sqrt = c[2];
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) {
    p[i] *= decay;
    m[i] = beta1 * m[i] + (T(1) - beta1) * g[i];
    v[i] = beta2 * v[i] + (T(1) - beta2) * g[i] * g[i];
    p[i] -= step * m[i] / (std::sqrt(v[i]) / bias2_sqrt + eps);
  }
}
}  // namespace

template <class T>
void CpuOps<T>::adamw_update(T* p, const T* g, T* m, T* v, std::size_t n, T lr, T beta1, T beta2, T eps,
                             T weight_decay, std::int64_t t) {
  adamw_values(p, g, m, v, n, adamw_constants<T>(lr, beta1, beta2, weight_decay, t), beta1, beta2, eps);
}

template <class T>
void CpuOps<T>::adamw_step(T* p, const T* g, T* m, T* v, std::size_t n, const T* c, T beta1, T beta2, T eps,
                           const double* skip) {
  if (skip != nullptr && *skip != 0.0) return;
  adamw_values(p, g, m, v, n, {c[0], c[1], c[2]}, beta1, beta2, eps);
}

template <class T>
void CpuOps<T>::accumulate_loss(double* acc, const T* loss_sum, double divisor) {
  *acc += static_cast<double>(*loss_sum) / divisor;
}

template <class T>
void CpuOps<T>::step_guard(double* state, const double* loss, const double* sum_sq, double max_norm) {
  const double norm = std::sqrt(*sum_sq);
  const bool finite = std::isfinite(*loss) && std::isfinite(norm);
  if (!finite) state[kStepSkip] = 1.0;
  state[kStepClipCoef] = max_norm > 0 && std::isfinite(norm) ? std::min(1.0, max_norm / (norm + 1e-6)) : 1.0;
}

template <class T>
void CpuOps<T>::clip_scale(T* x, std::size_t n, const double* state) {
  if (state[kStepSkip] != 0.0 || !(state[kStepClipCoef] < 1.0)) return;
  scale_values(x, static_cast<T>(state[kStepClipCoef]), n);
}

template <class T>
void CpuOps<T>::sgd_momentum_update(T* p, const T* g, T* buf, std::size_t n, T lr, T momentum) {
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) {
    buf[i] = momentum * buf[i] + g[i];
    p[i] -= lr * buf[i];
  }
}

template <class T>
void CpuOps<T>::fake_quant_int6(T* dst, const T* src, int rows, int cols) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    const T* w = src + static_cast<std::size_t>(r) * cols;
    T* q = dst + static_cast<std::size_t>(r) * cols;
    T mx = 0;
    for (int c = 0; c < cols; ++c) mx = std::max(mx, std::fabs(w[c]));
    const T s = std::max(mx / T(31), T(1) / T(31));
    for (int c = 0; c < cols; ++c) q[c] = std::clamp(std::nearbyint(w[c] / s), T(-32), T(31)) * s;
  }
}

template class CpuOps<float>;
template class CpuOps<double>;

}  // namespace pgolf::backend
