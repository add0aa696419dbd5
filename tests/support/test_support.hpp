#pragma once
// Helpers shared by the test suite: temporary directories, running the pgolf binary as a
// user would, and paths to the bundled data.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "common/error.hpp"

namespace pgolf::test {

// Runs `action`, expects Error(kind) and that its message contains every fragment (a gtest
// failure otherwise, naming what is missing).
void expect_error(const std::function<void()>& action, ErrorKind kind, const std::vector<std::string>& fragments);

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

struct RunResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// The pgolf binary the tests run: the one built with them, or $PGOLF_TEST_BINARY (to show that
// a new test fails on an older build).
fs::path pgolf_binary();
// Runs the pgolf binary with `args` (no shell interpretation of the arguments).
RunResult run_pgolf(const std::vector<std::string>& args, const fs::path& cwd = {});
// Runs another program (pgolf-emu, say) with `args`; `env` entries ("NAME=value") come
// before the inherited environment, so they win.
RunResult run_program(const fs::path& binary, const std::vector<std::string>& args,
                      const std::vector<std::string>& env = {});

// A pgolf process running in the background (stdout/stderr to files in a temp dir).
class PgolfProcess {
 public:
  explicit PgolfProcess(const std::vector<std::string>& args);
  ~PgolfProcess();
  void signal(int sig);
  RunResult wait();  // waits for exit and collects output
  int pid() const { return pid_; }

 private:
  TempDir io_;
  int pid_ = -1;
  bool waited_ = false;
};

// The source tree (configs/, data/, tests/reference/): the one the tests were built from, or
// $PGOLF_TEST_SOURCE_DIR (the device bundle's copy, scripts/device_bundle.sh).
fs::path source_dir();
fs::path bundled(const std::string& relative);  // source_dir()/data/relative
void write_bytes(const fs::path& path, const std::string& bytes);
std::string read_bytes(const fs::path& path);

// Changes the working directory for the lifetime of the object.
class ScopedCwd {
 public:
  explicit ScopedCwd(const fs::path& dir);
  ~ScopedCwd();

 private:
  fs::path previous_;
};

}  // namespace pgolf::test
