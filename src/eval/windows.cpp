#include "eval/windows.hpp"

#include <algorithm>

#include "common/error.hpp"

namespace pgolf::eval {

std::vector<Window> nonoverlapping_windows(std::int64_t targets, int window) {
  if (window < 1) fail(ErrorKind::internal, "eval: window must be >= 1");
  std::vector<Window> plan;
  for (std::int64_t s = 0; s < targets; s += window)
    plan.push_back(Window{s, static_cast<int>(std::min<std::int64_t>(window, targets - s)), 0});
  return plan;
}

std::vector<Window> sliding_windows(std::int64_t targets, int window, int stride, bool record_rescore) {
  if (window < 1 || stride < 1 || stride > window) fail(ErrorKind::internal, "eval: need 1 <= stride <= window");
  std::vector<Window> plan;
  std::int64_t scored_until = 0;  // every target before this one has been scored
  for (std::int64_t s = 0; s < targets; s += stride) {
    const int length = static_cast<int>(std::min<std::int64_t>(window, targets - s));
    if (record_rescore) {
      const int from = s == 0 ? 0 : std::max(0, length - stride);
      plan.push_back(Window{s, length, from});
      continue;
    }
    const std::int64_t end = s + length;
    if (end <= scored_until) continue;  // would add nothing
    plan.push_back(Window{s, length, static_cast<int>(std::max<std::int64_t>(0, scored_until - s))});
    scored_until = end;
  }
  return plan;
}

std::vector<int> score_counts(const std::vector<Window>& plan, std::int64_t targets) {
  std::vector<int> counts(static_cast<std::size_t>(targets), 0);
  for (const auto& w : plan)
    for (int p = w.score_from; p < w.length; ++p) ++counts[static_cast<std::size_t>(w.start + p)];
  return counts;
}

}  // namespace pgolf::eval
