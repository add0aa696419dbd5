#include "optim/optimizer.hpp"

#include <algorithm>
#include <cmath>

#include "common/error.hpp"

namespace pgolf::optim {

template <class T>
void newton_schulz(backend::Ops<T>& ops, T* x, int rows, int cols, const std::vector<double>& coefficients, int steps,
                   T* scratch, double* norm_scratch) {
  const std::size_t n = static_cast<std::size_t>(rows) * cols;
  ops.sum_squares_to(norm_scratch, x, n);
  ops.scale_by_inverse_norm(x, n, norm_scratch, 1e-7);
  // Iterate on the wide orientation (r <= c) so the Gram matrices are r x r.
  const bool tall = rows > cols;
  const int r = tall ? cols : rows, c = tall ? rows : cols;
  const auto k2 = static_cast<std::size_t>(r) * r;
  T* a = scratch;       // A = X X^T (r x r)
  T* aa = a + k2;        // A A, then B (r x r)
  T* xw = aa + k2;       // the working matrix X (r x c)
  T* bx = xw + n;        // B X (r x c)
  if (tall) {
    ops.transpose(xw, x, rows, cols);
  } else {
    ops.copy_values(xw, x, n);
  }
  const T ca = static_cast<T>(coefficients[0]), cb = static_cast<T>(coefficients[1]), cc = static_cast<T>(coefficients[2]);
  for (int i = 0; i < steps; ++i) {
    ops.gemm(a, xw, xw, r, r, c, false, true, T(1), T(0));   // A = X X^T
    ops.gemm(aa, a, a, r, r, r, false, false, T(1), T(0));   // A A
    ops.axpby(aa, a, cc, cb, k2);                             // B = b A + c A A
    ops.gemm(bx, aa, xw, r, c, r, false, false, T(1), T(0)); // B X
    ops.axpby(xw, bx, ca, T(1), n);                           // X = a X + B X
  }
  if (tall) {
    ops.transpose(x, xw, cols, rows);
  } else {
    ops.copy_values(x, xw, n);
  }
}

double muon_momentum(const config::MuonConfig& m, std::int64_t step) {
  const double f = m.momentum_warmup_steps > 0
                       ? std::min(static_cast<double>(step) / static_cast<double>(m.momentum_warmup_steps), 1.0)
                       : 1.0;
  return (1.0 - f) * m.momentum_warmup_start + f * m.momentum;
}

template <class T>
void muon_update(backend::Ops<T>& ops, T* w, const T* g, T* buf, T* u, int rows, int cols, const T* c,
                 const config::MuonConfig& m, T* ns_scratch, double* norm_scratch, const double* skip) {
  const std::size_t n = static_cast<std::size_t>(rows) * cols;
  ops.muon_momentum(buf, u, g, c, m.nesterov, n, skip);  // c[0]: the momentum
  if (m.row_normalize) ops.normalize_rows(u, rows, cols, static_cast<T>(1e-7));
  newton_schulz(ops, u, rows, cols, m.ns_coefficients, static_cast<int>(m.ns_steps), ns_scratch, norm_scratch);
  ops.axpby_step(w, u, c + 1, n, skip);  // w = (1 - lr wd) w - lr scale u
}

template <class T>
Optimizer<T>::Optimizer(const model::ParamTable& table, const config::OptimConfig& optim, bool tied_embeddings,
                        backend::Ops<T>& ops)
    : table_(table), cfg_(optim), tied_(tied_embeddings), ops_(ops) {
  const Sizes s = sizes(table);
  muon_buf_ = backend::DeviceBuffer<T>(ops_, s.matrix);
  adam_m_ = backend::DeviceBuffer<T>(ops_, s.adam);
  adam_v_ = backend::DeviceBuffer<T>(ops_, s.adam);
  u_ = backend::DeviceBuffer<T>(ops_, s.update);
  ns_scratch_ = backend::DeviceBuffer<T>(ops_, s.scratch);
  ns_norm_ = backend::DeviceBuffer<double>(ops_, 1);
  constants_ = backend::DeviceBuffer<T>(ops_, kConstants * table.specs().size());
  constants_host_.assign(constants_.size(), T(0));
  backend::Device::Reservation r;
  r.staging_bytes = constants_host_.size() * sizeof(T);  // stage_constants' one copy per step
  ops_.reserve(r);
  std::size_t n_matrix = 0, n_adam = 0;
  for (const auto& p : table.specs()) {
    std::size_t& next = p.group == model::ParamGroup::matrix ? n_matrix : n_adam;
    slot_.push_back(next);
    next += p.numel();
  }
}

template <class T>
typename Optimizer<T>::Sizes Optimizer<T>::sizes(const model::ParamTable& table) {
  Sizes s;
  std::size_t max_matrix = 0, max_scratch = 0;
  for (const auto& p : table.specs()) {
    if (p.group == model::ParamGroup::matrix) {
      s.matrix += p.numel();
      max_matrix = std::max(max_matrix, p.numel());
      max_scratch = std::max(max_scratch, newton_schulz_scratch(static_cast<int>(p.shape[0]), static_cast<int>(p.shape[1])));
    } else {
      s.adam += p.numel();
    }
  }
  s.update = std::max<std::size_t>(max_matrix, 1);
  s.scratch = std::max<std::size_t>(max_scratch, 1);
  return s;
}

template <class T>
std::uint64_t Optimizer<T>::planned_bytes(const model::ParamTable& table) {
  const Sizes s = sizes(table);
  return (s.matrix + 2 * s.adam + s.update + s.scratch + kConstants * table.specs().size()) * sizeof(T) + sizeof(double);
}

template <class T>
const config::AdamConfig& Optimizer<T>::adam_for(const model::ParamSpec& p) const {
  switch (p.group) {
    case model::ParamGroup::embed: return cfg_.embed;
    case model::ParamGroup::head: return cfg_.head;
    default: return cfg_.scalar;
  }
}

template <class T>
double Optimizer<T>::base_lr(const model::ParamSpec& p) const {
  if (p.group == model::ParamGroup::matrix) return cfg_.muon.lr;
  if (p.group == model::ParamGroup::embed && !tied_) return cfg_.untied_embed_lr;
  return adam_for(p).lr;
}

template <class T>
void Optimizer<T>::step(T* params, const T* grads, std::int64_t step, double lr_scale) {
  stage_constants(step, lr_scale);
  apply(params, grads, nullptr);
}

template <class T>
void Optimizer<T>::stage_constants(std::int64_t step, double lr_scale) {
  const double mu = muon_momentum(cfg_.muon, step);
  const auto& specs = table_.specs();
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const model::ParamSpec& p = specs[i];
    const double lr = base_lr(p) * lr_scale;
    const std::array<T, kConstants> c =
        p.group == model::ParamGroup::matrix
            ? muon_constants<T>(lr, mu, cfg_.muon, static_cast<int>(p.shape[0]), static_cast<int>(p.shape[1]))
            : backend::adamw_constants<T>(lr, adam_for(p).beta1, adam_for(p).beta2, adam_for(p).weight_decay, step + 1);
    std::copy(c.begin(), c.end(), constants_host_.begin() + static_cast<std::ptrdiff_t>(kConstants * i));
  }
  ops_.stage_to_device(constants_.get(), constants_host_.data(), constants_host_.size() * sizeof(T));
}

template <class T>
void Optimizer<T>::apply(T* params, const T* grads, const double* skip) {
  const auto& specs = table_.specs();
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const model::ParamSpec& p = specs[i];
    T* w = params + p.offset;
    const T* g = grads + p.offset;
    const T* c = constants_.get() + kConstants * i;
    if (p.group == model::ParamGroup::matrix) {
      muon_update(ops_, w, g, muon_buf_.get() + slot_[i], u_.get(), static_cast<int>(p.shape[0]),
                  static_cast<int>(p.shape[1]), c, cfg_.muon, ns_scratch_.get(), ns_norm_.get(), skip);
    } else {
      const config::AdamConfig& a = adam_for(p);
      ops_.adamw_step(w, g, adam_m_.get() + slot_[i], adam_v_.get() + slot_[i], p.numel(), c, static_cast<T>(a.beta1),
                      static_cast<T>(a.beta2), static_cast<T>(a.eps), skip);
    }
  }
}

template void newton_schulz<float>(backend::Ops<float>&, float*, int, int, const std::vector<double>&, int, float*,
                                   double*);
template void newton_schulz<double>(backend::Ops<double>&, double*, int, int, const std::vector<double>&, int, double*,
                                    double*);
template void muon_update<float>(backend::Ops<float>&, float*, const float*, float*, float*, int, int, const float*,
                                 const config::MuonConfig&, float*, double*, const double*);
template void muon_update<double>(backend::Ops<double>&, double*, const double*, double*, double*, int, int,
                                  const double*, const config::MuonConfig&, double*, double*, const double*);
template class Optimizer<float>;
template class Optimizer<double>;

}  // namespace pgolf::optim
