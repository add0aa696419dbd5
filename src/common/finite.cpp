#include "common/finite.hpp"

#include <cmath>
#include <limits>

#include "common/error.hpp"
#include "common/strings.hpp"

namespace pgolf {

namespace {

template <class T, class IsBad, class Value>
std::optional<NonFinite> scan(std::span<const T> values, IsBad is_bad, Value value_of) {
  std::optional<NonFinite> out;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (!is_bad(values[i])) continue;
    if (!out) out = NonFinite{i, value_of(values[i]), 0, values.size()};
    ++out->count;
  }
  return out;
}

}  // namespace

std::optional<NonFinite> find_non_finite(std::span<const float> values) {
  return scan(values, [](float x) { return !std::isfinite(x); }, [](float x) { return static_cast<double>(x); });
}

std::optional<NonFinite> find_non_finite(std::span<const double> values) {
  return scan(values, [](double x) { return !std::isfinite(x); }, [](double x) { return x; });
}

std::optional<NonFinite> find_non_finite_half(std::span<const std::uint16_t> bits) {
  return scan(
      bits, [](std::uint16_t h) { return (h & 0x7c00u) == 0x7c00u; },
      [](std::uint16_t h) {
        if ((h & 0x03ffu) != 0) return std::numeric_limits<double>::quiet_NaN();
        return (h & 0x8000u) != 0 ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
      });
}

std::string describe(const NonFinite& f) {
  const std::string what = std::isnan(f.value) ? "NaN" : f.value > 0 ? "+Inf" : "-Inf";
  return cat(what, " at index ", f.index, " (", with_commas(f.count), " of ", with_commas(f.size), " values ",
             f.count == 1 ? "is" : "are", " not finite)");
}

}  // namespace pgolf
