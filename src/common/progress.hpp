#pragma once
// Progress reporting for long work. On a terminal it redraws one status line; otherwise
// it prints a plain line at most every `interval` seconds, so logs stay readable.
#include <chrono>
#include <cstdio>
#include <string>

namespace pgolf {

class Progress {
 public:
  explicit Progress(std::string label, double interval_s = 2.0, std::FILE* out = stderr);
  // Call as often as convenient; prints only when the interval has elapsed.
  void update(const std::string& status);
  // Prints the final status unconditionally and ends the live line.
  void finish(const std::string& status);
  double elapsed_s() const;

 private:
  std::string label_;
  double interval_s_;
  std::FILE* out_;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_;
  bool printed_live_ = false;
};

}  // namespace pgolf
