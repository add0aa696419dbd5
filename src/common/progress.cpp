#include "common/progress.hpp"

#include <unistd.h>

#include <utility>

namespace pgolf {

Progress::Progress(std::string label, double interval_s, std::FILE* out)
    : label_(std::move(label)), interval_s_(interval_s), out_(out), tty_(::isatty(::fileno(out)) != 0),
      start_(std::chrono::steady_clock::now()), last_(start_) {}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(const std::string& status) {
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_).count();
  // A terminal gets a faster, redrawn line; a log file gets sparse full lines.
  if (since < (tty_ ? 0.25 : interval_s_)) return;
  last_ = now;
  if (tty_) {
    std::fprintf(out_, "\r\033[K%s: %s", label_.c_str(), status.c_str());
    printed_live_ = true;
  } else {
    std::fprintf(out_, "%s: %s\n", label_.c_str(), status.c_str());
  }
  std::fflush(out_);
}

void Progress::finish(const std::string& status) {
  if (tty_ && printed_live_) std::fprintf(out_, "\r\033[K");
  std::fprintf(out_, "%s: %s\n", label_.c_str(), status.c_str());
  std::fflush(out_);
}

}  // namespace pgolf
