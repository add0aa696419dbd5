#include <gtest/gtest.h>

#include <algorithm>

#include "eval/windows.hpp"

namespace pgolf::eval {
namespace {

TEST(Windows, NonOverlappingCoversEveryTargetOnce) {
  for (std::int64_t n : {1, 7, 8, 9, 64, 100}) {
    auto plan = nonoverlapping_windows(n, 8);
    auto counts = score_counts(plan, n);
    EXPECT_TRUE(std::all_of(counts.begin(), counts.end(), [](int c) { return c == 1; })) << n;
    for (const auto& w : plan) EXPECT_EQ(w.score_from, 0);
  }
}

TEST(Windows, SlidingScoresEveryTargetExactlyOnceForAnyLengthStrideAndWindow) {
  for (int window : {4, 8, 16})
    for (int stride : {1, 2, 3, window / 2, window})
      for (std::int64_t n : {1, 2, 5, 8, 9, 15, 16, 17, 31, 64, 65, 100, 101}) {
        auto plan = sliding_windows(n, window, stride);
        auto counts = score_counts(plan, n);
        ASSERT_TRUE(std::all_of(counts.begin(), counts.end(), [](int c) { return c == 1; }))
            << "window " << window << " stride " << stride << " targets " << n;
        for (std::size_t i = 1; i < plan.size(); ++i) {
          EXPECT_GT(plan[i].length, plan[i].score_from) << "no window that adds nothing";
          EXPECT_EQ(plan[i].start, plan[i - 1].start + stride);
        }
      }
}

TEST(Windows, SlidingUsesTheMostLeftContextPossible) {
  // Window 2048, stride 64, as the records: the first window scores everything, every later
  // full window its last 64 positions, so each target sees at least 2048-64 tokens of context.
  const std::int64_t n = 10000;
  auto plan = sliding_windows(n, 2048, 64);
  EXPECT_EQ(plan[0].score_from, 0);
  EXPECT_EQ(plan[0].length, 2048);
  for (std::size_t i = 1; i < plan.size(); ++i) {
    if (plan[i].length == 2048) {
      EXPECT_EQ(plan[i].score_from, 2048 - 64) << i;
    }
    EXPECT_GE(plan[i].score_from, std::min<int>(plan[i].length, 2048 - 64) - 64) << i;
  }
  // The last window ends at the end of the stream and scores only what was left.
  const Window& last = plan.back();
  EXPECT_EQ(last.start + last.length, n);
}

TEST(Windows, TheRecordQuirkRescoresTailTargets) {
  const std::int64_t n = 100;
  auto plan = sliding_windows(n, 16, 4, /*record_rescore=*/true);
  auto counts = score_counts(plan, n);
  EXPECT_GT(*std::max_element(counts.begin(), counts.end()), 1) << "#549's tail windows score targets again";
  EXPECT_TRUE(std::all_of(counts.begin(), counts.end(), [](int c) { return c >= 1; }));
}

}  // namespace
}  // namespace pgolf::eval
