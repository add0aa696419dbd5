#pragma once
// The CPU reference backend: OpenMP loops and OpenBLAS GEMM, in float or double.
// pgolf's own reductions run over a fixed partition of the data (independent of the thread
// count) and combine partial sums in a fixed order, in double precision; results are
// bit-identical for the same inputs and thread count (OpenBLAS's GEMMs may round
// differently for another thread count).
#include <cstdint>

#include "backend/ops.hpp"

namespace pgolf::backend {

// Sets the threads used by OpenMP loops and OpenBLAS (0 = all cores).
void set_cpu_threads(int threads);
int cpu_threads();

template <class T>
class CpuOps final : public Ops<T> {
 public:
  // offer_fused_ops = false hides the fused ops from supports(), so that a caller composes them
  // (tests compare the two paths).
  explicit CpuOps(bool offer_fused_ops = true) : offer_fused_ops_(offer_fused_ops) {}
  std::string name() const override;
  void* allocate(std::size_t bytes) override;
  void release(void* p) override;
  void to_device(void* dst, const void* src, std::size_t bytes) override;
  void to_host(void* dst, const void* src, std::size_t bytes) override;
  void copy(void* dst, const void* src, std::size_t bytes) override;
  void zero(void* p, std::size_t bytes) override;
  void synchronize() override {}
  MemoryInfo memory_info() override { return host_memory_info(); }
  // Bytes allocated through this object and not yet released (what a memory plan predicts).
  std::uint64_t live_bytes() const { return ledger_.live(); }
  std::uint64_t peak_bytes() const override { return ledger_.peak(); }

  void copy_values(T* y, const T* x, std::size_t n) override;
  void add_into(T* y, const T* x, std::size_t n) override;
  void embedding_forward(T* out, const std::int32_t* ids, const T* table, int n, int dim) override;
  void embedding_backward(T* dtable, const std::int32_t* ids, const T* dout, int n, int dim) override;
  void bigram_hash(std::int32_t* out, const std::int32_t* ids, int batch, int seq, int buckets) override;
  void matmul_forward(T* y, const T* x, const T* w, int n, int in, int out, bool accumulate) override;
  void matmul_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, int n, int in, int out,
                       bool accumulate_dx) override;
  void rmsnorm_forward(T* y, T* rstd, const T* x, int n, int dim, T multiplier) override;
  void rmsnorm_backward(T* dx, const T* dy, const T* x, const T* rstd, int n, int dim, T multiplier,
                        bool accumulate) override;
  void add_scaled_forward(T* y, const T* x, const T* s1, const T* s2, std::size_t n) override;
  void add_scaled_backward(T* dx, T* ds1, T* ds2, const T* dy, const T* x, const T* s1, const T* s2, std::size_t n,
                           bool accumulate_dx) override;
  void residual_scale_forward(T* out, const T* base, const T* y, const T* scale, int n, int dim) override;
  void residual_scale_backward(T* dy, T* dscale, const T* dout, const T* y, const T* scale, int n, int dim) override;
  void resid_mix_forward(T* xin, const T* x, const T* x0, const T* mix, int n, int dim) override;
  void resid_mix_backward(T* dx, T* dx0, T* dmix, const T* dxin, const T* x, const T* x0, const T* mix, int n,
                          int dim) override;
  void smear_forward(T* y, const T* x, const T* gate, int batch, int seq, int dim) override;
  void smear_backward(T* dx, T* dgate, const T* dy, const T* x, const T* gate, int batch, int seq, int dim) override;
  void skip_forward(T* x, const T* s, const T* w, const T* gate, int n, int dim) override;
  void skip_backward(T* dx, T* ds, T* dw, T* dgate, const T* x_before, const T* s, const T* w, const T* gate, int n,
                     int dim) override;
  void lane_merge_forward(T* out, const T* a, const T* b, const T* m, std::size_t n) override;
  void lane_merge_backward(T* da, T* db, T* dm, const T* dout, const T* a, const T* b, const T* m,
                           std::size_t n) override;
  void rope_apply(T* x, const T* cos_table, const T* sin_table, int rows, int seq, int heads, int hd, int rope_dims,
                  bool inverse) override;
  void head_gain_forward(T* y, const T* x, const T* gain, int rows, int heads, int hd) override;
  void head_gain_backward(T* dx, T* dgain, const T* dy, const T* x, const T* gain, int rows, int heads,
                          int hd) override;
  void attention_forward(T* y, T* lse, const T* q, const T* k, const T* v, int batch, int seq, int heads,
                         int kv_heads, int hd) override;
  void attention_backward(T* dq, T* dk, T* dv, const T* dy, const T* q, const T* k, const T* v, const T* y,
                          const T* lse, int batch, int seq, int heads, int kv_heads, int hd,
                          bool accumulate_dv) override;
  void xsa_forward(T* out, const T* y, const T* v, int rows, int heads, int kv_heads, int hd) override;
  void xsa_backward(T* dy, T* dv, const T* dout, const T* y, const T* v, int rows, int heads, int kv_heads,
                    int hd) override;
  void leaky_relu_sq_forward(T* z, const T* h, T slope, std::size_t n) override;
  void leaky_relu_sq_backward(T* dh, const T* dz, const T* h, T slope, std::size_t n) override;
  void softcap_ce_forward(T* logits, T* nll, T* loss_sum, const std::int32_t* targets, int n, int vocab,
                          T cap) override;
  void softcap_ce_backward(T* dz, const T* logits, const std::int32_t* targets, int n, int vocab, T cap,
                           T scale) override;
  bool supports(FusedOp op) const override {
    return offer_fused_ops_ && (op == FusedOp::softcap_ce || op == FusedOp::qk_prep);
  }
  void qk_prep_forward(T* normed, T* out, T* rstd, const T* x, const T* gain, const T* cos_table, const T* sin_table,
                       int rows, int seq, int heads, int hd, int rope_dims) override;
  void qk_prep_backward(T* dx, T* dgain, const T* dout, const T* x, const T* normed, const T* rstd, const T* gain,
                        const T* cos_table, const T* sin_table, int rows, int seq, int heads, int hd,
                        int rope_dims) override;
  void softcap_ce_fused(T* z, T* nll, T* loss_sum, const std::int32_t* targets, int n, int vocab, T cap,
                        T scale) override;
  void add_group_rows(T* y, const T* x, const T* rows, int groups, int group_rows, int dim) override;
  void sum_group_rows(T* out, const T* x, int groups, int group_rows, int dim) override;
  void scale_rows(T* x, const T* w, int n, int dim) override;
  void gemm(T* c, const T* a, const T* b, int m, int n, int k, bool trans_a, bool trans_b, T alpha, T beta) override;
  void axpby(T* y, const T* x, T a, T b, std::size_t n) override;
  void scale_values(T* x, T s, std::size_t n) override;
  double sum_squares(const T* x, std::size_t n) override;
  void sum_squares_to(double* out, const T* x, std::size_t n) override;
  void scale_by_inverse_norm(T* x, std::size_t n, const double* sum_sq, double eps) override;
  void transpose(T* dst, const T* src, int rows, int cols) override;
  void muon_momentum(T* buf, T* u, const T* g, const T* mu, bool nesterov, std::size_t n, const double* skip) override;
  void axpby_step(T* y, const T* x, const T* ab, std::size_t n, const double* skip) override;
  void normalize_rows(T* x, int rows, int cols, T eps) override;
  void adamw_update(T* p, const T* g, T* m, T* v, std::size_t n, T lr, T beta1, T beta2, T eps, T weight_decay,
                    std::int64_t t) override;
  void adamw_step(T* p, const T* g, T* m, T* v, std::size_t n, const T* c, T beta1, T beta2, T eps,
                  const double* skip) override;
  void accumulate_loss(double* acc, const T* loss_sum, double divisor) override;
  void step_guard(double* state, const double* loss, const double* sum_sq, double max_norm) override;
  void clip_scale(T* x, std::size_t n, const double* state) override;
  void sgd_momentum_update(T* p, const T* g, T* buf, std::size_t n, T lr, T momentum) override;
  void fake_quant_int6(T* dst, const T* src, int rows, int cols) override;
 private:
  // softcap_ce_forward's rows, and with grad_scale softcap_ce_fused's (the gradient in place).
  void softcap_ce_rows(T* logits, T* nll, T* loss_sum, const std::int32_t* targets, int n, int vocab, T cap,
                       const T* grad_scale);
  bool offer_fused_ops_;
  AllocationLedger ledger_;
};

extern template class CpuOps<float>;
extern template class CpuOps<double>;

}  // namespace pgolf::backend
