#include "cli/model_args.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>

#include "backend/cpu/cpu_ops.hpp"
#include "common/error.hpp"
#include "common/strings.hpp"

namespace pgolf::cli {

void add_config_options(CLI::App* cmd, ConfigArgs& args, bool config_required) {
  auto* opt = cmd->add_option("-c,--config", args.config, "Config JSON (see configs/; omit for the #549 defaults)")
                  ->check(CLI::ExistingFile);
  if (config_required) opt->required();
  cmd->add_option("--set", args.sets, "Override a config value: PATH=VALUE (repeatable)")->allow_extra_args(false);
  cmd->add_option("--threads", args.threads, "CPU threads (default: the config's threads; 0 = all cores)")
      ->check(CLI::NonNegativeNumber);
}

config::LoadedConfig load_config_args(const ConfigArgs& args) {
  std::optional<std::filesystem::path> file;
  if (!args.config.empty()) file = args.config;
  auto loaded = config::load_config(file, args.sets);
  if (args.threads >= 0) loaded.config.threads = args.threads;
  return loaded;
}

void select_cpu_backend(const config::Config& c) {
  if (c.backend == config::Backend::cuda)
    fail(ErrorKind::device, "backend: the config asks for \"cuda\", but the CUDA model backend is not built yet; "
                            "use backend \"auto\" or \"cpu\" (--set backend=cpu)");
  backend::set_cpu_threads(static_cast<int>(c.threads));
  std::fprintf(stderr, "backend: cpu reference (OpenMP + OpenBLAS), %d threads\n", backend::cpu_threads());
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

}  // namespace pgolf::cli
