// The legality audit (SPEC 7) on a tiny trained model with real val tokens: it passes for
// the compliant modes and catches the leaks of the batch-shared SLOT variants and the
// repeated scoring of the #549 tail; `pgolf audit` reports the same from the command line.
#include <gtest/gtest.h>

#include "common/json.hpp"
#include "eval/eval_fixture.hpp"
#include "support/test_support.hpp"

namespace pgolf {
namespace {

using config::SlotVariant;

eval::EvalOptions with(const test::EvalFixture& f, bool ttt, SlotVariant slot) {
  eval::EvalOptions o = f.options();
  o.ttt.enabled = ttt;
  o.slot.variant = slot;
  return o;
}

void print(const eval::AuditReport& r) {
  std::printf("  %-30s val_bpb %.4f, %zu positions, %lld violations (%.1f s)\n", r.mode.c_str(), r.base_val_bpb,
              r.probes.size(), static_cast<long long>(r.violations()), r.seconds);
}

TEST(Audit, PassesForSlidingTttCausalSlotAndTheirCombination) {
  const test::EvalFixture f = test::EvalFixture::trained();
  for (auto [ttt, slot] : {std::pair{false, SlotVariant::none}, std::pair{true, SlotVariant::none},
                           std::pair{false, SlotVariant::causal}, std::pair{true, SlotVariant::causal}}) {
    const eval::EvalOptions o = with(f, ttt, slot);
    const eval::AuditReport r = f.audit(o);
    print(r);
    SCOPED_TRACE(r.mode);
    EXPECT_TRUE(r.compliant_by_construction);
    EXPECT_LT(r.base_val_bpb, 3.6) << "a trained model (uniform predictions give 3.83 bpb here)";
    EXPECT_TRUE(r.passed());
    EXPECT_EQ(r.base_miscounted, 0);
    EXPECT_GE(r.probes.size(), ttt ? 12u : 9u) << "start, middle, end, window edges (and chunk edges)";
    for (const auto& p : r.probes) {
      EXPECT_EQ(p.compared, std::max<std::int64_t>(0, p.position.token - 1)) << "every target before q is compared";
      EXPECT_EQ(p.changed, 0) << "q = " << p.position.token << " (" << p.position.where << ")";
      EXPECT_EQ(p.miscounted, 0);
    }
  }
}

TEST(Audit, FindsTheLeaksOfBatchSharedSlot) {
  const test::EvalFixture f = test::EvalFixture::trained();
  for (SlotVariant v : {SlotVariant::standard, SlotVariant::causal_shared}) {
    for (bool ttt : {false, true}) {
      const eval::AuditReport r = f.audit(with(f, ttt, v));
      print(r);
      SCOPED_TRACE(r.mode);
      EXPECT_FALSE(r.compliant_by_construction);
      EXPECT_FALSE(r.passed());
      EXPECT_GE(r.violations(), 3);
      for (const auto& p : r.probes) {
        EXPECT_EQ(p.miscounted, 0) << "the leak is C1, not C4";
        if (p.violation()) {
          EXPECT_GT(p.max_abs_delta, 0.0);
          EXPECT_LT(p.first_changed, p.position.token - 1);
        }
      }
    }
  }
}

TEST(Audit, FindsTheRepeatedTailScoresOfRecordRescore) {
  const test::EvalFixture f = test::EvalFixture::trained();
  eval::EvalOptions o = f.options();
  o.record_rescore = true;
  const eval::AuditReport r = f.audit(o, {{700, "middle"}});
  EXPECT_FALSE(r.passed());
  EXPECT_GT(r.base_miscounted, 0) << "C4: the last targets are scored more than once";
  EXPECT_EQ(r.probes[0].changed, 0) << "the rescoring is not a causality leak";
}

// A leak planted by hand: with positions chosen inside one batch, the audit of
// causal_shared flags exactly the probes whose token lies in a later window's context.
TEST(Audit, NamesTheFirstAffectedTarget) {
  const test::EvalFixture f = test::EvalFixture::trained();
  // Batch 1 holds windows 4..7 (starts 128..224, stride 32): window 6's context starts at
  // token 192, after window 4's scored targets 160..191, whose delta it shares.
  const eval::AuditReport r = f.audit(with(f, false, SlotVariant::causal_shared), {{200, "window 6 context"}});
  ASSERT_EQ(r.probes.size(), 1u);
  EXPECT_TRUE(r.probes[0].violation());
  EXPECT_EQ(r.probes[0].first_changed, 160) << "window 4's first scored target";
  const eval::AuditReport causal = f.audit(with(f, false, SlotVariant::causal), {{200, "window 6 context"}});
  EXPECT_TRUE(causal.passed());
}

TEST(AuditCommand, ExitsZeroWhenCompliantAndTenOnAViolation) {
  const auto golden = test::source_dir() / "tests/reference/golden";
  test::TempDir dir;
  const std::vector<std::string> base = {"audit", (golden / "eval_ttt_slot.json").string(), "--checkpoint",
                                         (golden / "interchange_twin_v1.safetensors").string(), "--set",
                                         "data.val_max_tokens=600", "--threads", "1"};
  auto args = base;
  args.insert(args.end(), {"--set", "eval.slot.variant=causal", "--set", "eval.ttt.enabled=true", "--results",
                           (dir / "ok.json").string()});
  auto ok = test::run_pgolf(args);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.out.find("audit sliding+ttt+slot:causal (compliant by construction)"), std::string::npos) << ok.out;
  EXPECT_NE(ok.out.find("audit passed"), std::string::npos);
  const json j = json::parse(test::read_bytes(dir / "ok.json"));
  EXPECT_EQ(j["passed"], true);
  EXPECT_EQ(j["violations"], 0);
  EXPECT_EQ(j["mode"], "sliding+ttt+slot:causal");
  EXPECT_GE(j["probes"].size(), 10u);

  args = base;
  args.insert(args.end(), {"--set", "eval.slot.variant=standard", "--positions", "100,300", "--results",
                           (dir / "bad.json").string()});
  auto bad = test::run_pgolf(args);
  EXPECT_EQ(bad.exit_code, 10) << bad.err;
  EXPECT_NE(bad.out.find("NON-COMPLIANT"), std::string::npos);
  EXPECT_NE(bad.out.find("VIOLATION"), std::string::npos);
  EXPECT_NE(bad.err.find("audit failed"), std::string::npos) << bad.err;
  const json b = json::parse(test::read_bytes(dir / "bad.json"));
  EXPECT_EQ(b["passed"], false);
  EXPECT_EQ(b["probes"].size(), 2u);

  args = base;
  args.insert(args.end(), {"--positions", "0"});
  auto usage = test::run_pgolf(args);
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_NE(usage.err.find("--positions 0: outside [1, 599]"), std::string::npos) << usage.err;
}

}  // namespace
}  // namespace pgolf
