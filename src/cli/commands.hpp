#pragma once
// Each subcommand registers itself on the CLI11 app; its callback does the work and
// reports failure by throwing pgolf::Error (main turns that into a message and exit code).
namespace CLI {
class App;
}

#include <exception>

namespace pgolf::cli {

// Thrown by a command that stopped on SIGINT/SIGTERM after saving its state; exit code 130.
class Interrupted : public std::exception {
 public:
  const char* what() const noexcept override { return "interrupted"; }
};

void register_prepare(CLI::App& app);
void register_inspect(CLI::App& app);
void register_model_commands(CLI::App& app);  // init, eval, bench
void register_run(CLI::App& app);

}  // namespace pgolf::cli
