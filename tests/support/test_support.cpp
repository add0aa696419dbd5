#include "support/test_support.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>

#include <csignal>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <fstream>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace pgolf::test {

void expect_error(const std::function<void()>& action, ErrorKind kind, const std::vector<std::string>& fragments) {
  try {
    action();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    for (const auto& f : fragments)
      EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << "missing \"" << f << "\" in: " << e.what();
    return;
  }
  ADD_FAILURE() << "expected an error mentioning " << (fragments.empty() ? "" : fragments[0]);
}

TempDir::TempDir() {
  std::string pattern = (fs::temp_directory_path() / "pgolf-test-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

fs::path source_dir() {
  const char* other = std::getenv("PGOLF_TEST_SOURCE_DIR");
  return other != nullptr && *other != '\0' ? fs::path(other) : fs::path(PGOLF_SOURCE_DIR);
}

fs::path pgolf_binary() {
  const char* other = std::getenv("PGOLF_TEST_BINARY");
  return other != nullptr && *other != '\0' ? fs::path(other) : fs::path(PGOLF_BINARY);
}
fs::path bundled(const std::string& relative) { return source_dir() / "data" / relative; }

void write_bytes(const fs::path& path, const std::string& bytes) {
  if (path.has_parent_path()) fs::create_directories(path.parent_path());
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path.string());
}

std::string read_bytes(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

namespace {

pid_t spawn(const fs::path& binary, const std::vector<std::string>& args, const std::vector<std::string>& env,
            const fs::path& out, const fs::path& err) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<std::string> argv_storage{binary.string()};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_storage = env;
  for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
  std::vector<char*> envp;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start " + binary.string());
  return pid;
}

pid_t spawn_pgolf(const std::vector<std::string>& args, const fs::path& out, const fs::path& err) {
  return spawn(pgolf_binary(), args, {}, out, err);
}

RunResult collect(pid_t pid, const fs::path& out, const fs::path& err) {
  RunResult r;
  int status = 0;
  waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_bytes(out);
  r.err = read_bytes(err);
  return r;
}

}  // namespace

PgolfProcess::PgolfProcess(const std::vector<std::string>& args) {
  pid_ = spawn_pgolf(args, io_ / "stdout", io_ / "stderr");
}

PgolfProcess::~PgolfProcess() {
  if (!waited_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
}

void PgolfProcess::signal(int sig) { ::kill(pid_, sig); }

RunResult PgolfProcess::wait() {
  waited_ = true;
  return collect(pid_, io_ / "stdout", io_ / "stderr");
}

RunResult run_pgolf(const std::vector<std::string>& args, const fs::path& cwd) {
  TempDir io;
  pid_t pid;
  {
    std::unique_ptr<ScopedCwd> in_dir;
    if (!cwd.empty()) in_dir = std::make_unique<ScopedCwd>(cwd);
    pid = spawn_pgolf(args, io / "stdout", io / "stderr");
  }
  return collect(pid, io / "stdout", io / "stderr");
}

RunResult run_program(const fs::path& binary, const std::vector<std::string>& args, const std::vector<std::string>& env) {
  TempDir io;
  return collect(spawn(binary, args, env, io / "stdout", io / "stderr"), io / "stdout", io / "stderr");
}

ScopedCwd::ScopedCwd(const fs::path& dir) : previous_(fs::current_path()) { fs::current_path(dir); }
ScopedCwd::~ScopedCwd() {
  std::error_code ec;
  fs::current_path(previous_, ec);
}

}  // namespace pgolf::test
