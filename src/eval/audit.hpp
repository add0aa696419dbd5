#pragma once
// The legality audit (SPEC 7, docs/eval.md "The audit"): run an eval mode on the val stream,
// change one token at a position q, run it again from the same weights, and check that no
// target before q moved by a single bit (C1, C3) and that every target was scored exactly
// once in both runs (C4). Works on the real eval code path, whatever the mode.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "eval/evaluator.hpp"

namespace pgolf::eval {

struct AuditPosition {
  std::int64_t token = 0;  // the stream index q whose token is changed, in [1, N]
  std::string where;       // why it was chosen ("stream start", "chunk 1 first token", ...)
};

// docs/eval.md's default positions for this plan: stream start, middle and end; the edges
// of the second and the middle window and the first tokens of the windows after the middle
// one (which share its batch); under TTT the edges and the middle of chunk 1. Sorted,
// deduplicated, within [1, N].
std::vector<AuditPosition> default_audit_positions(const EvalOptions& o, std::int64_t targets, int seq_len);

struct AuditProbe {
  AuditPosition position;
  std::int64_t compared = 0;      // targets before q (t < q - 1) compared bit for bit
  std::int64_t changed = 0;       // of which differed
  double max_abs_delta = 0.0;     // largest |NLL difference| among them
  std::int64_t first_changed = -1;  // the first target that differed (-1: none)
  std::int64_t miscounted = 0;    // targets not scored exactly once in the perturbed run
  bool violation() const { return changed > 0 || miscounted > 0; }
};

struct AuditReport {
  std::string mode;             // eval_label()
  bool compliant_by_construction = true;  // eval_compliant(): what the audit should confirm
  std::int64_t targets = 0;
  std::int64_t base_miscounted = 0;  // targets not scored exactly once in the base run
  double base_val_bpb = 0.0;
  std::vector<AuditProbe> probes;
  double seconds = 0.0;
  std::int64_t violations() const;  // violating probes (+1 when the base run miscounted)
  bool passed() const { return violations() == 0; }
};

// Runs the audit. `weights` are restored into the model before every run (TTT moves them).
// The model must fit the options (eval_model_batch / eval_model_mode). `on_probe` (may be
// empty) is called after each probe, for progress output.
AuditReport audit_eval(model::Model<float>& model, const std::vector<float>& weights, const ValStream& stream,
                       const data::ByteTables& tables, EvalOptions options, const std::vector<AuditPosition>& positions,
                       const std::function<void(const AuditProbe&, std::size_t done, std::size_t total)>& on_probe = {});

}  // namespace pgolf::eval
