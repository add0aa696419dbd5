// The CUDA backend: every op of backend::Ops<float> as one or two kernel launches from
// kernels/ (or a cuBLASLt product), on the default stream, in issue order. Host code only:
// g++ compiles it once against the CUDA headers, and the same object links either with the
// real CUDA libraries and the nvcc-built kernels (`pgolf`) or with the emulator's doubles and
// the g++-built kernels (`pgolf-emu`).
//
// Errors: a failed allocation or copy, and a launch error reported by the runtime, become
// Error(device) naming the op. The emulator reports a kernel bug (a race, an out-of-bounds
// write) by throwing from the launch itself.
#include "backend/cuda/cuda_ops.hpp"

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "attention.cuh"
#include "common/error.hpp"
#include "elementwise.cuh"
#include "embedding.cuh"
#include "heads.cuh"
#include "matmul.cuh"
#include "mixing.cuh"
#include "norm.cuh"
#include "optim.cuh"
#include "residual.cuh"
#include "softcap_ce.cuh"

namespace pgolf::backend {

namespace {

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail(ErrorKind::device, "CUDA backend: ", what, ": ", cudaGetErrorString(e));
}

// A device scratch buffer that only grows (attention's dv partials, per-row NLL sums, the
// float64 result of sum_squares), allocated through its backend so the backend's peak counts it.
// Callers reserve() the largest size up front; get() grows it only past that (an allocation
// the stall counters show).
class Workspace {
 public:
  void* get(Device& device, std::size_t bytes) {
    reserve(device, bytes);
    return data_;
  }
  void reserve(Device& device, std::size_t bytes) {
    if (bytes <= bytes_) return;
    release(device);
    data_ = device.allocate(bytes);
    bytes_ = bytes;
  }
  void release(Device& device) {
    if (data_ != nullptr) device.release(data_);
    data_ = nullptr;
    bytes_ = 0;
  }

 private:
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

class CudaOps final : public Ops<float> {
 public:
  explicit CudaOps(std::string device) : device_(std::move(device)) {
    const cublasStatus_t s = cublasLtCreate(&lt_);
    if (s != CUBLAS_STATUS_SUCCESS)
      fail(ErrorKind::device, "CUDA backend: cannot create a cuBLASLt handle (status ", static_cast<int>(s), ")");
    // A blocking stream: it stays ordered with anything a library issues on the legacy
    // default stream, so no hidden dependency can race.
    check_cuda(cudaStreamCreate(&stream_), "creating the compute stream");
  }
  ~CudaOps() override {
    cudaStreamSynchronize(stream_);  // nothing in flight reads a buffer freed below
    for (Workspace* w : {&dv_workspace_, &row_nll_workspace_, &sum_workspace_}) w->release(*this);
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
    for (StagingBuffer& b : staging_) {
      if (b.host != nullptr) cudaFreeHost(b.host);
      if (b.copied != nullptr) cudaEventDestroy(b.copied);
    }
    cublasLtDestroy(lt_);
    cudaStreamDestroy(stream_);
  }
  CudaOps(const CudaOps&) = delete;
  CudaOps& operator=(const CudaOps&) = delete;

  std::string name() const override { return "cuda (" + device_ + ")"; }

  void* allocate(std::size_t bytes) override {
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes == 0 ? 1 : bytes);
    if (e != cudaSuccess)
      fail(ErrorKind::device, "CUDA backend: cannot allocate ", bytes, " bytes of device memory: ", cudaGetErrorString(e));
    check_cuda(cudaMemsetAsync(p, 0, bytes, stream_), "zeroing a new allocation");
    ++stalls_.allocation_calls;
    ledger_.add(p, bytes);
    return p;
  }
  void release(void* p) override {  // never throws: called from destructors
    if (p == nullptr) return;  // nothing to free, nothing to count
    ledger_.remove(p);
    ++stalls_.allocation_calls;
    cudaFree(p);  // synchronises the device: no op still in flight reads p
  }
  std::optional<StallCounts> stall_counts() const override { return stalls_; }
  void reserve(const Reservation& r) override {
    dv_workspace_.reserve(*this, r.attention_kv_values * sizeof(float));
    row_nll_workspace_.reserve(*this, r.loss_rows * sizeof(double));
    sum_workspace_.reserve(*this, sizeof(double));
    if (r.staging_bytes > 0)
      for (StagingBuffer& b : staging_) grow_staging(b, r.staging_bytes);
  }
  std::uint64_t reserved_bytes(const Reservation& r) const override {
    return r.attention_kv_values * sizeof(float) + r.loss_rows * sizeof(double) + sizeof(double);
  }
  std::uint64_t peak_bytes() const override { return ledger_.peak(); }
  bool start_op_timing() override {
    synchronize();
    timing_ = true;
    events_used_ = 0;
    timed_.clear();
    return true;
  }
  OpProfile stop_op_timing() override {
    synchronize();
    timing_ = false;
    std::map<std::string, OpTiming> by_op;
    for (const TimedLaunch& t : timed_) {
      float ms = 0.0f;
      check_cuda(cudaEventElapsedTime(&ms, t.start, t.stop), "reading a timing event");
      OpTiming& o = by_op[t.op];
      o.op = t.op;
      ++o.calls;
      o.ms += ms;
      o.flops += t.flops;
    }
    timed_.clear();
    OpProfile profile;
    for (auto& [name, o] : by_op) profile.ops.push_back(o);
    std::stable_sort(profile.ops.begin(), profile.ops.end(), [](const OpTiming& a, const OpTiming& b) { return a.ms > b.ms; });
    return profile;
  }
  // Copies from and to pageable host memory wait for the stream's work and the copy.
  void to_device(void* dst, const void* src, std::size_t bytes) override {
    ++stalls_.host_syncs;
    check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "copy host to device");
    check_cuda(cudaStreamSynchronize(stream_), "copy host to device");
  }
  void to_host(void* dst, const void* src, std::size_t bytes) override {
    ++stalls_.host_syncs;
    check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "copy device to host");
    check_cuda(cudaStreamSynchronize(stream_), "copy device to host");
  }
  // Through a pinned staging buffer: the first one from the ring's position on that is big
  // enough and whose previous copy has run, else the next one (grown when too small, which
  // happens while warming up; the host waits only when its previous copy has not run yet,
  // counted as a staging wait).
  void stage_to_device(void* dst, const void* src, std::size_t bytes) override {
    if (bytes == 0) return;
    std::size_t pick = next_staging_;
    for (std::size_t k = 0; k < staging_.size(); ++k) {
      const std::size_t i = (next_staging_ + k) % staging_.size();
      const StagingBuffer& c = staging_[i];
      if (c.bytes >= bytes && (!c.in_flight || cudaEventQuery(c.copied) == cudaSuccess)) {
        pick = i;
        break;
      }
    }
    StagingBuffer& b = staging_[pick];
    next_staging_ = (pick + 1) % staging_.size();
    if (b.copied == nullptr) check_cuda(cudaEventCreateWithFlags(&b.copied, cudaEventDisableTiming), "creating a staging event");
    if (b.in_flight) {
      const cudaError_t q = cudaEventQuery(b.copied);
      if (q == cudaErrorNotReady) {
        ++stalls_.staging_waits;
        check_cuda(cudaEventSynchronize(b.copied), "waiting for a staging buffer");
      } else {
        check_cuda(q, "querying a staging buffer");
      }
      b.in_flight = false;
    }
    grow_staging(b, bytes);
    std::memcpy(b.host, src, bytes);
    check_cuda(cudaMemcpyAsync(dst, b.host, bytes, cudaMemcpyHostToDevice, stream_), "staged copy host to device");
    check_cuda(cudaEventRecord(b.copied, stream_), "recording a staging event");
    b.in_flight = true;
  }
  void copy(void* dst, const void* src, std::size_t bytes) override {
    check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), "copy device to device");
  }
  void zero(void* p, std::size_t bytes) override { check_cuda(cudaMemsetAsync(p, 0, bytes, stream_), "memset"); }
  void synchronize() override {
    ++stalls_.host_syncs;
    check_cuda(cudaStreamSynchronize(stream_), "synchronize");
  }
  MemoryInfo memory_info() override {
    std::size_t free = 0, total = 0;
    check_cuda(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
    return {true, free, total, "cudaMemGetInfo"};
  }

  void copy_values(float* y, const float* x, std::size_t n) override { copy(y, x, n * sizeof(float)); }
  void add_into(float* y, const float* x, std::size_t n) override {
    guarded("add_into", [&] { kernels::add_into(y, x, n, stream_); });
  }

  void embedding_forward(float* out, const std::int32_t* ids, const float* table, int n, int dim) override {
    guarded("embedding_forward", [&] { kernels::embedding_forward(out, ids, table, n, dim, stream_); });
  }
  void embedding_backward(float* dtable, const std::int32_t* ids, const float* dout, int n, int dim) override {
    guarded("embedding_backward", [&] { kernels::embedding_backward(dtable, ids, dout, n, dim, stream_); });
  }
  void bigram_hash(std::int32_t* out, const std::int32_t* ids, int batch, int seq, int buckets) override {
    guarded("bigram_hash", [&] { kernels::bigram_hash(out, ids, batch, seq, buckets, stream_); });
  }

  void matmul_forward(float* y, const float* x, const float* w, int n, int in, int out, bool accumulate) override {
    guarded("matmul_forward", [&] { kernels::matmul_forward(lt_, y, x, w, n, in, out, accumulate, stream_); },
            matmul_flops(n, in, out));
  }
  void matmul_backward(float* dx, float* dw, const float* dy, const float* x, const float* w, int n, int in, int out,
                       bool accumulate_dx) override {
    guarded("matmul_backward",
            [&] { kernels::matmul_backward(lt_, dx, dw, dy, x, w, n, in, out, accumulate_dx, stream_); },
            matmul_flops(n, in, out) * ((dx != nullptr ? 1 : 0) + (dw != nullptr ? 1 : 0)));
  }

  void rmsnorm_forward(float* y, float* rstd, const float* x, int n, int dim, float multiplier) override {
    guarded("rmsnorm_forward", [&] { kernels::rmsnorm_forward(y, rstd, x, n, dim, multiplier, stream_); });
  }
  void rmsnorm_backward(float* dx, const float* dy, const float* x, const float* rstd, int n, int dim, float multiplier,
                        bool accumulate) override {
    guarded("rmsnorm_backward", [&] { kernels::rmsnorm_backward(dx, dy, x, rstd, n, dim, multiplier, accumulate, stream_); });
  }

  void add_scaled_forward(float* y, const float* x, const float* s1, const float* s2, std::size_t n) override {
    guarded("add_scaled_forward", [&] { kernels::add_scaled_forward(y, x, s1, s2, n, stream_); });
  }
  void add_scaled_backward(float* dx, float* ds1, float* ds2, const float* dy, const float* x, const float* s1,
                           const float* s2, std::size_t n, bool accumulate_dx) override {
    guarded("add_scaled_backward", [&] { kernels::add_scaled_backward(dx, ds1, ds2, dy, x, s1, s2, n, accumulate_dx, stream_); });
  }
  void residual_scale_forward(float* out, const float* base, const float* y, const float* scale, int n,
                              int dim) override {
    guarded("residual_scale_forward", [&] { kernels::residual_scale_forward(out, base, y, scale, n, dim, stream_); });
  }
  void residual_scale_backward(float* dy, float* dscale, const float* dout, const float* y, const float* scale, int n,
                               int dim) override {
    guarded("residual_scale_backward", [&] { kernels::residual_scale_backward(dy, dscale, dout, y, scale, n, dim, stream_); });
  }
  void resid_mix_forward(float* xin, const float* x, const float* x0, const float* mix, int n, int dim) override {
    guarded("resid_mix_forward", [&] { kernels::resid_mix_forward(xin, x, x0, mix, n, dim, stream_); });
  }
  void resid_mix_backward(float* dx, float* dx0, float* dmix, const float* dxin, const float* x, const float* x0,
                          const float* mix, int n, int dim) override {
    guarded("resid_mix_backward", [&] { kernels::resid_mix_backward(dx, dx0, dmix, dxin, x, x0, mix, n, dim, stream_); });
  }

  void smear_forward(float* y, const float* x, const float* gate, int batch, int seq, int dim) override {
    guarded("smear_forward", [&] { kernels::smear_forward(y, x, gate, batch, seq, dim, stream_); });
  }
  void smear_backward(float* dx, float* dgate, const float* dy, const float* x, const float* gate, int batch, int seq,
                      int dim) override {
    guarded("smear_backward", [&] { kernels::smear_backward(dx, dgate, dy, x, gate, batch, seq, dim, stream_); });
  }
  void skip_forward(float* x, const float* s, const float* w, const float* gate, int n, int dim) override {
    guarded("skip_forward", [&] { kernels::skip_forward(x, s, w, gate, n, dim, stream_); });
  }
  void skip_backward(float* dx, float* ds, float* dw, float* dgate, const float* x_before, const float* s,
                     const float* w, const float* gate, int n, int dim) override {
    guarded("skip_backward", [&] { kernels::skip_backward(dx, ds, dw, dgate, x_before, s, w, gate, n, dim, stream_); });
  }
  void lane_merge_forward(float* out, const float* a, const float* b, const float* m, std::size_t n) override {
    guarded("lane_merge_forward", [&] { kernels::lane_merge_forward(out, a, b, m, n, stream_); });
  }
  void lane_merge_backward(float* da, float* db, float* dm, const float* dout, const float* a, const float* b,
                           const float* m, std::size_t n) override {
    guarded("lane_merge_backward", [&] { kernels::lane_merge_backward(da, db, dm, dout, a, b, m, n, stream_); });
  }

  void rope_apply(float* x, const float* cos_table, const float* sin_table, int rows, int seq, int heads, int hd,
                  int rope_dims, bool inverse) override {
    guarded("rope_apply", [&] { kernels::rope_apply(x, cos_table, sin_table, rows, seq, heads, hd, rope_dims, inverse, stream_); });
  }
  void head_gain_forward(float* y, const float* x, const float* gain, int rows, int heads, int hd) override {
    guarded("head_gain_forward", [&] { kernels::head_gain_forward(y, x, gain, rows, heads, hd, stream_); });
  }
  void head_gain_backward(float* dx, float* dgain, const float* dy, const float* x, const float* gain, int rows,
                          int heads, int hd) override {
    guarded("head_gain_backward", [&] { kernels::head_gain_backward(dx, dgain, dy, x, gain, rows, heads, hd, stream_); });
  }
  void attention_forward(float* y, float* lse, const float* q, const float* k, const float* v, int batch, int seq,
                         int heads, int kv_heads, int hd) override {
    guarded("attention_forward", [&] { kernels::attention_forward(y, lse, q, k, v, batch, seq, heads, kv_heads, hd, stream_); },
            causal_attention_flops(batch, heads, seq, hd));
  }
  void attention_backward(float* dq, float* dk, float* dv, const float* dy, const float* q, const float* k,
                          const float* v, const float* y, const float* lse, int batch, int seq, int heads,
                          int kv_heads, int hd, bool accumulate_dv) override {
    const std::size_t dv_values = static_cast<std::size_t>(batch) * seq * kv_heads * hd;
    auto* dv_partial = static_cast<float*>(dv_workspace_.get(*this, dv_values * sizeof(float)));
    guarded("attention_backward", [&] { kernels::attention_backward(dq, dk, dv, dy, q, k, v, y, lse, batch, seq, heads, kv_heads, hd, accumulate_dv,
                                dv_partial, stream_); },
            2.0 * causal_attention_flops(batch, heads, seq, hd));
  }
  void xsa_forward(float* out, const float* y, const float* v, int rows, int heads, int kv_heads, int hd) override {
    guarded("xsa_forward", [&] { kernels::xsa_forward(out, y, v, rows, heads, kv_heads, hd, stream_); });
  }
  void xsa_backward(float* dy, float* dv, const float* dout, const float* y, const float* v, int rows, int heads,
                    int kv_heads, int hd) override {
    guarded("xsa_backward", [&] { kernels::xsa_backward(dy, dv, dout, y, v, rows, heads, kv_heads, hd, stream_); });
  }

  void leaky_relu_sq_forward(float* z, const float* h, float slope, std::size_t n) override {
    guarded("leaky_relu_sq_forward", [&] { kernels::leaky_relu_sq_forward(z, h, slope, n, stream_); });
  }
  void leaky_relu_sq_backward(float* dh, const float* dz, const float* h, float slope, std::size_t n) override {
    guarded("leaky_relu_sq_backward", [&] { kernels::leaky_relu_sq_backward(dh, dz, h, slope, n, stream_); });
  }

  void softcap_ce_forward(float* logits, float* nll, float* loss_sum, const std::int32_t* targets, int n, int vocab,
                          float cap) override {
    auto* row_nll = static_cast<double*>(
        row_nll_workspace_.get(*this, static_cast<std::size_t>(n > 0 ? n : 1) * sizeof(double)));
    guarded("softcap_ce_forward", [&] { kernels::softcap_ce_forward(logits, nll, loss_sum, targets, n, vocab, cap, row_nll, stream_); });
  }
  void softcap_ce_backward(float* dz, const float* logits, const std::int32_t* targets, int n, int vocab, float cap,
                           float scale) override {
    guarded("softcap_ce_backward", [&] { kernels::softcap_ce_backward(dz, logits, targets, n, vocab, cap, scale, stream_); });
  }
  bool supports(FusedOp op) const override { return op == FusedOp::softcap_ce || op == FusedOp::qk_prep; }
  void qk_prep_forward(float* normed, float* out, float* rstd, const float* x, const float* gain, const float* cos_table,
                       const float* sin_table, int rows, int seq, int heads, int hd, int rope_dims) override {
    guarded("qk_prep_forward", [&] {
      kernels::qk_prep_forward(normed, out, rstd, x, gain, cos_table, sin_table, rows, seq, heads, hd, rope_dims, stream_);
    });
  }
  void qk_prep_backward(float* dx, float* dgain, const float* dout, const float* x, const float* normed,
                        const float* rstd, const float* gain, const float* cos_table, const float* sin_table, int rows,
                        int seq, int heads, int hd, int rope_dims) override {
    guarded("qk_prep_backward", [&] {
      kernels::qk_prep_backward(dx, dgain, dout, x, normed, rstd, gain, cos_table, sin_table, rows, seq, heads, hd,
                                rope_dims, stream_);
    });
  }
  void softcap_ce_fused(float* z, float* nll, float* loss_sum, const std::int32_t* targets, int n, int vocab, float cap,
                        float scale) override {
    auto* row_nll = static_cast<double*>(
        row_nll_workspace_.get(*this, static_cast<std::size_t>(n > 0 ? n : 1) * sizeof(double)));
    guarded("softcap_ce_fused",
            [&] { kernels::softcap_ce_fused(z, nll, loss_sum, targets, n, vocab, cap, scale, row_nll, stream_); });
  }

  void add_group_rows(float* y, const float* x, const float* rows, int groups, int group_rows, int dim) override {
    guarded("add_group_rows", [&] { kernels::add_group_rows(y, x, rows, groups, group_rows, dim, stream_); });
  }
  void sum_group_rows(float* out, const float* x, int groups, int group_rows, int dim) override {
    guarded("sum_group_rows", [&] { kernels::sum_group_rows(out, x, groups, group_rows, dim, stream_); });
  }
  void scale_rows(float* x, const float* w, int n, int dim) override {
    guarded("scale_rows", [&] { kernels::scale_rows(x, w, n, dim, stream_); });
  }

  void gemm(float* c, const float* a, const float* b, int m, int n, int k, bool trans_a, bool trans_b, float alpha,
            float beta) override {
    guarded("gemm", [&] { kernels::gemm(lt_, c, a, b, m, n, k, trans_a, trans_b, alpha, beta, stream_); },
            matmul_flops(m, k, n));
  }
  void axpby(float* y, const float* x, float a, float b, std::size_t n) override {
    guarded("axpby", [&] { kernels::axpby(y, x, a, b, n, stream_); });
  }
  void scale_values(float* x, float s, std::size_t n) override {
    guarded("scale_values", [&] { kernels::scale_values(x, s, n, stream_); });
  }
  double sum_squares(const float* x, std::size_t n) override {
    auto* out = static_cast<double*>(sum_workspace_.get(*this, sizeof(double)));
    sum_squares_to(out, x, n);
    double host = 0.0;
    to_host(&host, out, sizeof host);
    return host;
  }
  void transpose(float* dst, const float* src, int rows, int cols) override {
    guarded("transpose", [&] { kernels::transpose(dst, src, rows, cols, stream_); });
  }
  void sum_squares_to(double* out, const float* x, std::size_t n) override {
    guarded("sum_squares", [&] { kernels::sum_squares(out, x, n, stream_); });
  }
  void scale_by_inverse_norm(float* x, std::size_t n, const double* sum_sq, double eps) override {
    guarded("scale_by_inverse_norm", [&] { kernels::scale_by_inverse_norm(x, n, sum_sq, eps, stream_); });
  }
  void muon_momentum(float* buf, float* u, const float* g, const float* mu, bool nesterov, std::size_t n,
                     const double* skip) override {
    guarded("muon_momentum", [&] { kernels::muon_momentum(buf, u, g, mu, nesterov, n, skip, stream_); });
  }
  void axpby_step(float* y, const float* x, const float* ab, std::size_t n, const double* skip) override {
    guarded("axpby_step", [&] { kernels::axpby_step(y, x, ab, n, skip, stream_); });
  }
  void adamw_step(float* p, const float* g, float* m, float* v, std::size_t n, const float* c, float beta1, float beta2,
                  float eps, const double* skip) override {
    guarded("adamw_step", [&] { kernels::adamw_step(p, g, m, v, n, c, beta1, beta2, eps, skip, stream_); });
  }
  void accumulate_loss(double* acc, const float* loss_sum, double divisor) override {
    guarded("accumulate_loss", [&] { kernels::accumulate_loss(acc, loss_sum, divisor, stream_); });
  }
  void step_guard(double* state, const double* loss, const double* sum_sq, double max_norm) override {
    guarded("step_guard", [&] { kernels::step_guard(state, loss, sum_sq, max_norm, stream_); });
  }
  void clip_scale(float* x, std::size_t n, const double* state) override {
    guarded("clip_scale", [&] { kernels::clip_scale(x, n, state, stream_); });
  }
  void normalize_rows(float* x, int rows, int cols, float eps) override {
    guarded("normalize_rows", [&] { kernels::normalize_rows(x, rows, cols, eps, stream_); });
  }
  void adamw_update(float* p, const float* g, float* m, float* v, std::size_t n, float lr, float beta1, float beta2,
                    float eps, float weight_decay, std::int64_t t) override {
    const std::array<float, 3> c = adamw_constants<float>(lr, beta1, beta2, weight_decay, t);
    guarded("adamw_update", [&] { kernels::adamw_update(p, g, m, v, n, c[0], c[1], c[2], beta1, beta2, eps, stream_); });
  }
  void sgd_momentum_update(float* p, const float* g, float* buf, std::size_t n, float lr, float momentum) override {
    guarded("sgd_momentum_update", [&] { kernels::sgd_momentum_update(p, g, buf, n, lr, momentum, stream_); });
  }
  void fake_quant_int6(float* dst, const float* src, int rows, int cols) override {
    guarded("fake_quant_int6", [&] { kernels::fake_quant_int6(dst, src, rows, cols, stream_); });
  }

 private:
  // Runs one op's launches, between two timing events when op timing is on. A shape beyond
  // a kernel's limits (std::invalid_argument) is a config error; a cuBLASLt failure and a
  // launch error the runtime reports at once are device errors; faults inside a kernel surface
  // at the next synchronising call (a copy to the host), where check_cuda names that call
  // instead. The emulator's own findings (a race, an out-of-bounds write: emu::Error) pass
  // through as the internal errors they are.
  template <class Launches>
  void guarded(const char* op, Launches&& launches, double flops = 0.0) {
    cudaEvent_t start = timing_ ? record_event() : nullptr;
    try {
      launches();
    } catch (const std::invalid_argument& e) {
      fail(ErrorKind::config, "CUDA backend: ", op, ": ", e.what(), " (the CPU backend has no such limit: backend cpu)");
    } catch (const kernels::CublasError& e) {
      fail(ErrorKind::device, "CUDA backend: ", op, ": ", e.what());
    }
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) fail(ErrorKind::device, "CUDA backend: ", op, ": kernel launch failed: ", cudaGetErrorString(e));
    if (timing_) timed_.push_back(TimedLaunch{op, flops, start, record_event()});
  }
  // The next event of the pool (grown on demand, reused after stop_op_timing), recorded now.
  cudaEvent_t record_event() {
    if (events_used_ == events_.size()) {
      cudaEvent_t e = nullptr;
      check_cuda(cudaEventCreate(&e), "creating a timing event");
      events_.push_back(e);
    }
    cudaEvent_t e = events_[events_used_++];
    check_cuda(cudaEventRecord(e, stream_), "recording a timing event");
    return e;
  }

  struct TimedLaunch {
    const char* op;
    double flops;
    cudaEvent_t start, stop;
  };
  std::string device_;
  cublasLtHandle_t lt_ = nullptr;
  // A pinned host buffer that stage_to_device copies through, and the event after its copy.
  struct StagingBuffer {
    void* host = nullptr;
    std::size_t bytes = 0;
    cudaEvent_t copied = nullptr;
    bool in_flight = false;
  };
  // Makes b hold at least `bytes` (b is not in flight: its previous copy has finished).
  void grow_staging(StagingBuffer& b, std::size_t bytes) {
    if (b.bytes >= bytes) return;
    if (b.in_flight) {
      check_cuda(cudaEventSynchronize(b.copied), "waiting for a staging buffer");
      b.in_flight = false;
    }
    if (b.host != nullptr) check_cuda(cudaFreeHost(b.host), "freeing a staging buffer");
    b.host = nullptr;
    b.bytes = 0;
    check_cuda(cudaHostAlloc(&b.host, bytes, cudaHostAllocDefault), "allocating a pinned staging buffer");
    b.bytes = bytes;
    ++stalls_.allocation_calls;
  }
  cudaStream_t stream_ = nullptr;  // the compute stream: every op in issue order
  // Enough buffers for a training step's uploads (its per-step constants and each micro-batch's
  // ids and targets) to be in flight while the host prepares the next ones.
  std::array<StagingBuffer, 64> staging_{};
  std::size_t next_staging_ = 0;
  AllocationLedger ledger_;
  StallCounts stalls_;
  bool timing_ = false;
  std::vector<cudaEvent_t> events_;
  std::size_t events_used_ = 0;
  std::vector<TimedLaunch> timed_;
  Workspace dv_workspace_, row_nll_workspace_, sum_workspace_;
};

}  // namespace

std::unique_ptr<Ops<float>> create_cuda_ops(std::string device) { return std::make_unique<CudaOps>(std::move(device)); }

}  // namespace pgolf::backend
