#pragma once
// Finding the first non-finite value of a tensor, so that loaders can refuse NaN/Inf weights
// with a message naming the tensor and the index instead of evaluating them into a wrong number.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace pgolf {

struct NonFinite {
  std::size_t index = 0;  // of the first non-finite value
  double value = 0.0;     // NaN, +Inf or -Inf
  std::size_t count = 0;  // non-finite values in the whole span
  std::size_t size = 0;   // values in the span
};

std::optional<NonFinite> find_non_finite(std::span<const float> values);
std::optional<NonFinite> find_non_finite(std::span<const double> values);
// Float16 bit patterns (exponent all ones: Inf or NaN).
std::optional<NonFinite> find_non_finite_half(std::span<const std::uint16_t> bits);

// "NaN at index 17 (3 of 16,384 values are not finite)"
std::string describe(const NonFinite& f);

}  // namespace pgolf
