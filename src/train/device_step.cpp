#include "train/device_step.hpp"

#include "common/error.hpp"

namespace pgolf::train {

DeviceStep::DeviceStep(backend::Ops<float>& ops, std::size_t ring_steps)
    : ops_(ops), ring_steps_(ring_steps), state_(ops, planned_bytes(ring_steps) / sizeof(double)) {
  if (ring_steps == 0) fail(ErrorKind::internal, "DeviceStep: a ring of 0 steps");
}

double* DeviceStep::slot_values(std::size_t slot) {
  if (slot >= ring_steps_) fail(ErrorKind::internal, "DeviceStep: slot ", slot, " of a ring of ", ring_steps_);
  return state_.get() + backend::kStepStateValues + 2 * slot;
}

void DeviceStep::begin(std::size_t slot) { ops_.zero(slot_values(slot), 2 * sizeof(double)); }

void DeviceStep::add_loss(std::size_t slot, const float* loss_sum, double tokens) {
  ops_.accumulate_loss(slot_values(slot), loss_sum, tokens);
}

void DeviceStep::guard_and_clip(std::size_t slot, float* grads, std::size_t n, double max_norm) {
  double* s = slot_values(slot);
  ops_.sum_squares_to(s + 1, grads, n);
  ops_.step_guard(state_.get(), s, s + 1, max_norm);
  ops_.clip_scale(grads, n, state_.get());
}

std::vector<DeviceStep::Result> DeviceStep::read(std::size_t count) {
  if (count > ring_steps_) fail(ErrorKind::internal, "DeviceStep: reading ", count, " slots of a ring of ", ring_steps_);
  std::vector<Result> out(count);
  if (count == 0) return out;
  std::vector<double> host(2 * count);
  ops_.to_host(host.data(), slot_values(0), host.size() * sizeof(double));
  for (std::size_t i = 0; i < count; ++i) out[i] = {host[2 * i], host[2 * i + 1]};
  return out;
}

}  // namespace pgolf::train
