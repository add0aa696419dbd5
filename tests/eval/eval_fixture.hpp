#pragma once
// The eval tests' setup: the golden eval config (tests/reference/golden/eval_ttt_slot.json,
// a d32 vocab-1024 model on the first bundled val tokens) with either the twin-written
// random checkpoint the goldens use, or the same model trained briefly on the bundled train
// data (the audits' "tiny trained model").
#include <string>
#include <vector>

#include "backend/ops.hpp"
#include "config/config.hpp"
#include "data/bpb.hpp"
#include "eval/audit.hpp"
#include "eval/evaluator.hpp"

namespace pgolf::test {

struct EvalFixture {
  config::Config config;
  eval::ValStream stream;
  data::ByteTables tables;
  std::vector<float> weights;

  // eval_ttt_slot.json with --set values, and the golden's random checkpoint.
  static EvalFixture golden(const std::vector<std::string>& sets = {});
  // The same model trained for 60 steps (cached: trained once per test process), on the val
  // stream the --set values select.
  static EvalFixture trained(const std::vector<std::string>& sets = {});

  // The config's eval options with the NLLs kept and no progress output.
  eval::EvalOptions options() const;
  // Builds a model sized for `o` on `ops` (null: the CPU reference), loads the weights and
  // evaluates.
  eval::EvalResult run(const eval::EvalOptions& o, backend::Ops<float>* ops = nullptr) const;
  eval::AuditReport audit(const eval::EvalOptions& o, const std::vector<eval::AuditPosition>& positions) const;
  eval::AuditReport audit(const eval::EvalOptions& o) const;  // the default positions
};

}  // namespace pgolf::test
