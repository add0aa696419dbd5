// The ops SLOT adds to the interface (backend/ops.hpp "test-time delta"): exact values on
// small cases, the independence of groups that per-window deltas rely on, and masked rows
// that stay zero even when they held Inf.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/cpu_ops.hpp"

namespace pgolf::backend {
namespace {

TEST(CpuSlotOps, AddGroupRowsBroadcastsOneRowPerGroup) {
  CpuOps<float> ops;
  // 2 groups of 3 rows of dim 2.
  const std::vector<float> x = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, rows = {100, 200, -1, -2};
  std::vector<float> y(x.size());
  ops.add_group_rows(y.data(), x.data(), rows.data(), 2, 3, 2);
  EXPECT_EQ(y, (std::vector<float>{100, 201, 102, 203, 104, 205, 5, 5, 7, 7, 9, 9}));
  ops.add_group_rows(y.data(), x.data(), rows.data(), 1, 6, 2);  // one shared row
  EXPECT_EQ(y, (std::vector<float>{100, 201, 102, 203, 104, 205, 106, 207, 108, 209, 110, 211}));
}

TEST(CpuSlotOps, SumGroupRowsSumsEachGroupAloneInFloat64) {
  CpuOps<float> ops;
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 1e8f, 1, -1e8f, 1, 1, 1};
  std::vector<float> out(4);
  ops.sum_group_rows(out.data(), x.data(), 2, 3, 2);
  EXPECT_EQ(out, (std::vector<float>{9, 12, 1, 3})) << "float64 sums: 1e8 + 1 - 1e8 is exactly 1";
  // Group 0's sum does not depend on group 1's values (bit for bit).
  const float g0 = out[0];
  x[6] = std::numeric_limits<float>::infinity();
  ops.sum_group_rows(out.data(), x.data(), 2, 3, 2);
  EXPECT_EQ(out[0], g0);
  ops.sum_group_rows(out.data(), x.data(), 1, 6, 2);
  EXPECT_TRUE(std::isinf(out[0]));
}

TEST(CpuSlotOps, ScaleRowsZeroesMaskedRowsEvenIfNotFinite) {
  CpuOps<float> ops;
  std::vector<float> x = {1, 2, std::numeric_limits<float>::infinity(), std::nanf(""), 3, 4};
  const std::vector<float> w = {0.5f, 0.0f, -2.0f};
  ops.scale_rows(x.data(), w.data(), 3, 2);
  EXPECT_EQ(x, (std::vector<float>{0.5f, 1, 0, 0, -6, -8}));
}

}  // namespace
}  // namespace pgolf::backend
