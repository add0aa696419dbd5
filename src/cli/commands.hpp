#pragma once
// Each subcommand registers itself on the CLI11 app; its callback does the work and
// reports failure by throwing pgolf::Error (main turns that into a message and exit code).
namespace CLI {
class App;
}

namespace pgolf::cli {

void register_prepare(CLI::App& app);
void register_inspect(CLI::App& app);
void register_model_commands(CLI::App& app);  // init, eval, bench

}  // namespace pgolf::cli
