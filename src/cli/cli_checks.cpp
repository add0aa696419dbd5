#include "cli/cli_checks.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>

#include "common/error.hpp"

namespace pgolf::cli {

CLI::Validator whole_number(std::int64_t min, std::int64_t max) {
  const bool open_ended = max == INT32_MAX || max == INT64_MAX;  // the type's limit, not a real bound
  const std::string desc = open_ended ? cat("a whole number >= ", min) : cat("a whole number from ", min, " to ", max);
  return CLI::Validator(
      [min, max, desc](std::string& value) -> std::string {
        std::int64_t v = 0;
        const char* end = value.data() + value.size();
        const auto [ptr, ec] = std::from_chars(value.data(), end, v);
        if (ec == std::errc::result_out_of_range || (ec == std::errc() && ptr == end && v > max))
          return cat(value, " is too large (at most ", max, ")");
        if (ec != std::errc() || ptr != end) return cat("\"", value, "\" is not ", desc);
        if (v < min) return cat(value, " is too small; expected ", desc);
        return {};
      },
      desc, "WHOLE_NUMBER");
}

namespace {

// The nearest existing ancestor of `p` (p itself when it exists).
fs::path existing_ancestor(const fs::path& p) {
  fs::path at = fs::absolute(p);
  std::error_code ec;
  while (!at.empty() && !fs::exists(at, ec)) {
    if (at == at.parent_path()) break;
    at = at.parent_path();
  }
  return at;
}

[[noreturn]] void not_writable(const std::string& flag, const fs::path& path, const fs::path& at, const std::string& why) {
  fail(ErrorKind::io, flag, " ", path.string(), ": cannot be written", at == fs::absolute(path) ? "" : cat(" (", at.string(), ")"),
       ": ", why);
}

// Creates and removes a probe file in the nearest existing ancestor of `dir`: permission bits
// say nothing for root, and read-only mounts or full quotas only show when a file is created.
void check_directory_writable(const std::string& flag, const fs::path& path, const fs::path& dir) {
  const fs::path at = existing_ancestor(dir);
  std::error_code ec;
  if (!fs::is_directory(at, ec)) not_writable(flag, path, at, std::strerror(ENOTDIR));
  const fs::path probe = at / cat(".pgolf-write-probe-", ::getpid());
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) not_writable(flag, path, at, std::strerror(errno));
  ::close(fd);
  ::unlink(probe.c_str());
}

}  // namespace

void check_output_file(const std::string& flag, const fs::path& path) {
  std::error_code ec;
  const fs::path abs = fs::absolute(path);
  if (fs::is_directory(abs, ec)) not_writable(flag, path, abs, std::strerror(EISDIR));
  // Outputs are replaced atomically (a temporary file renamed over them), so what must be
  // writable is the directory.
  check_directory_writable(flag, path, abs.parent_path());
}

void check_output_dir(const std::string& flag, const fs::path& dir) {
  std::error_code ec;
  const fs::path abs = fs::absolute(dir);
  if (fs::exists(abs, ec) && !fs::is_directory(abs, ec)) not_writable(flag, dir, abs, std::strerror(ENOTDIR));
  check_directory_writable(flag, dir, abs);
}

}  // namespace pgolf::cli
