#include "train/schedule.hpp"

#include <algorithm>

namespace pgolf::train {

double lr_scale(const config::TrainConfig& t, std::int64_t step, double elapsed_s, double mean_step_s) {
  const auto& w = t.warmdown;
  switch (w.form) {
    case config::WarmdownForm::iterations: {
      if (w.iters <= 0) return 1.0;
      const std::int64_t start = std::max<std::int64_t>(t.iterations - w.iters, 0);
      if (step < start || step >= t.iterations) return 1.0;
      return std::max(static_cast<double>(t.iterations - step) / static_cast<double>(std::max<std::int64_t>(w.iters, 1)),
                      0.0);
    }
    case config::WarmdownForm::wallclock: {
      if (w.iters <= 0 || t.wallclock_cap_s <= 0) return 1.0;
      const double warmdown_s = static_cast<double>(w.iters) * mean_step_s;
      const double remaining = std::max(t.wallclock_cap_s - elapsed_s, 0.0);
      return remaining <= warmdown_s ? remaining / std::max(warmdown_s, 1e-12) : 1.0;
    }
    case config::WarmdownForm::fraction: {
      if (t.wallclock_cap_s <= 0 || w.frac <= 0) return 1.0;
      const double f = elapsed_s / t.wallclock_cap_s;
      if (f < 1.0 - w.frac) return 1.0;
      return std::max((1.0 - f) / w.frac, w.min_lr_scale);
    }
  }
  return 1.0;
}

}  // namespace pgolf::train
