#include "eval/slot.hpp"

#include <vector>

#include "common/error.hpp"

namespace pgolf::eval {

bool slot_compliant(config::SlotVariant variant) {
  return variant == config::SlotVariant::none || variant == config::SlotVariant::causal;
}

int slot_fit_rows(config::SlotVariant variant, const Window& w) {
  switch (variant) {
    case config::SlotVariant::standard:
      return w.length - 1;  // every position but the last, scored ones included: the leak
    case config::SlotVariant::causal_shared:
    case config::SlotVariant::causal:
      return w.score_from;  // the context, scored by earlier windows
    case config::SlotVariant::none:
      break;
  }
  return 0;
}

SlotHead::SlotHead(backend::Ops<float>& ops, const config::ModelConfig& model, const config::SlotConfig& slot,
                   int max_windows, int max_len)
    : ops_(ops),
      slot_(slot),
      dim_(static_cast<int>(model.model_dim)),
      vocab_(static_cast<int>(model.vocab_size)),
      softcap_(static_cast<float>(model.logit_softcap)),
      max_windows_(max_windows),
      max_len_(max_len) {
  if (slot.variant == config::SlotVariant::none) fail(ErrorKind::internal, "SlotHead built for eval.slot.variant = none");
  const auto n = static_cast<std::size_t>(max_windows) * static_cast<std::size_t>(max_len);
  const auto nd = n * static_cast<std::size_t>(dim_), nv = n * static_cast<std::size_t>(vocab_);
  const auto wd = static_cast<std::size_t>(max_windows) * static_cast<std::size_t>(dim_);
  z_ = {ops, nd};
  h_ = {ops, nd};
  rstd_ = {ops, n};
  logits_ = {ops, nv};
  dh_ = {ops, nd};
  dz_ = {ops, nd};
  nll_ = {ops, n};
  loss_sum_ = {ops, 1};
  row_weight_ = {ops, n};
  delta_ = {ops, wd};
  ddelta_ = {ops, wd};
  m_ = {ops, wd};
  v_ = {ops, wd};
  targets_ = {ops, n};
}

std::uint64_t SlotHead::planned_bytes(const config::ModelConfig& model, int max_windows, int max_len) {
  const auto n = static_cast<std::uint64_t>(max_windows) * static_cast<std::uint64_t>(max_len);
  const auto nd = n * static_cast<std::uint64_t>(model.model_dim), nv = n * static_cast<std::uint64_t>(model.vocab_size);
  const auto wd = static_cast<std::uint64_t>(max_windows) * static_cast<std::uint64_t>(model.model_dim);
  // z, h, dh, dz; logits (their gradient replaces them); rstd, nll, row_weight; loss_sum; delta,
  // ddelta, m, v; targets.
  return (4 * nd + nv + 3 * n + 1 + 4 * wd) * sizeof(float) + n * sizeof(std::int32_t);
}

model::HeadShape<float> SlotHead::head_shape(int rows) const {
  return {rows, dim_, vocab_, slot_.placement == config::SlotPlacement::before_norm, softcap_};
}

model::HeadActs<float> SlotHead::head_acts() {
  return {h_.get(), rstd_.get(), logits_.get(), nll_.get(), loss_sum_.get()};
}

void SlotHead::head_forward(const float* hidden, const float* w_head, int groups, int group_rows) {
  const int n = groups * group_rows;
  ops_.add_group_rows(z_.get(), hidden, delta_.get(), groups, group_rows, dim_);
  model::head_forward(ops_, head_shape(n), z_.get(), w_head, targets_.get(), head_acts());
}

void SlotHead::head_backward(const float* w_head, int groups, int group_rows) {
  const int n = groups * group_rows;
  // The row weights (0 outside the fit mask, 1/count inside) scale dh rather than the
  // vocab-wide dlogits: the same gradient (model/head.hpp).
  model::head_backward(ops_, head_shape(n), dz_.get(), static_cast<float*>(nullptr), dh_.get(), z_.get(), w_head,
                       targets_.get(), head_acts(), 1.0f, row_weight_.get());
  ops_.sum_group_rows(ddelta_.get(), dz_.get(), groups, group_rows, dim_);
}

void SlotHead::fit_and_score(const model::Model<float>& model, std::span<const Window> windows, int len,
                             const std::int32_t* targets, float* nll) {
  const int b = static_cast<int>(windows.size());
  if (b < 1 || b > max_windows_ || len < 1 || len > max_len_)
    fail(ErrorKind::internal, "SLOT: a batch of ", b, " x ", len, " exceeds ", max_windows_, " x ", max_len_);
  const int n = b * len;
  const bool per_window = slot_.variant == config::SlotVariant::causal;
  // A per-window delta is one group of `len` rows per window; a shared one a single group.
  const int groups = per_window ? b : 1, group_rows = per_window ? len : n;

  // The fit mask as row weights: each window's mean (causal) or one mean over the batch.
  std::vector<float> weight(static_cast<std::size_t>(n), 0.0f);
  std::int64_t total_rows = 0;
  for (const Window& w : windows) total_rows += slot_fit_rows(slot_.variant, w);
  for (int i = 0; i < b; ++i) {
    const int rows = slot_fit_rows(slot_.variant, windows[static_cast<std::size_t>(i)]);
    if (rows == 0) continue;
    const float wt = per_window ? 1.0f / static_cast<float>(rows) : static_cast<float>(1.0 / static_cast<double>(total_rows));
    for (int p = 0; p < rows; ++p) weight[static_cast<std::size_t>(i) * len + p] = wt;
  }
  ops_.to_device(row_weight_.get(), weight.data(), weight.size() * sizeof(float));
  ops_.to_device(targets_.get(), targets, static_cast<std::size_t>(n) * sizeof(std::int32_t));
  const std::size_t delta_values = static_cast<std::size_t>(groups) * dim_;
  ops_.zero(delta_.get(), delta_values * sizeof(float));
  ops_.zero(m_.get(), delta_values * sizeof(float));
  ops_.zero(v_.get(), delta_values * sizeof(float));

  const float* hidden = model.final_hidden(slot_.placement == config::SlotPlacement::before_norm);
  const float* w_head = model.head_weight();
  if (total_rows > 0) {
    for (std::int64_t t = 1; t <= slot_.steps; ++t) {
      head_forward(hidden, w_head, groups, group_rows);
      head_backward(w_head, groups, group_rows);
      ops_.adamw_update(delta_.get(), ddelta_.get(), m_.get(), v_.get(), delta_values, static_cast<float>(slot_.lr),
                        static_cast<float>(slot_.beta1), static_cast<float>(slot_.beta2), static_cast<float>(slot_.eps),
                        static_cast<float>(slot_.weight_decay), t);
    }
  }
  head_forward(hidden, w_head, groups, group_rows);
  ops_.to_host(nll, nll_.get(), static_cast<std::size_t>(n) * sizeof(float));
}

}  // namespace pgolf::eval
