#include "export/quantized_tensor.hpp"

#include "io/safetensors.hpp"

namespace pgolf::exporter {

std::vector<float> dequantize(const QuantizedTensor& t) {
  std::vector<float> out;
  switch (t.scheme) {
    case Scheme::fp16:
      out.resize(t.scales.size());
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = io::half_to_float(t.scales[i]);
      break;
    case Scheme::fp32: out = t.values; break;
    case Scheme::int6:
    case Scheme::int8: {
      const std::int64_t rows = t.rows(), cols = t.cols();
      out.resize(t.q.size());
      for (std::int64_t r = 0; r < rows; ++r) {
        const float s = io::half_to_float(t.scales[static_cast<std::size_t>(r)]);
        for (std::int64_t c = 0; c < cols; ++c) {
          const auto i = static_cast<std::size_t>(r * cols + c);
          out[i] = static_cast<float>(t.q[i]) * s;
        }
      }
      break;
    }
  }
  return out;
}

}  // namespace pgolf::exporter
