// pgolf: one binary for a whole Parameter Golf record attempt.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <filesystem>
#include <new>
#include <string>
#include <thread>

#include "backend/cuda/cuda_backend.hpp"
#include "cli/commands.hpp"
#include "common/error.hpp"
#include "common/version.hpp"

namespace {

void print_version() {
  const pgolf::BuildInfo& b = pgolf::build_info();
  const pgolf::backend::CudaBackendInfo& cuda = pgolf::backend::cuda_backend_info();
  std::string backends = "cpu";
  if (cuda.compiled) backends += pgolf::cat(", cuda (", cuda.build, ")");
  std::printf("%s", pgolf::cat("pgolf ", b.version, " (git ", b.git_hash, ", ", b.build_type, " build, ", b.cxx_compiler,
                               ", C++20)\nbackends compiled in: ", backends, "\nlibraries: sentencepiece ",
                               b.sentencepiece, ", liblzma ", b.lzma, ", brotli ", b.brotli, "\n")
                        .c_str());
  std::printf("cpu: %u hardware threads (reference backend)\n", std::thread::hardware_concurrency());
  for (const auto& line : pgolf::backend::cuda_report_lines()) std::printf("%s\n", line.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pgolf: train, quantize, pack and evaluate OpenAI Parameter Golf models from one JSON config",
               "pgolf"};
  app.require_subcommand(0, 1);
  app.footer("Run 'pgolf COMMAND --help' for a command's options. Exit codes: 0 ok, 1 internal, 2 usage, "
             "3 config, 4 data, 5 format, 6 I/O, 7 device, 8 diverged, 9 over budget, 10 audit violation, 128+signal interrupted.");
  bool version = false;
  app.add_flag("--version", version, "Print the version, git hash, compiled-in backends and devices");
  pgolf::cli::register_prepare(app);
  pgolf::cli::register_inspect(app);
  pgolf::cli::register_run(app);
  pgolf::cli::register_model_commands(app);
  pgolf::cli::register_export_commands(app);
  pgolf::cli::register_audit(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return pgolf::exit_code(pgolf::ErrorKind::usage);
  } catch (const pgolf::cli::Interrupted& e) {
    return e.exit_code();
  } catch (const pgolf::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "pgolf: %s: %s\n", pgolf::kind_name(e.kind()), e.what());
    return pgolf::exit_code(e.kind());
  } catch (const std::filesystem::filesystem_error& e) {
    // A filesystem call without its own error handling: still an I/O error naming the path
    // and the OS reason, not an internal one.
    std::fflush(stdout);
    std::string paths = e.path1().string();
    if (!e.path2().empty()) paths += pgolf::cat(" -> ", e.path2().string());
    std::fprintf(stderr, "pgolf: %s: %s: %s\n", pgolf::kind_name(pgolf::ErrorKind::io),
                 paths.empty() ? "filesystem" : paths.c_str(), e.code().message().c_str());
    return pgolf::exit_code(pgolf::ErrorKind::io);
  } catch (const std::bad_alloc&) {
    std::fflush(stdout);
    std::fprintf(stderr, "pgolf: internal error: out of host memory (std::bad_alloc) beyond the memory plan printed at "
                         "start-up; lower train.batch_tokens, eval.batch_windows or the model size\n");
    return pgolf::exit_code(pgolf::ErrorKind::internal);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "pgolf: internal error: %s\n", e.what());
    return pgolf::exit_code(pgolf::ErrorKind::internal);
  }
  if (version) {
    print_version();
    return 0;
  }
  if (app.get_subcommands().empty()) {
    std::fprintf(stderr, "%s", app.help().c_str());
    return pgolf::exit_code(pgolf::ErrorKind::usage);
  }
  return 0;
}
