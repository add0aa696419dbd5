#pragma once
// One exported tensor as the artifact stores it (SPEC 5.1-5.3): quantised values with one
// float16 scale per row (int6, int8), float16 values (small tensors), or float32 values
// (control tensors). Kept free of the model so the artifact reader stands alone (fuzzing).
#include <cstdint>
#include <string>
#include <vector>

namespace pgolf::exporter {

enum class Scheme : std::uint8_t { fp16 = 1, fp32 = 2, int6 = 3, int8 = 4 };

inline const char* scheme_name(Scheme s) {
  switch (s) {
    case Scheme::fp16: return "fp16";
    case Scheme::fp32: return "fp32";
    case Scheme::int6: return "int6";
    case Scheme::int8: return "int8";
  }
  return "?";
}

// The largest magnitude a quantised scheme stores (int6: 31, int8: 127; 0 for the others).
inline int scheme_limit(Scheme s) { return s == Scheme::int6 ? 31 : s == Scheme::int8 ? 127 : 0; }

struct QuantizedTensor {
  std::string name;
  std::vector<std::int64_t> shape;
  Scheme scheme = Scheme::fp16;
  std::vector<std::int8_t> q;        // int6 / int8: rows x cols values
  std::vector<std::uint16_t> scales; // int6 / int8: one float16 per row; fp16: the values
  std::vector<float> values;         // fp32 passthrough
  double clip_percentile = 0.0;      // int6 / int8: the percentile used
  double mse = 0.0;                  // mean squared reconstruction error (not stored)
  bool quantized() const { return scheme == Scheme::int6 || scheme == Scheme::int8; }
  // A matrix view: the first dimension are the rows, the rest are flattened into columns.
  std::int64_t rows() const { return shape.empty() ? 1 : shape[0]; }
  std::int64_t cols() const {
    std::int64_t n = 1;
    for (std::size_t i = 1; i < shape.size(); ++i) n *= shape[i];
    return n;
  }
  std::int64_t numel() const { return rows() * cols(); }
};

// The weights a tensor stands for, exactly as every loader computes them: float(q) * float(s)
// per row, the float16 values widened, or the float32 values.
std::vector<float> dequantize(const QuantizedTensor& t);

}  // namespace pgolf::exporter
