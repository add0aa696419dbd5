#pragma once
// SLOT (SPEC 6.4, docs/eval.md "SLOT"): an additive float32 delta on the final hidden state,
// fitted per batch of windows by AdamW through the head alone (the transformer runs once),
// then used to score the windows. `causal` fits one delta per window on that window's
// already-scored context; `standard` and `causal_shared` share one delta across the batch
// and leak future targets (kept to reproduce the published numbers, labelled non-compliant).
#include <cstdint>
#include <span>

#include "backend/device_buffer.hpp"
#include "backend/ops.hpp"
#include "config/config.hpp"
#include "eval/windows.hpp"
#include "model/model.hpp"

namespace pgolf::eval {

// True for the variants that satisfy SPEC 7's C1-C4 (none and causal).
bool slot_compliant(config::SlotVariant variant);

// The rows a window's delta is fitted on (docs/eval.md item 4): [0, length - 1) for
// standard, the context [0, score_from) for causal_shared and causal.
int slot_fit_rows(config::SlotVariant variant, const Window& w);

class SlotHead {
 public:
  // Buffers for batches of up to max_windows windows of up to max_len positions.
  SlotHead(backend::Ops<float>& ops, const config::ModelConfig& model, const config::SlotConfig& slot, int max_windows,
           int max_len);
  // The bytes that constructor allocates (memory plans).
  static std::uint64_t planned_bytes(const config::ModelConfig& model, int max_windows, int max_len);

  // `windows`: one batch of windows of equal length `len`, whose inputs the model has just
  // run through forward_hidden(). `targets` (host, windows.size() * len) are their targets.
  // Fits the delta and writes every position's NLL at the fitted delta into `nll` (host).
  void fit_and_score(const model::Model<float>& model, std::span<const Window> windows, int len,
                     const std::int32_t* targets, float* nll);

 private:
  // z = H + delta; h = rms(z) or z; logits and NLL of every row (into nll_).
  void head_forward(const float* hidden, const float* w_head, int groups, int group_rows);
  // delta's gradient of sum_r weight_r * nll_r into ddelta_.
  void head_backward(const float* w_head, int groups, int group_rows);
  model::HeadShape<float> head_shape(int rows) const;  // the model's head, normed before_norm only
  model::HeadActs<float> head_acts();

  backend::Ops<float>& ops_;
  config::SlotConfig slot_;
  int dim_, vocab_;
  float softcap_;
  int max_windows_, max_len_;
  backend::DeviceBuffer<float> z_, h_, rstd_, logits_, dh_, dz_, nll_, loss_sum_, row_weight_;
  backend::DeviceBuffer<float> delta_, ddelta_, m_, v_;
  backend::DeviceBuffer<std::int32_t> targets_;
};

}  // namespace pgolf::eval
