#pragma once
// What the commands that build a model from a config share: --config and --set, the compute
// backend and the CPU thread count, and the export report.
#include <string>
#include <vector>

#include "config/config_loader.hpp"
#include "export/pack.hpp"

namespace CLI {
class App;
}

namespace pgolf::cli {

struct ConfigArgs {
  std::string config;
  std::vector<std::string> sets;
  int threads = -1;  // -1: the config's value
};

void add_config_options(CLI::App* cmd, ConfigArgs& args, bool config_required);
config::LoadedConfig load_config_args(const ConfigArgs& args);

// Chooses the backend for a command: the CPU reference (the only model backend built so
// far). A config that asks for "cuda" is an Error(device) saying so. Sets the CPU threads
// and prints one line describing the choice to stderr.
void select_cpu_backend(const config::Config& c);

// Prints an export's sizes against the budget, its treatment per scheme and its timings.
void print_export_result(const exporter::ExportResult& r, const config::ExportConfig& e, const std::string& path);

}  // namespace pgolf::cli
