#pragma once
// One exception type for every user-facing failure. Its kind selects the process exit
// code, so scripts and tests can tell a bad config from a bad shard without parsing text.
// Messages always start with the thing at fault (file path, JSON path or argument).
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace pgolf {

enum class ErrorKind : int {
  internal = 1,  // a bug or an unexpected system failure
  usage = 2,     // bad command line
  config = 3,    // a config file, key or value
  data = 4,      // token shards, tokenizers, text inputs
  format = 5,    // checkpoints and other binary containers
  io = 6,        // cannot open, read, write or rename a file
  device = 7,    // a required accelerator is missing
  diverged = 8,  // training produced a non-finite loss
  over_budget = 9,  // the artifact exceeds the byte budget (SPEC 5.3)
  audit_failed = 10,  // the legality audit found a violation (SPEC 7)
};

int exit_code(ErrorKind kind);
const char* kind_name(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string message) : std::runtime_error(std::move(message)), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// Concatenates its arguments with operator<<; keeps error sites on one line.
template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

template <class... Args>
[[noreturn]] void fail(ErrorKind kind, const Args&... args) {
  throw Error(kind, cat(args...));
}

}  // namespace pgolf
