#include "cli/model_args.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>

#include "backend/cpu/cpu_ops.hpp"
#include "common/error.hpp"

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

}  // namespace pgolf::cli
