#pragma once
// The op interface: every computation the model needs, forward and backward, implemented
// once per backend (CPU reference in backend/cpu, CUDA in backend/cuda). The model
// orchestration (src/model) is written once against this interface and never touches
// tensor memory itself.
//
// Conventions, for every op:
// - Element type T is float (training, eval) or double (the CPU gradient-check path).
// - All tensors are dense, row-major and contiguous; shapes are given as explicit counts.
//   A "row" is the last dimension: `n` rows of `dim` values. Token ids are int32.
// - Pointers are device pointers of this backend (host memory on the CPU backend).
//   Scalar parameters (bigram.scale, lane_merge, ...) are passed as device pointers too.
// - Gradients: parameter gradients ACCUMULATE (+=), so a block used twice by depth
//   recurrence sums both uses; activation gradients are WRITTEN (=) by the op that
//   computes them; an op that says "accumulate" for an activation gradient adds into it
//   (the residual stream's gradient accumulates along every path that reads the stream).
// - Outputs never alias inputs unless an op says so.
// - Ops are deterministic: the same inputs, on the same backend and thread count, give
//   bit-identical outputs.
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "backend/memory.hpp"
#include "backend/op_profile.hpp"

namespace pgolf::backend {

// Device memory and transfers, independent of the element type.
class Device {
 public:
  virtual ~Device() = default;
  virtual std::string name() const = 0;
  virtual void* allocate(std::size_t bytes) = 0;  // zero-filled
  virtual void release(void* p) = 0;
  virtual void to_device(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void to_host(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, std::size_t bytes) = 0;  // device to device
  virtual void zero(void* p, std::size_t bytes) = 0;
  virtual void synchronize() = 0;
  // What new allocations can use now (backend/memory.hpp), for the memory plan of a command.
  virtual MemoryInfo memory_info() = 0;
  // The most bytes held at once through allocate() (and the backend's own workspaces) so far.
  virtual std::uint64_t peak_bytes() const = 0;
  // What stalls an asynchronous device, counted since construction: host synchronisations
  // (copies between host and device, synchronize()) and device allocation calls (allocations
  // and releases, which synchronise too). The fast GPU path drives both to 0 per training step
  // (issue 14); pgolf bench prints them. Empty on a backend with nothing to stall (the CPU's).
  struct StallCounts {
    std::uint64_t host_syncs = 0;
    std::uint64_t allocation_calls = 0;
    // Times stage_to_device waited for a staging buffer's previous copy (the host running
    // ahead of the device; the device's queue does not drain).
    std::uint64_t staging_waits = 0;
  };
  virtual std::optional<StallCounts> stall_counts() const { return std::nullopt; }
  // Copies host memory to the device without making the host wait: `src` may be reused as soon
  // as the call returns (the CUDA backend goes through pinned staging buffers and an event per
  // buffer; a buffer still in flight when its turn comes again is waited for, which is
  // backpressure on a host running ahead, not a drain of the device). The copy is ordered with
  // the ops issued before and after it.
  virtual void stage_to_device(void* dst, const void* src, std::size_t bytes) { to_device(dst, src, bytes); }
  // The largest scratch a caller's ops will need, reserved when the caller is built (a model,
  // an optimizer), so that no op allocates while a training step runs (issue 14). Each field
  // is the largest shape of the ops that use it; reservations only grow a backend's scratch.
  struct Reservation {
    std::size_t staging_bytes = 0;        // the largest stage_to_device copy
    std::size_t attention_kv_values = 0;  // batch * seq * kv_heads * hd of attention_backward
    std::size_t loss_rows = 0;            // n of softcap_ce_forward and softcap_ce_fused
    // What reserving both holds (scratch is shared, not summed): the larger of each field.
    Reservation merged(const Reservation& o) const {
      return {staging_bytes > o.staging_bytes ? staging_bytes : o.staging_bytes,
              attention_kv_values > o.attention_kv_values ? attention_kv_values : o.attention_kv_values,
              loss_rows > o.loss_rows ? loss_rows : o.loss_rows};
    }
  };
  virtual void reserve(const Reservation&) {}
  // The device bytes reserve() holds for a reservation (0 on the CPU, which has none). Callers
  // that share a backend count the merged reservation once.
  virtual std::uint64_t reserved_bytes(const Reservation&) const { return 0; }
  // Per-op timing (backend/op_profile.hpp) for benchmarks: start_op_timing() returns false
  // when the backend cannot time its ops; stop_op_timing() returns what ran since the start.
  virtual bool start_op_timing() { return false; }
  virtual OpProfile stop_op_timing() { return {}; }
};

// The device-side state of a training step (capture-safe steps, docs/training.md): a few
// float64 values that reductions write and later ops read, so nothing goes back to the host
// inside a step. `state` arguments point at kStepStateValues doubles.
inline constexpr int kStepSkip = 0;        // 1 once a step's loss or gradient norm was non-finite (sticky)
inline constexpr int kStepClipCoef = 1;    // this step's clipping coefficient (1: no clipping)
inline constexpr int kStepStateValues = 2;

// AdamW's per-step constants {step size, decoupled decay, sqrt of the second bias correction},
// computed on the host in float64 and rounded to T (torch's order); adamw_step reads them
// from the device.
template <class T>
std::array<T, 3> adamw_constants(double lr, double beta1, double beta2, double weight_decay, std::int64_t t) {
  const T bias1 = static_cast<T>(1.0 - std::pow(static_cast<double>(static_cast<T>(beta1)), static_cast<double>(t)));
  const T bias2_sqrt =
      static_cast<T>(std::sqrt(1.0 - std::pow(static_cast<double>(static_cast<T>(beta2)), static_cast<double>(t))));
  const T lr_t = static_cast<T>(lr);
  return {lr_t / bias1, T(1) - lr_t * static_cast<T>(weight_decay), bias2_sqrt};
}

// The fused ops (Ops::supports): each replaces a fixed composition of unfused ops.
enum class FusedOp { softcap_ce, qk_prep, count };
const char* fused_op_name(FusedOp op);        // "softcap_ce"
const char* fused_op_reference(FusedOp op);   // "softcap_ce_forward + softcap_ce_backward"
[[noreturn]] void unsupported_fused_op(FusedOp op, const std::string& backend);

template <class T>
class Ops : public virtual Device {
 public:
  // ----- elementwise and reductions ---------------------------------------------------------
  // y = x (n values)
  virtual void copy_values(T* y, const T* x, std::size_t n) = 0;
  // y += x (n values)
  virtual void add_into(T* y, const T* x, std::size_t n) = 0;

  // ----- embeddings ------------------------------------------------------------------------
  // out[i, :] = table[ids[i], :]                         (n rows of dim)
  virtual void embedding_forward(T* out, const std::int32_t* ids, const T* table, int n, int dim) = 0;
  // dtable[ids[i], :] += dout[i, :]
  virtual void embedding_backward(T* dtable, const std::int32_t* ids, const T* dout, int n, int dim) = 0;
  // BigramHash ids for B sequences of T tokens (docs/model.md step 1).
  virtual void bigram_hash(std::int32_t* out, const std::int32_t* ids, int batch, int seq, int buckets) = 0;

  // ----- matrix products ---------------------------------------------------------------------
  // y[n, out] (= or +=) x[n, in] @ w[out, in]^T
  virtual void matmul_forward(T* y, const T* x, const T* w, int n, int in, int out, bool accumulate) = 0;
  // dx[n, in] (= or += per accumulate_dx; skipped when dx is null) = dy @ w ; dw[out, in] += dy^T @ x
  virtual void matmul_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, int n, int in, int out,
                               bool accumulate_dx) = 0;

  // ----- normalisation -----------------------------------------------------------------------
  // y = multiplier * x / sqrt(mean(x^2) + eps) per row; rstd[i] = 1/sqrt(mean(x_i^2) + eps).
  virtual void rmsnorm_forward(T* y, T* rstd, const T* x, int n, int dim, T multiplier) = 0;
  // dx (= or +=) gradient of the above given dy.
  virtual void rmsnorm_backward(T* dx, const T* dy, const T* x, const T* rstd, int n, int dim, T multiplier,
                                bool accumulate) = 0;

  // ----- scaled additions ------------------------------------------------------------------------
  // y += x * s1 * s2 (s1, s2 device scalars; s2 may be null = 1)      (n values)
  virtual void add_scaled_forward(T* y, const T* x, const T* s1, const T* s2, std::size_t n) = 0;
  // dx (= or +=) dy * s1 * s2 (skipped when dx is null); ds1 += sum(dy * x) * s2; ds2 += sum(dy * x) * s1
  virtual void add_scaled_backward(T* dx, T* ds1, T* ds2, const T* dy, const T* x, const T* s1, const T* s2,
                                   std::size_t n, bool accumulate_dx) = 0;
  // out = base + scale[c] * y per column c                            (n rows of dim)
  virtual void residual_scale_forward(T* out, const T* base, const T* y, const T* scale, int n, int dim) = 0;
  // dy = dout * scale ; dscale[c] += sum_i dout[i, c] * y[i, c]      (the base gradient is dout itself)
  virtual void residual_scale_backward(T* dy, T* dscale, const T* dout, const T* y, const T* scale, int n, int dim) = 0;
  // xin = mix[0, c] * x + mix[1, c] * x0                              (mix is 2 x dim)
  virtual void resid_mix_forward(T* xin, const T* x, const T* x0, const T* mix, int n, int dim) = 0;
  // dx = dxin * mix[0] ; dx0 += dxin * mix[1] ; dmix[0] += sum dxin * x ; dmix[1] += sum dxin * x0
  virtual void resid_mix_backward(T* dx, T* dx0, T* dmix, const T* dxin, const T* x, const T* x0, const T* mix,
                                  int n, int dim) = 0;

  // ----- token mixing ------------------------------------------------------------------------
  // SmearGate over B sequences of T rows: y[t] = (1-g) x[t] + g x[t-1], g = sigmoid(gate), x[-1] = 0
  virtual void smear_forward(T* y, const T* x, const T* gate, int batch, int seq, int dim) = 0;
  // dx = gradient wrt x ; dgate += gradient wrt gate
  virtual void smear_backward(T* dx, T* dgate, const T* dy, const T* x, const T* gate, int batch, int seq, int dim) = 0;

  // ----- U-Net skips and lanes -------------------------------------------------------------------
  // In place: x = x + w * s, or with a gate: x = sigmoid(g) * x + (1 - sigmoid(g)) * (w * s).
  // s must not alias x. The caller keeps a copy of x before the update for the backward.
  virtual void skip_forward(T* x, const T* s, const T* w, const T* gate, int n, int dim) = 0;
  // dx: in = gradient wrt the updated x, out = gradient wrt x before the update (in place).
  // ds (accumulate) ; dw += ; dgate += (gate may be null).
  virtual void skip_backward(T* dx, T* ds, T* dw, T* dgate, const T* x_before, const T* s, const T* w,
                             const T* gate, int n, int dim) = 0;
  // out = m * a + (1 - m) * b with a device scalar m
  virtual void lane_merge_forward(T* out, const T* a, const T* b, const T* m, std::size_t n) = 0;
  // da = m * dout ; db = (1 - m) * dout ; dm += sum dout * (a - b)
  virtual void lane_merge_backward(T* da, T* db, T* dm, const T* dout, const T* a, const T* b, const T* m,
                                   std::size_t n) = 0;

  // ----- attention -----------------------------------------------------------------------------
  // Partial RoPE in place on `rows` rows of `heads` x hd; row r is position t = r % seq.
  // cos_table and sin_table hold cos/sin(t * inv_freq[j]) at [t * rope_dims/2 + j].
  // `inverse` applies the transposed rotation, which is the backward of the forward.
  virtual void rope_apply(T* x, const T* cos_table, const T* sin_table, int rows, int seq, int heads, int hd,
                          int rope_dims, bool inverse) = 0;
  // y = x * gain[h] per head (rows x heads x hd)
  virtual void head_gain_forward(T* y, const T* x, const T* gain, int rows, int heads, int hd) = 0;
  // dx = dy * gain[h] ; dgain[h] += sum dy * x
  virtual void head_gain_backward(T* dx, T* dgain, const T* dy, const T* x, const T* gain, int rows, int heads,
                                  int hd) = 0;
  // Causal GQA attention over B sequences of T: q (B*T x H x hd), k and v (B*T x Hkv x hd),
  // y (B*T x H x hd), lse (B x H x T) = log-sum-exp of each softmax row (saved for backward).
  virtual void attention_forward(T* y, T* lse, const T* q, const T* k, const T* v, int batch, int seq, int heads,
                                 int kv_heads, int hd) = 0;
  // dq = ; dk = ; dv (= or += per accumulate_dv) gradients given dy, the forward inputs, y and lse.
  virtual void attention_backward(T* dq, T* dk, T* dv, const T* dy, const T* q, const T* k, const T* v, const T* y,
                                  const T* lse, int batch, int seq, int heads, int kv_heads, int hd,
                                  bool accumulate_dv) = 0;
  // XSA: out_h = y_h - (y_h . vhat_g) vhat_g, vhat = v / max(|v|, 1e-12) per row and KV head
  virtual void xsa_forward(T* out, const T* y, const T* v, int rows, int heads, int kv_heads, int hd) = 0;
  // dy = ; dv += (accumulate)
  virtual void xsa_backward(T* dy, T* dv, const T* dout, const T* y, const T* v, int rows, int heads, int kv_heads,
                            int hd) = 0;

  // ----- MLP ----------------------------------------------------------------------------------
  // z = leaky_relu(h, slope)^2
  virtual void leaky_relu_sq_forward(T* z, const T* h, T slope, std::size_t n) = 0;
  // dh = dz * d/dh
  virtual void leaky_relu_sq_backward(T* dh, const T* dz, const T* h, T slope, std::size_t n) = 0;

  // ----- head and loss ----------------------------------------------------------------------
  // In place on z (n x vocab): logits = cap * tanh(z / cap). Then per row the NLL of the
  // target: nll[i] = logsumexp(logits_i) - logits_i[target_i] (nll may be null), and
  // *loss_sum (device scalar) = sum of nll, summed in float64 in a fixed order and then
  // rounded to T.
  virtual void softcap_ce_forward(T* logits, T* nll, T* loss_sum, const std::int32_t* targets, int n, int vocab,
                                  T cap) = 0;
  // dz (n x vocab) = d(scale * sum nll)/dz from the softcapped logits (scale is 1/n for a mean).
  // dz may be logits itself: the gradient then replaces the logits (one n x vocab buffer).
  virtual void softcap_ce_backward(T* dz, const T* logits, const std::int32_t* targets, int n, int vocab, T cap,
                                   T scale) = 0;

  // ----- fused ops ---------------------------------------------------------------------------
  // Coarser ops a backend offers where fusing pays. Each is defined as a composition of the ops
  // above, which is its reference; a backend that offers it says so in supports(), and the
  // model takes the fused path only then (pgolf bench prints the path of each family).
  // Calling a fused op a backend does not offer is Error(internal).
  virtual bool supports(FusedOp op) const {
    (void)op;
    return false;
  }
  // FusedOp::softcap_ce: softcap_ce_forward(z, nll, loss_sum, ...) then softcap_ce_backward(z,
  // z, ..., scale) in one pass over each row: z ends holding dz, nll and *loss_sum as the forward
  // leaves them (the same values, bit for bit, on a backend that offers both).
  virtual void softcap_ce_fused(T* z, T* nll, T* loss_sum, const std::int32_t* targets, int n, int vocab, T cap,
                                T scale) {
    (void)z, (void)nll, (void)loss_sum, (void)targets, (void)n, (void)vocab, (void)cap, (void)scale;
    unsupported_fused_op(FusedOp::softcap_ce, name());
  }
  // FusedOp::qk_prep, attention's query/key preparation over rows x heads x hd:
  // rmsnorm_forward(normed, rstd, x, rows * heads, hd, 1), rope_apply(normed, ..., false), and
  // with a gain head_gain_forward(out, normed, gain) (out is untouched without one).
  virtual void qk_prep_forward(T* normed, T* out, T* rstd, const T* x, const T* gain, const T* cos_table,
                               const T* sin_table, int rows, int seq, int heads, int hd, int rope_dims) {
    (void)normed, (void)out, (void)rstd, (void)x, (void)gain, (void)cos_table, (void)sin_table, (void)rows, (void)seq,
        (void)heads, (void)hd, (void)rope_dims;
    unsupported_fused_op(FusedOp::qk_prep, name());
  }
  // Its backward from dout (the gradient of out, or of normed without a gain): with a gain
  // head_gain_backward(d, dgain, dout, normed, gain), then rope_apply(d, ..., true) and
  // rmsnorm_backward(dx, d, x, rstd, rows * heads, hd, 1, false). dx (written) may be dout;
  // otherwise dout's contents afterwards are unspecified (the composition rotates it in place).
  virtual void qk_prep_backward(T* dx, T* dgain, const T* dout, const T* x, const T* normed, const T* rstd,
                                const T* gain, const T* cos_table, const T* sin_table, int rows, int seq, int heads,
                                int hd, int rope_dims) {
    (void)dx, (void)dgain, (void)dout, (void)x, (void)normed, (void)rstd, (void)gain, (void)cos_table, (void)sin_table,
        (void)rows, (void)seq, (void)heads, (void)hd, (void)rope_dims;
    unsupported_fused_op(FusedOp::qk_prep, name());
  }

  // ----- test-time delta (SLOT, docs/eval.md) ----------------------------------------------------
  // y[i, :] = x[i, :] + rows[i / group_rows, :]     (n = groups * group_rows rows of dim)
  virtual void add_group_rows(T* y, const T* x, const T* rows, int groups, int group_rows, int dim) = 0;
  // out[g, :] = sum of x[i, :] over the rows i of group g (written; float64 sums in row order)
  virtual void sum_group_rows(T* out, const T* x, int groups, int group_rows, int dim) = 0;
  // x[i, :] *= w[i]   (n rows of dim; w a device vector of n row weights). A row whose weight
  // is 0 becomes exactly 0 even if it held Inf or NaN (a masked row must not leak into a sum).
  virtual void scale_rows(T* x, const T* w, int n, int dim) = 0;

  // ----- optimizers and training (docs/training.md) ---------------------------------------------
  // c[m, n] = alpha * op(a) @ op(b) + beta * c, op(x) = x or x^T; a is m x k after op, b k x n.
  virtual void gemm(T* c, const T* a, const T* b, int m, int n, int k, bool trans_a, bool trans_b, T alpha,
                    T beta) = 0;
  // y = a * y + b * x (n values)
  virtual void axpby(T* y, const T* x, T a, T b, std::size_t n) = 0;
  // x *= s (n values)
  virtual void scale_values(T* x, T s, std::size_t n) = 0;
  // sum of x^2 in float64, returned to the host (a fixed-order reduction; one host sync)
  virtual double sum_squares(const T* x, std::size_t n) = 0;
  // *out (a device double) = the same sum of squares, left on the device.
  virtual void sum_squares_to(double* out, const T* x, std::size_t n) = 0;
  // x *= T(1 / (sqrt(*sum_sq) + eps)) with *sum_sq a device double (Newton-Schulz's
  // normalisation by the Frobenius norm).
  virtual void scale_by_inverse_norm(T* x, std::size_t n, const double* sum_sq, double eps) = 0;
  // dst[c, r] = src[r, c]
  virtual void transpose(T* dst, const T* src, int rows, int cols) = 0;
  // Muon momentum: buf = mu * buf + g ; u = nesterov ? g + mu * buf : buf, with mu = *mu a
  // device value. Nothing changes when `skip` (a device double, may be null) is non-zero.
  virtual void muon_momentum(T* buf, T* u, const T* g, const T* mu, bool nesterov, std::size_t n,
                             const double* skip) = 0;
  // y = ab[0] * y + ab[1] * x with ab two device values (Muon's decayed update, EMA, SWA);
  // nothing changes when `skip` (may be null) is non-zero.
  virtual void axpby_step(T* y, const T* x, const T* ab, std::size_t n, const double* skip) = 0;
  // Each row of x (rows x cols) divided by max(its L2 norm, eps) (MuonEq-R).
  virtual void normalize_rows(T* x, int rows, int cols, T eps) = 0;
  // AdamW (torch semantics) on n values at step t >= 1.
  virtual void adamw_update(T* p, const T* g, T* m, T* v, std::size_t n, T lr, T beta1, T beta2, T eps, T weight_decay,
                            std::int64_t t) = 0;
  // The same AdamW with its per-step constants on the device (c = adamw_constants(...)); nothing
  // changes when `skip` (may be null) is non-zero.
  virtual void adamw_step(T* p, const T* g, T* m, T* v, std::size_t n, const T* c, T beta1, T beta2, T eps,
                          const double* skip) = 0;
  // *acc += double(*loss_sum) / divisor (a training step's mean loss over its micro-batches, on the device).
  virtual void accumulate_loss(double* acc, const T* loss_sum, double divisor) = 0;
  // The guard of a training step, from its summed loss and gradient sum of squares (device
  // doubles): state[kStepSkip] = 1 when either the loss or sqrt(sum_sq) is not finite (and
  // stays 1); state[kStepClipCoef] = min(1, max_norm / (sqrt(sum_sq) + 1e-6)) when max_norm > 0
  // and the norm is finite, else 1.
  virtual void step_guard(double* state, const double* loss, const double* sum_sq, double max_norm) = 0;
  // x *= T(state[kStepClipCoef]) when that is below 1 and state[kStepSkip] is 0.
  virtual void clip_scale(T* x, std::size_t n, const double* state) = 0;
  // SGD with momentum: buf = momentum * buf + g ; p -= lr * buf
  virtual void sgd_momentum_update(T* p, const T* g, T* buf, std::size_t n, T lr, T momentum) = 0;
  // Late-QAT fake quantisation per row: s = max(max|w_r| / 31, 1/31), q = clamp(round(w/s), -32, 31),
  // dst = q * s (round half to even).
  virtual void fake_quant_int6(T* dst, const T* src, int rows, int cols) = 0;
};

}  // namespace pgolf::backend
