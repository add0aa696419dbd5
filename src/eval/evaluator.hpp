#pragma once
// Scoring the val stream with a model (SPEC 6.1, 6.2): windows from eval/windows.hpp, run in
// batches of equal-length windows, NLL of the scored positions accumulated with the exact
// byte counts of SPEC 2.3.
#include <cstdint>
#include <string>
#include <vector>

#include "common/files.hpp"
#include "config/config.hpp"
#include "data/bpb.hpp"
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

struct EvalOptions {
  Mode mode = Mode::sliding;
  int stride = 64;
  int batch_windows = 32;
  bool record_rescore = false;
  fs::path nll_out;       // float64 per target, NaN where not scored; empty = none
  bool progress = true;
};

struct EvalResult {
  std::string mode;
  double val_loss = 0.0;
  double val_bpb = 0.0;
  std::int64_t scored = 0;
  std::int64_t targets = 0;
  std::int64_t bytes = 0;
  std::int64_t windows = 0;
  double seconds = 0.0;
};

EvalResult evaluate(model::Model<float>& model, const ValStream& stream, const data::ByteTables& tables,
                    const EvalOptions& options);

}  // namespace pgolf::eval
