#pragma once
// Checks the commands apply to their arguments before any long work starts: numeric ranges
// stated readably (CLI11's own range validators print the largest double in full), and output
// paths that must be writable, so a typo costs a second instead of a finished training run.
#include <CLI/CLI.hpp>

#include <climits>
#include <cstdint>
#include <string>

#include "common/files.hpp"

namespace pgolf::cli {

// A whole number in [min, max] (max defaults to the range of an int option), with messages that
// state the range: rejects non-numbers, fractions and values out of range.
CLI::Validator whole_number(std::int64_t min, std::int64_t max = INT32_MAX);

// Error(io) naming `flag`, the path and the OS reason unless `path` can be created or replaced
// as a file: its directory exists (or can be created below an existing writable one) and is
// writable (a file is created there as a probe), and the path itself is not a directory.
void check_output_file(const std::string& flag, const fs::path& path);
// The same for a directory that a command writes into (created when missing).
void check_output_dir(const std::string& flag, const fs::path& dir);

}  // namespace pgolf::cli
