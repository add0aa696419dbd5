#include "common/error.hpp"

namespace pgolf {

int exit_code(ErrorKind kind) { return static_cast<int>(kind); }

const char* kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::internal: return "internal error";
    case ErrorKind::usage: return "usage error";
    case ErrorKind::config: return "config error";
    case ErrorKind::data: return "data error";
    case ErrorKind::format: return "format error";
    case ErrorKind::io: return "I/O error";
    case ErrorKind::device: return "device error";
    case ErrorKind::diverged: return "training diverged";
    case ErrorKind::over_budget: return "over budget";
    case ErrorKind::audit_failed: return "audit failed";
  }
  return "error";
}

}  // namespace pgolf
