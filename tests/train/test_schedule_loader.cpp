#include <gtest/gtest.h>

#include <numeric>

#include "common/error.hpp"
#include "data/shard.hpp"
#include "support/test_support.hpp"
#include "train/loader.hpp"
#include "train/schedule.hpp"

namespace pgolf::train {
namespace {

TEST(Schedule, IterationsFormDecaysLinearlyOverTheLastWarmdownSteps) {
  config::TrainConfig t;
  t.iterations = 100;
  t.warmdown.form = config::WarmdownForm::iterations;
  t.warmdown.iters = 10;
  EXPECT_EQ(lr_scale(t, 0, 0, 0), 1.0);
  EXPECT_EQ(lr_scale(t, 89, 0, 0), 1.0);
  EXPECT_DOUBLE_EQ(lr_scale(t, 90, 0, 0), 1.0);
  EXPECT_DOUBLE_EQ(lr_scale(t, 95, 0, 0), 0.5);
  EXPECT_DOUBLE_EQ(lr_scale(t, 99, 0, 0), 0.1);
  t.warmdown.iters = 0;
  EXPECT_EQ(lr_scale(t, 99, 0, 0), 1.0);
}

TEST(Schedule, WallclockFormUsesTheMeanStepTime) {
  config::TrainConfig t;  // #549: cap 600 s, warmdown 3500 iters
  // 100 ms steps: the warmdown lasts 350 s, so it starts at 250 s.
  EXPECT_EQ(lr_scale(t, 2000, 200.0, 0.1), 1.0);
  EXPECT_DOUBLE_EQ(lr_scale(t, 3000, 250.0, 0.1), 1.0);
  EXPECT_NEAR(lr_scale(t, 4000, 425.0, 0.1), 0.5, 1e-12);
  EXPECT_EQ(lr_scale(t, 6000, 700.0, 0.1), 0.0);
}

TEST(Schedule, FractionFormHasAFloor) {
  config::TrainConfig t;
  t.warmdown.form = config::WarmdownForm::fraction;
  t.warmdown.frac = 0.5;
  t.warmdown.min_lr_scale = 0.1;
  EXPECT_EQ(lr_scale(t, 0, 100.0, 0), 1.0);
  EXPECT_NEAR(lr_scale(t, 0, 450.0, 0), 0.5, 1e-12);
  EXPECT_EQ(lr_scale(t, 0, 590.0, 0), 0.1);
}

TEST(Loader, SpansRanksAndWrapsAroundShards) {
  test::TempDir dir;
  std::vector<std::uint16_t> a(10), b(7);
  std::iota(a.begin(), a.end(), 0);
  std::iota(b.begin(), b.end(), 100);
  data::write_shard(dir / "fineweb_train_000000.bin", a);
  data::write_shard(dir / "fineweb_train_000001.bin", b);
  TrainLoader loader((dir / "fineweb_train_*.bin").string(), 1024);
  EXPECT_EQ(loader.total_tokens(), 17);
  std::vector<std::int32_t> x, y;
  // world 2, span 4: the chunk is tokens 0..7; rank 1 keeps 4..7.
  loader.next_micro_batch(4, 1, 2, x, y);
  EXPECT_EQ(x, (std::vector<std::int32_t>{4, 5, 6}));
  EXPECT_EQ(y, (std::vector<std::int32_t>{5, 6, 7}));
  // The next chunk crosses into the second shard: 8, 9, 100, ..., 105.
  loader.next_micro_batch(4, 0, 2, x, y);
  EXPECT_EQ(x, (std::vector<std::int32_t>{8, 9, 100}));
  const LoaderPosition p = loader.position();
  EXPECT_EQ(p.shard, 1);
  EXPECT_EQ(p.offset, 6);
  // Wrap-around: 106 then 0, 1, ...
  std::vector<std::uint16_t> t;
  loader.take(3, t);
  EXPECT_EQ(t, (std::vector<std::uint16_t>{106, 0, 1}));
  EXPECT_EQ(loader.position().passes, 1);
  // Seeking back reproduces the stream.
  loader.seek(p);
  loader.take(2, t);
  EXPECT_EQ(t, (std::vector<std::uint16_t>{106, 0}));
  EXPECT_THROW(loader.seek({5, 0, 0}), Error);
}

}  // namespace
}  // namespace pgolf::train
