#pragma once
// The export stage (SPEC 5): every parameter quantised by its SPEC 5.1 treatment (full GPTQ
// with Hessians from calibration forwards when configured), the container compressed, the
// evaluator's source bundle counted, ±1 entries pruned when the total would exceed the budget;
// and the way back, from an artifact to the exact dequantised weights in the table's layout.
#include <cstdint>
#include <cstdio>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "backend/ops.hpp"
#include "common/files.hpp"
#include "common/json.hpp"
#include "config/config.hpp"
#include "export/artifact.hpp"
#include "export/calibration.hpp"
#include "export/quantized_tensor.hpp"
#include "model/params.hpp"

namespace pgolf::exporter {

// Calibration for full GPTQ: a model holding `weights` runs export.gptq.calibration_batches
// sequences of model.seq_len tokens, taken from the train stream (`train_tokens(n)` returns
// the next n tokens) or sampled from the model itself; returns each int6 matrix's Hessian.
using TokenSource = std::function<std::vector<std::uint16_t>(std::int64_t count)>;
Hessians calibrate(const config::Config& c, std::span<const float> weights, backend::Ops<float>& ops,
                   const TokenSource& train_tokens, std::FILE* log);
// What calibrate() allocates on `ops` (its inference model and the Hessian accumulators), for
// memory plans; zero unless export.int6_method is gptq.
std::uint64_t calibration_bytes(const config::Config& c, backend::Ops<float>& ops);

// Each tensor of the table by its treatment. Full GPTQ needs a Hessian for every int6 matrix.
std::vector<QuantizedTensor> quantize_params(const model::ParamTable& table, std::span<const float> weights,
                                             const config::ExportConfig& e, const Hessians* hessians, std::FILE* log);

struct PruneStats {
  std::int64_t candidates = 0;  // quantised entries equal to +-1
  std::int64_t zeroed = 0;      // of which set to 0
  int compressions = 0;         // artifact sizes tried
};

struct Packed {
  std::vector<std::byte> bytes;  // the artifact file
  ArtifactSizes sizes;
  PruneStats prune;
  double compress_s = 0.0;
};

// Container -> compressed blob -> artifact with the code bundle. When the total exceeds
// export.budget_bytes and export.prune_to_budget is on, zeroes the +-1 entries with the
// smallest s_r^2 in `tensors` (ties: table order, then position), as few as needed; an artifact
// that still does not fit, or any over-budget artifact without pruning, is Error(over_budget)
// naming the sizes and export.budget_bytes.
Packed pack_artifact(std::vector<QuantizedTensor>& tensors, const json& metadata, const config::ExportConfig& e,
                     std::span<const std::byte> code_bundle, std::FILE* log);

// The metadata an artifact carries: format, the model config (the architecture to rebuild),
// the config name, the export settings and what the caller adds.
json artifact_metadata(const config::Config& c, const json& extra);

// Error(config) naming every model-config key where `c` differs from the model the artifact
// was packed with; with allow_mismatch a warning on `log` instead.
void check_artifact_model(const Container& container, const config::Config& c, const std::string& origin,
                          bool allow_mismatch = false, std::FILE* log = stderr);

// The dequantised weights (q * s, exactly) in the table's layout; Error(format) naming the
// artifact and each missing, extra or reshaped tensor.
std::vector<float> unpack_weights(const Container& container, const model::ParamTable& table,
                                  const std::string& origin);

// Per-scheme counts and sizes, for logs and results.json.
json tensor_summary(const std::vector<QuantizedTensor>& tensors);

// The whole export stage as `pgolf pack` and `pgolf run` use it: calibrate (full GPTQ),
// quantise, pack (pruning if allowed), write `out` atomically, then read the file back and
// check that it restores exactly the dequantised weights.
struct ExportRequest {
  const config::Config* config = nullptr;
  std::span<const float> weights;      // the parameter table's layout
  backend::Ops<float>* ops = nullptr;  // for calibration forwards
  TokenSource train_tokens;            // next train-stream tokens (full GPTQ, train calibration)
  fs::path source_dir;                 // the evaluator's sources (export.count_code)
  json metadata_extra = json::object();
  fs::path out;
};
struct ExportResult {
  ArtifactSizes sizes;
  PruneStats prune;
  json summary;                 // tensor_summary of what was stored
  std::vector<float> weights;   // dequantised, as read back from the file
  double quantize_mse = 0.0;    // mean squared error of the dequantised weights
  double calibrate_s = 0.0, quantize_s = 0.0, compress_s = 0.0;
  json to_json(std::int64_t budget) const;
};
ExportResult export_model(const ExportRequest& request, std::FILE* log);

}  // namespace pgolf::exporter
