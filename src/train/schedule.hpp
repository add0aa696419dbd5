#pragma once
// The learning-rate scale of SPEC 4.3 / docs/training.md in its three forms.
#include <cstdint>

#include "config/config.hpp"

namespace pgolf::train {

// elapsed_s: training time before this step; mean_step_s: mean step time so far.
double lr_scale(const config::TrainConfig& t, std::int64_t step, double elapsed_s, double mean_step_s);

}  // namespace pgolf::train
