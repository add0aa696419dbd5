// Properties of the eval modes (docs/eval.md) on the golden eval model: exactly-once scoring
// for every mode and awkward stream lengths, score-before-update for TTT, per-window
// independence of causal SLOT, labels and compliance, and the TTT schedule.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "backend/cpu/cpu_ops.hpp"
#include "eval/eval_fixture.hpp"
#include "eval/slot.hpp"
#include "eval/ttt.hpp"
#include "model/params.hpp"
#include "support/test_support.hpp"

namespace pgolf {
namespace {

using config::SlotVariant;

bool bits_equal(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

struct ModeCase {
  const char* name;
  bool sliding, ttt;
  SlotVariant slot;
};
const ModeCase kModes[] = {
    {"nonoverlap", false, false, SlotVariant::none},
    {"sliding", true, false, SlotVariant::none},
    {"sliding+ttt", true, true, SlotVariant::none},
    {"sliding+slot:causal", true, false, SlotVariant::causal},
    {"sliding+ttt+slot:causal", true, true, SlotVariant::causal},
    {"sliding+slot:standard", true, false, SlotVariant::standard},
    {"sliding+slot:causal_shared", true, false, SlotVariant::causal_shared},
    {"nonoverlap+ttt+slot:causal", false, true, SlotVariant::causal},
};

eval::EvalOptions mode_options(const test::EvalFixture& f, const ModeCase& m) {
  eval::EvalOptions o = f.options();
  o.mode = m.sliding ? eval::Mode::sliding : eval::Mode::nonoverlap;
  o.ttt.enabled = m.ttt;
  o.slot.variant = m.slot;
  o.slot.steps = 2;
  o.ttt.epochs = 1;
  return o;
}

// C4 for every mode, on streams whose length is a multiple of nothing relevant (stride 32,
// window 64, chunk 512, batch 4 windows), shorter than one window, and one target long.
TEST(EvalModes, EveryTargetIsScoredExactlyOnceInEveryMode) {
  for (int tokens : {1501, 1090, 513, 130, 41, 2}) {
    const test::EvalFixture f =
        test::EvalFixture::golden({"data.val_max_tokens=" + std::to_string(tokens), "eval.ttt.chunk_tokens=100"});
    for (const ModeCase& m : kModes) {
      SCOPED_TRACE(std::string(m.name) + ", " + std::to_string(tokens - 1) + " targets");
      const eval::EvalResult r = f.run(mode_options(f, m));
      EXPECT_EQ(r.mode, m.name);
      EXPECT_EQ(r.targets, tokens - 1);
      EXPECT_EQ(r.scored, r.targets);
      ASSERT_EQ(r.counts.size(), static_cast<std::size_t>(r.targets));
      for (std::size_t t = 0; t < r.counts.size(); ++t) ASSERT_EQ(r.counts[t], 1) << "target " << t;
      for (double v : r.nll) ASSERT_TRUE(std::isfinite(v));
      EXPECT_EQ(r.chunks, m.ttt ? (tokens - 1 + 99) / 100 : 1);
    }
  }
}

TEST(EvalModes, LabelsAndComplianceFollowTheMode) {
  const test::EvalFixture f = test::EvalFixture::golden({"data.val_max_tokens=200"});
  for (const ModeCase& m : kModes) {
    const eval::EvalOptions o = mode_options(f, m);
    EXPECT_EQ(eval::eval_label(o), m.name);
    EXPECT_EQ(eval::eval_compliant(o), m.slot == SlotVariant::none || m.slot == SlotVariant::causal) << m.name;
  }
  eval::EvalOptions o = f.options();
  o.record_rescore = true;
  EXPECT_FALSE(eval::eval_compliant(o)) << "the #549 tail rescoring breaks C4";
  const eval::EvalResult r = f.run(o);
  EXPECT_FALSE(r.compliant);
  EXPECT_GT(r.scored, r.targets) << "record_rescore scores the tail repeatedly";
}

TEST(EvalModes, SlotWithZeroStepsIsPlainSlidingBitForBit) {
  const test::EvalFixture f = test::EvalFixture::golden();
  const eval::EvalResult plain = f.run(f.options());
  for (SlotVariant v : {SlotVariant::standard, SlotVariant::causal_shared, SlotVariant::causal})
    for (auto placement : {config::SlotPlacement::before_norm, config::SlotPlacement::after_norm}) {
      eval::EvalOptions o = f.options();
      o.slot.variant = v;
      o.slot.placement = placement;
      o.slot.steps = 0;
      const eval::EvalResult r = f.run(o);
      for (std::size_t t = 0; t < r.nll.size(); ++t)
        ASSERT_TRUE(bits_equal(r.nll[t], plain.nll[t])) << config::enum_name(v) << " target " << t;
    }
}

// A causal window's delta is fitted on its own context only, so (a) the first window, which
// has none, scores exactly as without SLOT, and (b) regrouping the windows into other
// batches changes nothing beyond float32 noise of the batch shape, while the shared
// variants' deltas depend on the batch (their leak).
TEST(EvalModes, CausalSlotFitsEachWindowAlone) {
  const test::EvalFixture f = test::EvalFixture::golden();
  const eval::EvalResult plain = f.run(f.options());
  auto run = [&](SlotVariant v, int batch) {
    eval::EvalOptions o = f.options();
    o.slot.variant = v;
    o.batch_windows = batch;
    return f.run(o);
  };
  const eval::EvalResult causal4 = run(SlotVariant::causal, 4), causal1 = run(SlotVariant::causal, 1);
  const int T = static_cast<int>(f.config.model.seq_len);
  for (int t = 0; t < T; ++t) EXPECT_TRUE(bits_equal(causal4.nll[static_cast<std::size_t>(t)], plain.nll[static_cast<std::size_t>(t)]));
  double causal_diff = 0, shared_diff = 0, effect = 0;
  const eval::EvalResult shared4 = run(SlotVariant::causal_shared, 4), shared1 = run(SlotVariant::causal_shared, 1);
  for (std::size_t t = 0; t < plain.nll.size(); ++t) {
    causal_diff = std::max(causal_diff, std::fabs(causal4.nll[t] - causal1.nll[t]));
    shared_diff = std::max(shared_diff, std::fabs(shared4.nll[t] - shared1.nll[t]));
    effect = std::max(effect, std::fabs(causal4.nll[t] - plain.nll[t]));
  }
  EXPECT_LE(causal_diff, 1e-4) << "float32 noise of the batch shape only";
  EXPECT_GT(effect, 0.1) << "SLOT must change the scores for this test to mean anything";
  EXPECT_GT(shared_diff, 1e-2) << "a shared delta depends on the batch";
  // With one window per batch causal_shared is causal (same mask, delta no longer shared).
  for (std::size_t t = 0; t < plain.nll.size(); ++t) ASSERT_TRUE(bits_equal(shared1.nll[t], causal1.nll[t])) << t;
}

// SPEC 6.3: chunk 0 is scored before any update, so its windows score exactly as plain
// sliding; later chunks see trained weights; frozen blocks never move; the weights end moved.
// The end of the last target chunk 0's windows score (windows whose first scored target is
// below eval.ttt.chunk_tokens).
std::int64_t chunk_zero_end(const test::EvalFixture& f, const eval::EvalOptions& o, std::int64_t targets) {
  std::int64_t end = 0;
  for (const auto& w : eval::sliding_windows(targets, static_cast<int>(f.config.model.seq_len), o.stride))
    if (w.start + w.score_from < o.ttt.chunk_tokens) end = w.start + w.length;
  return end;
}

// With one window per batch, TTT's chunk 0 is batched exactly as the plain run, so it must
// score bit for bit the same: nothing TTT does before the first update touches the scores.
TEST(EvalModes, TttChunkZeroIsBitIdenticalWhenBatchedAlike) {
  const test::EvalFixture f = test::EvalFixture::golden({"eval.batch_windows=1"});
  const eval::EvalResult plain = f.run(f.options());
  eval::EvalOptions o = f.options();
  o.ttt.enabled = true;
  const eval::EvalResult r = f.run(o);
  const std::int64_t chunk0_end = chunk_zero_end(f, o, r.targets);
  ASSERT_GE(chunk0_end, o.ttt.chunk_tokens);
  for (std::int64_t t = 0; t < chunk0_end; ++t)
    ASSERT_TRUE(bits_equal(r.nll[static_cast<std::size_t>(t)], plain.nll[static_cast<std::size_t>(t)])) << t;
  EXPECT_NE(r.nll.back(), plain.nll.back()) << "the last chunk is scored after training";
}

TEST(EvalModes, TttScoresEachChunkBeforeTrainingOnIt) {
  const test::EvalFixture f = test::EvalFixture::golden({"eval.ttt.freeze_blocks=1"});
  const eval::EvalResult plain = f.run(f.options());
  eval::EvalOptions o = f.options();
  o.ttt.enabled = true;
  backend::CpuOps<float> ops;
  model::Model<float> net(f.config.model, ops, eval::eval_model_batch(o), static_cast<int>(f.config.model.seq_len),
                          eval::eval_model_mode(o));
  net.set_params(f.weights);
  net.set_recurrence_active(!f.config.model.recurrence.virtual_layers.empty());
  const eval::EvalResult r = eval::evaluate(net, f.stream, f.tables, o);
  EXPECT_EQ(r.chunks, 3);
  EXPECT_EQ(r.ttt_steps, 2 * 2 * 3) << "2 trained chunks x 2 epochs x ceil(8 sequences / 3)";
  const std::int64_t chunk0_end = chunk_zero_end(f, o, r.targets);
  ASSERT_GE(chunk0_end, o.ttt.chunk_tokens);
  // Bit for bit where TTT batches chunk 0's windows as the plain run does; the last batch of a
  // chunk holds fewer windows, and OpenBLAS's threaded GEMM may round a row differently for
  // another row count (seen on AMD EPYC with 2 threads), so the bound is float32 noise, three
  // orders of magnitude below what training moves.
  double chunk0_diff = 0.0, later_diff = 0.0;
  std::int64_t chunk0_exact = 0;
  for (std::int64_t t = 0; t < chunk0_end; ++t) {
    const double a = r.nll[static_cast<std::size_t>(t)], b = plain.nll[static_cast<std::size_t>(t)];
    chunk0_diff = std::max(chunk0_diff, std::fabs(a - b));
    chunk0_exact += bits_equal(a, b) ? 1 : 0;
  }
  EXPECT_LE(chunk0_diff, 1e-5) << "chunk 0 is scored with the untrained weights";
  EXPECT_GT(chunk0_exact, chunk0_end / 2) << "most of chunk 0 is bit-identical";
  std::int64_t moved = 0;
  for (std::int64_t t = chunk0_end; t < r.targets; ++t) {
    const double d = std::fabs(r.nll[static_cast<std::size_t>(t)] - plain.nll[static_cast<std::size_t>(t)]);
    moved += d > 1e-5 ? 1 : 0;
    later_diff = std::max(later_diff, d);
  }
  EXPECT_GT(moved, (r.targets - chunk0_end) * 9 / 10) << "later chunks are scored with trained weights";
  EXPECT_GT(later_diff, 1e-2) << "training moves the scores far beyond the noise bound";
  std::printf("chunk 0: max |dNLL| %.3g, %lld of %lld bit-identical; later chunks: max |dNLL| %.3g\n", chunk0_diff,
              static_cast<long long>(chunk0_exact), static_cast<long long>(chunk0_end), later_diff);

  const std::vector<float> after = net.params_host();
  for (const auto& p : net.table().specs()) {
    const bool same = std::equal(after.begin() + static_cast<std::ptrdiff_t>(p.offset),
                                 after.begin() + static_cast<std::ptrdiff_t>(p.offset + p.numel()),
                                 f.weights.begin() + static_cast<std::ptrdiff_t>(p.offset));
    if (p.name.starts_with("blocks.0.")) {
      EXPECT_TRUE(same) << p.name << " is frozen (freeze_blocks = 1)";
    } else if (p.name.starts_with("blocks.") && p.name.ends_with(".weight")) {
      EXPECT_FALSE(same) << p.name << " is trained";
    }
  }
}

TEST(EvalModes, TttLearningRateFollowsTheCosineOverChunks) {
  EXPECT_DOUBLE_EQ(eval::ttt_chunk_lr(0.002, 0, 5), 0.002);
  EXPECT_NEAR(eval::ttt_chunk_lr(0.002, 2, 5), 0.001, 1e-15);
  EXPECT_NEAR(eval::ttt_chunk_lr(0.002, 4, 5), 0.0, 1e-18);
  EXPECT_DOUBLE_EQ(eval::ttt_chunk_lr(0.002, 0, 1), 0.002) << "one chunk: max(n - 1, 1) avoids 0/0";
}

TEST(EvalModes, SlotFitMasksFollowTheVariant) {
  const eval::Window first{0, 64, 0}, full{32, 64, 32}, tail{1440, 60, 56};
  EXPECT_EQ(eval::slot_fit_rows(SlotVariant::standard, full), 63);
  EXPECT_EQ(eval::slot_fit_rows(SlotVariant::standard, first), 63) << "standard fits on the scored targets too";
  for (SlotVariant v : {SlotVariant::causal, SlotVariant::causal_shared}) {
    EXPECT_EQ(eval::slot_fit_rows(v, first), 0);
    EXPECT_EQ(eval::slot_fit_rows(v, full), 32);
    EXPECT_EQ(eval::slot_fit_rows(v, tail), 56) << "the exactly-once tail window's context is larger";
  }
}

// The eval's --nll-out file holds exactly the NLLs the result reports, for a TTT+SLOT mode.
TEST(EvalModes, NllOutputWorksForEveryMode) {
  const test::EvalFixture f = test::EvalFixture::golden({"data.val_max_tokens=400"});
  test::TempDir dir;
  eval::EvalOptions o = f.options();
  o.ttt.enabled = true;
  o.slot.variant = SlotVariant::causal;
  o.nll_out = dir / "nll.f64";
  const eval::EvalResult r = f.run(o);
  const std::string bytes = test::read_bytes(o.nll_out);
  ASSERT_EQ(bytes.size(), r.nll.size() * sizeof(double));
  double sum = 0;
  for (std::size_t t = 0; t < r.nll.size(); ++t) {
    double v;
    std::memcpy(&v, bytes.data() + t * sizeof(double), sizeof v);
    ASSERT_TRUE(bits_equal(v, r.nll[t]));
    sum += v;
  }
  EXPECT_NEAR(sum / static_cast<double>(r.nll.size()), r.val_loss, 1e-12 * r.val_loss);
}

}  // namespace
}  // namespace pgolf
