#pragma once
// What the commands that build a model from a config share: --config and --set, the compute
// backend and the CPU thread count, and the export report.
#include <memory>
#include <string>
#include <vector>

#include "backend/memory.hpp"
#include "backend/ops.hpp"
#include "common/json.hpp"
#include "config/config_loader.hpp"
#include "eval/evaluator.hpp"
#include "export/pack.hpp"
#include "model/model.hpp"

namespace CLI {
class App;
}

namespace pgolf::cli {

struct ConfigArgs {
  std::string config;
  std::vector<std::string> sets;
  int threads = -1;  // -1: the config's value
  bool verbose = false;  // print the parameter and activation tables at start-up
};

void add_config_options(CLI::App* cmd, ConfigArgs& args, bool config_required);
config::LoadedConfig load_config_args(const ConfigArgs& args);

// The compute backend for a command (config key `backend`): "cpu" the CPU reference; "cuda"
// the CUDA backend, an Error(device) naming why when this binary cannot provide it; "auto"
// the CUDA backend when it is usable (a GPU, or pgolf-emu's emulator), else the CPU. Sets
// the CPU threads (host-side work uses them either way) and prints the choice to stderr.
std::unique_ptr<backend::Ops<float>> make_backend(const config::Config& c);

// The memory plan of a command that builds one model on `ops` for `batch` x `seq` tokens, plus
// `extra` named parts: printed to stderr, Error(config) naming `knobs` when it does not fit.
void check_model_memory(backend::Ops<float>& ops, const config::ModelConfig& m, int batch, int seq, model::ModelMode mode,
                        const std::vector<backend::MemoryPlan::Part>& extra, const std::string& knobs);
// Any memory plan, the same way.
void check_memory(backend::Ops<float>& ops, const backend::MemoryPlan& plan, const std::string& knobs);

// The start-up description of a model: the one-line summary (ending with `tables_hint` unless
// verbose), and with `verbose` its tables.
void print_model_layout(const model::Model<float>& net, bool verbose,
                        const char* tables_hint = "--verbose prints the tables");

// Prints an export's sizes against the budget, its treatment per scheme and its timings.
void print_export_result(const exporter::ExportResult& r, const config::ExportConfig& e, const std::string& path);

// The weights an evaluating command uses: a checkpoint, or the dequantised weights of an
// artifact (sizes printed to stderr). Either is checked against the config's model section
// (Error(config) naming the keys, a warning with allow_config_mismatch) and refused when it
// holds non-finite values.
std::vector<float> load_eval_weights(const config::Config& c, const std::string& checkpoint, const std::string& artifact,
                                     bool allow_config_mismatch);

// --allow-config-mismatch of the commands that load weights.
void add_allow_config_mismatch(CLI::App* cmd, bool& flag);

// The config's eval options with a command's overrides: mode ("" = the config's, else
// "nonoverlap" or "sliding"), stride and batch_windows (0 = the config's).
eval::EvalOptions eval_options_for(const config::Config& c, const std::string& mode, int stride, int batch_windows);

// "val_loss ... val_bpb ... scored n/N (sliding+ttt, stride 64, W windows, s)" plus the
// compliance label of a non-compliant mode.
std::string eval_summary_line(const eval::EvalResult& r, const eval::EvalOptions& o);

// The results-file object of one evaluation: mode label, compliance, settings and sums.
json eval_result_json(const eval::EvalResult& r, const eval::EvalOptions& o);

}  // namespace pgolf::cli
