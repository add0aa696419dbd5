// pgolf pack: a full-precision checkpoint -> the quantised, compressed artifact of SPEC 5.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>

#include "cli/cli_checks.hpp"
#include "cli/commands.hpp"
#include "cli/model_args.hpp"
#include "common/error.hpp"
#include "common/json.hpp"
#include "common/strings.hpp"
#include "common/version.hpp"
#include "data/manifest.hpp"
#include "export/code_bundle.hpp"
#include "export/pack.hpp"
#include "model/params.hpp"
#include "train/loader.hpp"

namespace pgolf::cli {

namespace {

struct PackOptions {
  ConfigArgs cfg;
  std::string checkpoint;
  std::string out;
  std::string source_dir;
  std::string results;
  bool allow_config_mismatch = false;
};

void run_pack(const PackOptions& o) {
  auto loaded = load_config_args(o.cfg);
  const config::Config& c = loaded.config;
  check_output_file("--out", o.out);
  if (!o.results.empty()) check_output_file("--results", o.results);
  const std::unique_ptr<backend::Ops<float>> backend_ops = make_backend(c);
  backend::Ops<float>& ops = *backend_ops;
  model::ParamTable table(c.model);
  if (const std::uint64_t calibration = exporter::calibration_bytes(c, ops); calibration > 0) {
    backend::MemoryPlan plan;
    plan.add("GPTQ calibration (model and Hessians)", calibration);
    std::fprintf(stderr, "%s\n",
                 backend::check_memory_plan(plan, ops, "export.gptq.calibration_batches, eval.batch_windows or the model "
                                                       "size (model.*)")
                     .c_str());
  }
  const std::vector<float> weights =
      model::load_checkpoint(o.checkpoint, table, {&c.model, o.allow_config_mismatch, stderr});

  std::unique_ptr<train::TrainLoader> loader;
  exporter::ExportRequest req;
  req.config = &c;
  req.weights = weights;
  req.ops = &ops;
  // Calibration from the train stream starts at its beginning (pgolf run continues where
  // training stopped instead).
  req.train_tokens = [&](std::int64_t n) {
    if (!loader) {
      data::check_shard_tokenizer(c.data.train_files, c.data.tokenizer, "data.train_files");
      loader = std::make_unique<train::TrainLoader>(c.data.train_files, c.model.vocab_size);
    }
    std::vector<std::uint16_t> out;
    loader->take(n, out);
    return out;
  };
  req.source_dir = o.source_dir.empty() ? exporter::default_source_dir() : fs::path(o.source_dir);
  req.metadata_extra = {{"checkpoint", fs::path(o.checkpoint).filename().string()},
                        {"pgolf_version", std::string(build_info().version)},
                        {"pgolf_git", std::string(build_info().git_hash)}};
  req.out = o.out;
  const exporter::ExportResult r = exporter::export_model(req, stderr);
  print_export_result(r, c.export_, o.out);
  if (!o.results.empty()) {
    json out = {{"pgolf", {{"version", build_info().version}, {"git", build_info().git_hash}}},
                {"checkpoint", o.checkpoint},
                {"artifact", o.out},
                {"export", r.to_json(c.export_.budget_bytes)},
                {"config", config::to_json(c)}};
    try {
      write_file_atomic(o.results, dump_json(out, 2) + "\n");
    } catch (...) {  // a failed pack leaves no artifact behind
      std::error_code ec;
      fs::remove(o.out, ec);
      throw;
    }
  }
}

}  // namespace

void register_export_commands(CLI::App& app) {
  auto o = std::make_shared<PackOptions>();
  CLI::App* pack = app.add_subcommand(
      "pack", "Quantise a checkpoint (int6 GPTQ-lite / full GPTQ, int8, fp16) and pack the artifact (SPEC 5)");
  add_config_options(pack, o->cfg, false);
  pack->add_option("--checkpoint", o->checkpoint, "Full-precision weights (.safetensors, SPEC 3.1 names)")
      ->required()
      ->check(CLI::ExistingFile);
  pack->add_option("-o,--out", o->out, "The artifact to write")->required();
  pack->add_option("--source-dir", o->source_dir,
                   "pgolf source tree whose evaluator sources are counted (default: the tree this binary was built from)")
      ->check(CLI::ExistingDirectory);
  pack->add_option("--results", o->results, "Also write the export report as JSON");
  add_allow_config_mismatch(pack, o->allow_config_mismatch);
  pack->footer(
      "The export section of the config chooses everything: export.int6_method (gptq_lite | gptq, with "
      "export.gptq.calibration = train | generated), export.compressor (lzma | brotli), export.byte_shuffle_stride, "
      "export.count_code, export.budget_bytes and export.prune_to_budget. A pack over the budget fails with exit 9 "
      "unless pruning is on. Full GPTQ calibrates on the train stream from its start.");
  pack->callback([o] { run_pack(*o); });
}

}  // namespace pgolf::cli
