#pragma once
// Per-op timing of a backend (pgolf bench --profile): how often each op ran, the time it took
// on the device and the model FLOPs it did. Model FLOPs count the products a step needs, 2 per
// multiply-add: a matrix product n x in x out is 2 n in out forward and 4 n in out backward
// (dx and dw), causal attention is 4 b h hd s(s+1)/2 forward and twice that backward (the
// convention of MFU figures: no recomputation counted); elementwise work counts 0.
#include <cstdint>
#include <string>
#include <vector>

namespace pgolf::backend {

struct OpTiming {
  std::string op;          // the op's name in backend/ops.hpp, e.g. "matmul_forward"
  std::int64_t calls = 0;
  double ms = 0.0;         // device time between events recorded around the op's launches
  double flops = 0.0;      // model FLOPs (above)
};

struct OpProfile {
  std::vector<OpTiming> ops;  // the most expensive first
  double total_ms() const {
    double t = 0.0;
    for (const OpTiming& o : ops) t += o.ms;
    return t;
  }
};

// The FLOP counts above, shared by every backend that profiles.
inline double matmul_flops(double n, double in, double out) { return 2.0 * n * in * out; }
inline double causal_attention_flops(double batch, double heads, double seq, double hd) {
  return 4.0 * batch * heads * hd * seq * (seq + 1.0) / 2.0;
}

}  // namespace pgolf::backend
