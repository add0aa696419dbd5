#include "backend/ops.hpp"

#include "common/error.hpp"

namespace pgolf::backend {

const char* fused_op_name(FusedOp op) {
  switch (op) {
    case FusedOp::softcap_ce: return "softcap_ce";
    case FusedOp::qk_prep: return "qk_prep";
    case FusedOp::count: break;
  }
  return "?";
}

const char* fused_op_reference(FusedOp op) {
  switch (op) {
    case FusedOp::softcap_ce: return "softcap_ce_forward + softcap_ce_backward";
    case FusedOp::qk_prep: return "rmsnorm + rope_apply + head_gain, forward and backward";
    case FusedOp::count: break;
  }
  return "?";
}

void unsupported_fused_op(FusedOp op, const std::string& backend) {
  fail(ErrorKind::internal, "backend ", backend, " does not offer the fused op ", fused_op_name(op), " (",
       fused_op_reference(op), "); callers check supports() first");
}

}  // namespace pgolf::backend
