#pragma once
// Each subcommand registers itself on the CLI11 app; its callback does the work and
// reports failure by throwing pgolf::Error (main turns that into a message and exit code).
namespace CLI {
class App;
}

#include <exception>

namespace pgolf::cli {

// Thrown by a command that stopped on a signal after saving its state; the process exits
// with 128 + the signal number (130 for SIGINT, 143 for SIGTERM), as shells expect.
class Interrupted : public std::exception {
 public:
  explicit Interrupted(int signal_number) : signal_(signal_number) {}
  const char* what() const noexcept override { return "interrupted"; }
  int exit_code() const { return 128 + signal_; }

 private:
  int signal_;
};

void register_prepare(CLI::App& app);
void register_inspect(CLI::App& app);
void register_model_commands(CLI::App& app);  // init, eval, bench
void register_run(CLI::App& app);
void register_export_commands(CLI::App& app);  // pack
void register_audit(CLI::App& app);

}  // namespace pgolf::cli
