#include "cli/cli_checks.hpp"
#include "cli/model_args.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>

#include "backend/cpu/cpu_ops.hpp"
#include "backend/cuda/cuda_backend.hpp"
#include "backend/device_choice.hpp"
#include "common/error.hpp"
#include "common/strings.hpp"
#include "export/artifact.hpp"
#include "model/params.hpp"

namespace pgolf::cli {

void add_config_options(CLI::App* cmd, ConfigArgs& args, bool config_required) {
  auto* opt = cmd->add_option("-c,--config", args.config, "Config JSON (see configs/; omit for the #549 defaults)")
                  ->check(CLI::ExistingFile);
  if (config_required) opt->required();
  cmd->add_option("--set", args.sets, "Override a config value: PATH=VALUE (repeatable)")->allow_extra_args(false);
  cmd->add_option("--threads", args.threads, "CPU threads (default: the config's threads; 0 = all cores)")
      ->check(whole_number(0));
  cmd->add_flag("-v,--verbose", args.verbose, "Print the parameter and activation-arena tables at start-up");
}

void add_allow_config_mismatch(CLI::App* cmd, bool& flag) {
  cmd->add_flag("--allow-config-mismatch", flag,
                "Use the config's model section even where the weights were trained or packed with other values "
                "(a warning lists the keys; without it that is exit 3)");
}

config::LoadedConfig load_config_args(const ConfigArgs& args) {
  std::optional<std::filesystem::path> file;
  if (!args.config.empty()) file = args.config;
  auto loaded = config::load_config(file, args.sets);
  if (args.threads >= 0) loaded.config.threads = args.threads;
  return loaded;
}

std::unique_ptr<backend::Ops<float>> make_backend(const config::Config& c) {
  backend::require_single_process(backend::process_environment());
  backend::set_cpu_threads(static_cast<int>(c.threads));  // host-side work uses them on either backend
  const backend::CudaBackendInfo& cuda = backend::cuda_backend_info();
  if (c.backend == config::Backend::cuda && !cuda.usable)
    fail(ErrorKind::device, "backend: the config asks for \"cuda\", but ", cuda.why_not,
         "; use backend \"auto\" or \"cpu\" (--set backend=cpu)");
  if (c.backend != config::Backend::cpu && cuda.usable) {
    std::unique_ptr<backend::Ops<float>> ops = backend::make_cuda_ops();
    std::fprintf(stderr, "backend: %s\n", ops->name().c_str());
    return ops;
  }
  std::fprintf(stderr, "backend: cpu reference (OpenMP + OpenBLAS), %d threads%s\n", backend::cpu_threads(),
               c.backend == config::Backend::automatic && cuda.compiled ? cat(" (auto: ", cuda.why_not, ")").c_str()
                                                                         : "");
  return std::make_unique<backend::CpuOps<float>>();
}

void check_model_memory(backend::Ops<float>& ops, const config::ModelConfig& m, int batch, int seq, model::ModelMode mode,
                        const std::vector<backend::MemoryPlan::Part>& extra, const std::string& knobs) {
  check_memory(ops, model::memory_plan(model::Model<float>::plan(m, ops, batch, seq, mode), extra), knobs);
}

void check_memory(backend::Ops<float>& ops, const backend::MemoryPlan& plan, const std::string& knobs) {
  std::fprintf(stderr, "%s\n", backend::check_memory_plan(plan, ops, knobs).c_str());
}

void print_model_layout(const model::Model<float>& net, bool verbose, const char* tables_hint) {
  std::fprintf(stderr, "%s%s\n", net.layout_summary().c_str(), verbose ? "" : cat(" (", tables_hint, ")").c_str());
  if (verbose) net.print_layout(stderr, true);
}

void print_export_result(const exporter::ExportResult& r, const config::ExportConfig& e, const std::string& path) {
  const auto total = r.sizes.total();
  std::printf("artifact %s: %s bytes = model %s + code %s + header %llu; budget %s: %s\n", path.c_str(),
              with_commas(total).c_str(), with_commas(r.sizes.model).c_str(), with_commas(r.sizes.code).c_str(),
              static_cast<unsigned long long>(r.sizes.header), with_commas(static_cast<std::uint64_t>(e.budget_bytes)).c_str(),
              static_cast<std::int64_t>(total) <= e.budget_bytes
                  ? cat("fits, ", with_commas(static_cast<std::uint64_t>(e.budget_bytes) - total), " bytes to spare").c_str()
                  : "OVER");
  std::printf("  container %s bytes before %s; ", with_commas(r.sizes.container_raw).c_str(),
              e.compressor == config::Compressor::lzma ? cat("xz preset ", e.lzma_preset).c_str()
                                                       : cat("brotli-", e.brotli_quality).c_str());
  bool first = true;
  for (const auto& [scheme, s] : r.summary.items()) {
    std::printf("%s%s %lld tensors (%s values)", first ? "" : ", ", scheme.c_str(),
                static_cast<long long>(s["tensors"].get<std::int64_t>()),
                with_commas(s["values"].get<std::uint64_t>()).c_str());
    first = false;
  }
  std::printf("\n  weight mse %.3g; %s", r.quantize_mse,
              r.prune.zeroed > 0 ? cat("pruned ", with_commas(static_cast<std::uint64_t>(r.prune.zeroed)), " of ",
                                       with_commas(static_cast<std::uint64_t>(r.prune.candidates)), " +-1 entries; ").c_str()
                                 : "");
  if (r.calibrate_s > 0) std::printf("calibration %.1f s, ", r.calibrate_s);
  std::printf("quantisation %.1f s, compression %.1f s (%d tries)\n", r.quantize_s, r.compress_s, r.prune.compressions);
}

std::vector<float> load_eval_weights(const config::Config& c, const std::string& checkpoint, const std::string& artifact,
                                     bool allow_config_mismatch) {
  model::ParamTable table(c.model);
  if (artifact.empty()) return model::load_checkpoint(checkpoint, table, {&c.model, allow_config_mismatch, stderr});
  // The exact dequantised weights q * s the artifact stands for.
  const exporter::Artifact a = exporter::read_artifact_file(artifact);
  exporter::check_artifact_model(a.container, c, artifact, allow_config_mismatch, stderr);
  std::fprintf(stderr, "artifact: %s bytes (model %s + code %s + header %llu)\n", with_commas(a.sizes.total()).c_str(),
               with_commas(a.sizes.model).c_str(), with_commas(a.sizes.code).c_str(),
               static_cast<unsigned long long>(a.sizes.header));
  return exporter::unpack_weights(a.container, table, artifact);
}

eval::EvalOptions eval_options_for(const config::Config& c, const std::string& mode, int stride, int batch_windows) {
  eval::EvalOptions o = eval::eval_options(c);
  if (mode == "nonoverlap") {
    o.mode = eval::Mode::nonoverlap;
  } else if (mode == "sliding") {
    o.mode = eval::Mode::sliding;
  } else if (!mode.empty()) {
    fail(ErrorKind::usage, "--mode ", mode, ": expected nonoverlap or sliding");
  }
  if (stride > 0) o.stride = stride;
  if (o.mode == eval::Mode::sliding && o.stride > c.model.seq_len)
    fail(ErrorKind::usage, stride > 0 ? "--stride " : "eval.stride: ", o.stride, " exceeds the window model.seq_len = ",
         c.model.seq_len);
  if (batch_windows > 0) o.batch_windows = batch_windows;
  return o;
}

std::string eval_summary_line(const eval::EvalResult& r, const eval::EvalOptions& o) {
  return cat("val_loss ", fixed(r.val_loss, 6), " val_bpb ", fixed(r.val_bpb, 6), " scored ", r.scored, "/",
             r.targets, " (",
             r.mode, o.mode == eval::Mode::sliding ? cat(", stride ", o.stride) : std::string(), ", ", r.windows,
             " windows", o.ttt.enabled ? cat(", ", r.chunks, " TTT chunks") : std::string(), ", ", fixed(r.seconds, 1),
             " s)", r.compliant ? std::string() : " NON-COMPLIANT (SPEC 7: see docs/eval.md)");
}

json eval_result_json(const eval::EvalResult& r, const eval::EvalOptions& o) {
  json j = {{"mode", r.mode},
            {"compliant", r.compliant},
            {"stride", o.mode == eval::Mode::sliding ? o.stride : 0},
            {"tail", o.record_rescore ? "record_rescore" : "exactly_once"},
            {"batch_windows", o.batch_windows},
            {"val_loss", r.val_loss},
            {"val_bpb", r.val_bpb},
            {"scored", r.scored},
            {"targets", r.targets},
            {"bytes", r.bytes},
            {"windows", r.windows},
            {"seconds", r.seconds},
            {"tokens_per_s", r.tokens_per_s}};
  if (o.wallclock_budget_s > 0) {
    j["wallclock_budget_s"] = o.wallclock_budget_s;
    j["within_wallclock_budget"] = r.seconds <= o.wallclock_budget_s;
  }
  if (o.ttt.enabled)
    j["ttt"] = {{"chunks", r.chunks},       {"chunk_tokens", o.ttt.chunk_tokens}, {"epochs", o.ttt.epochs},
                {"lr", o.ttt.lr},           {"batch_seqs", o.ttt.batch_seqs},     {"momentum", o.ttt.momentum},
                {"grad_clip", o.ttt.grad_clip}, {"freeze_blocks", o.ttt.freeze_blocks}, {"steps", r.ttt_steps},
                {"seconds", r.ttt_seconds}};
  if (o.slot.variant != config::SlotVariant::none)
    j["slot"] = {{"variant", config::enum_name(o.slot.variant)}, {"placement", config::enum_name(o.slot.placement)},
                 {"lr", o.slot.lr}, {"steps", o.slot.steps}, {"beta1", o.slot.beta1}, {"beta2", o.slot.beta2},
                 {"eps", o.slot.eps}, {"weight_decay", o.slot.weight_decay}};
  return j;
}

}  // namespace pgolf::cli
