#pragma once
// The quantizers of SPEC 5.2: int6 GPTQ-lite (per-row clip search), full GPTQ (Hessian-aware
// error propagation with the same clip search), int8 per row, and fp16 passthrough, all with
// float16 per-row scales; plus dequantisation, which is exact: w = float(q) * float(s).
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "export/quantized_tensor.hpp"
#include "model/params.hpp"

namespace pgolf::exporter {

// SPEC 5.1's treatment of a tensor under the export config.
Scheme scheme_for(const model::ParamSpec& p, std::int64_t passthrough_max_numel);

// quantile(|row|, p) with linear interpolation between order statistics (torch.quantile).
double row_quantile(std::span<const float> row, double p);

// int6 GPTQ-lite: for each percentile p, s_r = fp16(max(quantile(|W_r|, p) / 31, 1/31)),
// q = clamp(round(W / s), -31, 31); keeps the p with the lowest whole-matrix MSE.
QuantizedTensor quantize_int6_lite(const std::string& name, std::span<const float> w, std::int64_t rows,
                                   std::int64_t cols, const std::vector<double>& percentiles);

// Full GPTQ (SPEC 5.2) with Hessian h (cols x cols, row-major, from the layer's inputs).
struct GptqSettings {
  std::vector<double> percentiles;
  double damping = 0.01;
  int damping_applications = 2;
  int block_size = 128;
};
QuantizedTensor quantize_int6_gptq(const std::string& name, std::span<const float> w, std::int64_t rows,
                                   std::int64_t cols, std::span<const double> h, const GptqSettings& settings);

// int8 per row: c_r = quantile(|W_r|, p), s_r = fp16(max(c_r / 127, 1/127)),
// q = clamp(round(clip(W, +-c_r) / s), -127, 127).
QuantizedTensor quantize_int8(const std::string& name, std::span<const float> w, std::int64_t rows, std::int64_t cols,
                              double percentile);

QuantizedTensor passthrough(const std::string& name, const std::vector<std::int64_t>& shape, std::span<const float> w,
                            Scheme scheme);

// sum over rows of (W - Q) H (W - Q)^T: the layer-output error GPTQ minimises.
double hessian_error(std::span<const float> w, std::span<const float> wq, std::int64_t rows, std::int64_t cols,
                     std::span<const double> h);

}  // namespace pgolf::exporter
