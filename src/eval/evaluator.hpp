#pragma once
// Scoring the val stream with a model (SPEC 6, docs/eval.md): the window plan of
// eval/windows.hpp, run in batches of equal-length windows, optionally with score-first TTT
// (eval/ttt.hpp) around the scoring and a SLOT delta (eval/slot.hpp) inside it; the NLL of
// the scored positions is accumulated with the exact byte counts of SPEC 2.3.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/files.hpp"
#include "config/config.hpp"
#include "data/bpb.hpp"
#include "dist/communicator.hpp"
#include "eval/windows.hpp"
#include "model/model.hpp"

namespace pgolf::eval {

struct ValStream {
  std::vector<std::uint16_t> tokens;  // inputs are tokens[i], targets tokens[i + 1]
  std::int64_t read_tokens = 0;       // tokens read from the shards before trimming
  std::string origin;                 // the glob
  std::int64_t targets() const { return static_cast<std::int64_t>(tokens.size()) - 1; }
};

// Reads data.val_files (every id checked against model.vocab_size), keeps the first
// data.val_max_tokens tokens when set, then trims to ((n-1)//T)*T + 1 tokens when
// data.trim_val (the records' behaviour).
ValStream load_val_stream(const config::Config& c);

enum class Mode { nonoverlap, sliding };
const char* mode_name(Mode m);

inline config::TttConfig ttt_disabled() {
  config::TttConfig t;
  t.enabled = false;
  return t;
}

struct EvalOptions {
  Mode mode = Mode::sliding;
  int stride = 64;
  int batch_windows = 32;
  bool record_rescore = false;
  config::TttConfig ttt = ttt_disabled();
  config::SlotConfig slot;  // variant none: no SLOT
  fs::path nll_out;         // float64 per target, NaN where not scored; empty = none
  bool keep_nll = false;    // also return the per-target NLLs and score counts (audits)
  bool check_exactly_once = true;  // a target scored other than once is an internal error
                                   // (the audit counts instead; record_rescore never checks)
  bool progress = true;
  double wallclock_budget_s = 0.0;     // the challenge's eval time limit, reported against (0: none)
  // Ranks share the windows of each chunk and TTT's batches. Only single-rank runs exist so
  // far (MPI/NCCL communicators come with the distributed issue), so W > 1 is untested.
  dist::Communicator* comm = nullptr;  // null: a single rank
};

// The eval section of a config as options (mode, stride, batches, tail, TTT, SLOT).
EvalOptions eval_options(const config::Config& c);

// "sliding", "sliding+ttt", "sliding+ttt+slot:causal", ... (docs/eval.md "Results labels").
std::string eval_label(const EvalOptions& o);
// False for the modes that break SPEC 7's conditions: record_rescore (C4), standard and
// causal_shared SLOT (C1).
bool eval_compliant(const EvalOptions& o);
// What a model needs to run these options: sequences per forward, and training mode for TTT.
int eval_model_batch(const EvalOptions& o);
model::ModelMode eval_model_mode(const EvalOptions& o);
// The bytes evaluate() allocates beside the model (TTT momentum, the SLOT head), for memory plans.
std::uint64_t eval_extra_bytes(const config::ModelConfig& model, const EvalOptions& o);

// The one set-up of an evaluation's model (pgolf eval, audit and run each evaluate on a model of
// their own, never on the training model): what it allocates (the model for eval_model_batch()
// sequences of model.seq_len in eval_model_mode(), and evaluate()'s TTT/SLOT buffers), and the
// model itself, with depth recurrence on or off as given. Its weights are set by the caller.
model::ModelFootprint eval_model_footprint(const config::ModelConfig& model, backend::Ops<float>& ops,
                                           const EvalOptions& o);
backend::MemoryPlan eval_memory_plan(const config::ModelConfig& model, backend::Ops<float>& ops, const EvalOptions& o);
std::unique_ptr<model::Model<float>> make_eval_model(const config::ModelConfig& model, backend::Ops<float>& ops,
                                                     const EvalOptions& o, bool recurrence_active);

struct EvalResult {
  std::string mode;  // eval_label()
  bool compliant = true;
  double val_loss = 0.0;
  double val_bpb = 0.0;
  std::int64_t scored = 0;
  std::int64_t targets = 0;
  std::int64_t bytes = 0;
  std::int64_t windows = 0;
  std::int64_t chunks = 0;      // TTT chunks (1 without TTT)
  std::int64_t ttt_steps = 0;   // TTT optimizer steps
  double seconds = 0.0;
  double ttt_seconds = 0.0;     // of which TTT training
  double tokens_per_s = 0.0;    // scored targets per second
  std::vector<double> nll;            // keep_nll: per target (NaN where not scored)
  std::vector<std::uint8_t> counts;   // keep_nll: times each target was scored (saturating)
};

// Evaluates the model on the stream. With TTT the model's weights change (they end as the
// last chunk's training left them) and the model must be built with eval_model_mode() and
// room for eval_model_batch() sequences.
EvalResult evaluate(model::Model<float>& model, const ValStream& stream, const data::ByteTables& tables,
                    const EvalOptions& options);

}  // namespace pgolf::eval
