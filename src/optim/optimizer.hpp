#pragma once
// The optimizers of SPEC 4.2 / docs/training.md over the parameter table: Muon (with
// MuonEq-R) for the matrix group, AdamW for the embed, scalar and head groups; plus the
// SGD-with-momentum step TTT uses. Control flow is written once here; the arithmetic is
// backend ops, so the same code drives the CPU and CUDA backends.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "backend/device_buffer.hpp"
#include "backend/ops.hpp"
#include "config/config.hpp"
#include "model/params.hpp"

namespace pgolf::optim {

// Newton-Schulz orthogonalisation in place on x (rows x cols): x = NS5(x / (|x|_F + 1e-7)).
// `scratch` must hold newton_schulz_scratch(rows, cols) values and `norm_scratch` one device
// double (the squared norm stays on the device).
template <class T>
void newton_schulz(backend::Ops<T>& ops, T* x, int rows, int cols, const std::vector<double>& coefficients, int steps,
                   T* scratch, double* norm_scratch);
inline std::size_t newton_schulz_scratch(int rows, int cols) {
  const auto k = static_cast<std::size_t>(std::min(rows, cols));
  return 2 * k * k + 2 * static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
}

// Gradient clipping by global norm (torch's clip_grad_norm_): with `norm` the gradients'
// L2 norm, scales them by the float32 rounding of min(1, max_norm / (norm + 1e-6)), skipped
// when that is 1 or max_norm <= 0 (clipping off).
template <class T>
void clip_to_norm(backend::Ops<T>& ops, T* grads, std::size_t n, double norm, double max_norm) {
  if (max_norm <= 0) return;
  const double coef = std::min(1.0, max_norm / (norm + 1e-6));
  if (coef < 1.0) ops.scale_values(grads, static_cast<T>(coef), n);
}

// Muon's momentum at step s (linear warmup).
double muon_momentum(const config::MuonConfig& m, std::int64_t step);

// A Muon update's per-step constants {momentum, weight factor 1 - lr * wd, update factor
// -lr * sqrt(max(1, rows / cols))}, rounded to T; muon_update reads them from the device.
template <class T>
std::array<T, 3> muon_constants(double lr, double momentum, const config::MuonConfig& m, int rows, int cols) {
  const double scale = std::sqrt(std::max(1.0, static_cast<double>(rows) / cols));
  return {static_cast<T>(momentum), static_cast<T>(1.0 - lr * m.weight_decay), static_cast<T>(-lr * scale)};
}

// One Muon update of a matrix: buf and w are updated in place; `u` is rows*cols scratch; `c`
// points at muon_constants(...) on the device. When *skip (device, may be null) is non-zero
// neither buf nor w changes.
template <class T>
void muon_update(backend::Ops<T>& ops, T* w, const T* g, T* buf, T* u, int rows, int cols, const T* c,
                 const config::MuonConfig& m, T* ns_scratch, double* norm_scratch, const double* skip);

// Optimizer state for every parameter of a table: Muon momentum for the matrix group, AdamW
// moments for the others, each packed in table order.
template <class T>
class Optimizer {
 public:
  Optimizer(const model::ParamTable& table, const config::OptimConfig& optim, bool tied_embeddings,
            backend::Ops<T>& ops);

  // The bytes the constructor allocates for `table` (state and scratch), for memory plans.
  static std::uint64_t planned_bytes(const model::ParamTable& table);

  // Applies step `step` (0-based) with every group's lr multiplied by lr_scale:
  // stage_constants() then apply().
  void step(T* params, const T* grads, std::int64_t step, double lr_scale);
  // Uploads step `step`'s per-parameter constants (learning rates, momentum, bias corrections)
  // in one staged copy: the only per-step values the update kernels take, so the update
  // issues the same launches every step (capture-safe).
  void stage_constants(std::int64_t step, double lr_scale);
  // The update with the constants staged last; nothing changes when *skip (a device double,
  // may be null) is non-zero.
  void apply(T* params, const T* grads, const double* skip);
  // The learning rate of a parameter before scaling: Muon's for matrices; for the embed group
  // optim.embed.lr with tied embeddings and optim.untied_embed_lr otherwise (#549 gives every
  // token-indexed table the same lr); optim.head.lr and optim.scalar.lr for the others.
  double base_lr(const model::ParamSpec& p) const;

  // Named state buffers (device pointers) for checkpoints.
  struct StateBuffer {
    std::string name;
    T* data;
    std::size_t count;
  };
  std::vector<StateBuffer> state() {
    return {{"muon_momentum", muon_buf_.get(), muon_buf_.size()},
            {"adam_m", adam_m_.get(), adam_m_.size()},
            {"adam_v", adam_v_.get(), adam_v_.size()}};
  }

 private:
  struct Sizes {
    std::size_t matrix = 0, adam = 0, update = 0, scratch = 0;  // values per buffer
  };
  static Sizes sizes(const model::ParamTable& table);
  const config::AdamConfig& adam_for(const model::ParamSpec& p) const;
  const model::ParamTable& table_;
  config::OptimConfig cfg_;
  bool tied_;
  backend::Ops<T>& ops_;
  static constexpr std::size_t kConstants = 3;  // per table entry (muon_constants or adamw_constants)
  std::vector<std::size_t> slot_;  // per table entry: its offset in muon_buf_ or in adam_m_/adam_v_
  backend::DeviceBuffer<T> muon_buf_, adam_m_, adam_v_, u_, ns_scratch_, constants_;
  backend::DeviceBuffer<double> ns_norm_;
  std::vector<T> constants_host_;
};

extern template class Optimizer<float>;
extern template class Optimizer<double>;

}  // namespace pgolf::optim
