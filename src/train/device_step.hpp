#pragma once
// The device side of a training step (docs/training.md, "capture-safe steps"), shared by the
// trainer and `pgolf bench`: each step's summed loss and gradient sum of squares land in a
// slot of a device ring, a guard op turns them into the clipping coefficient and a sticky skip
// flag (set by the first non-finite step; every later update kernel then leaves the weights and
// optimizer state alone), and the host reads the ring only when it logs. Nothing in a step
// waits for the device, so a step issues the same launches with the same arguments every time.
#include <cstddef>
#include <vector>

#include "backend/device_buffer.hpp"
#include "backend/ops.hpp"

namespace pgolf::train {

class DeviceStep {
 public:
  // Room for `ring_steps` steps between two reads.
  DeviceStep(backend::Ops<float>& ops, std::size_t ring_steps);
  std::size_t capacity() const { return ring_steps_; }

  // Clears slot `slot` (< capacity()) for a new step.
  void begin(std::size_t slot);
  // Adds a micro-batch's mean loss (its summed NLL over `tokens` targets) to the slot.
  void add_loss(std::size_t slot, const float* loss_sum, double tokens);
  // Measures the gradients' norm into the slot, sets the guard (skip, clipping coefficient) and
  // clips them in place (max_norm <= 0: no clipping).
  void guard_and_clip(std::size_t slot, float* grads, std::size_t n, double max_norm);
  // The skip flag for the update ops (a device double).
  const double* skip() const { return state_.get() + backend::kStepSkip; }

  // What a step left in its slot, read back for the first `count` slots in one copy.
  struct Result {
    double loss_sum = 0.0;  // the sum of the micro-batches' mean losses
    double sum_squares = 0.0;  // the gradients' squared norm before clipping
  };
  std::vector<Result> read(std::size_t count);
  // The bytes the constructor allocates, for memory plans.
  static std::size_t planned_bytes(std::size_t ring_steps) {
    return (backend::kStepStateValues + 2 * ring_steps) * sizeof(double);
  }

 private:
  double* slot_values(std::size_t slot);
  backend::Ops<float>& ops_;
  std::size_t ring_steps_;
  // kStepStateValues guard values, then per slot {loss sum, gradient sum of squares}.
  backend::DeviceBuffer<double> state_;
};

}  // namespace pgolf::train
