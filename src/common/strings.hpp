#pragma once
// Small string helpers shared by the CLI, the config system and reports.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pgolf {

std::string_view trim(std::string_view s);
std::vector<std::string> split(std::string_view s, char sep);

// Levenshtein distance, used for "did you mean ...?" hints.
std::size_t edit_distance(std::string_view a, std::string_view b);
// The candidate closest to `word` if it is close enough to be a plausible typo, else "".
std::string closest_match(std::string_view word, const std::vector<std::string>& candidates);

bool is_valid_utf8(std::string_view s);
// The longest prefix of at most max_bytes that does not end inside a UTF-8 sequence.
std::string_view utf8_prefix(std::string_view s, std::size_t max_bytes);

std::string with_commas(std::uint64_t n);     // 1234567 -> "1,234,567"
std::string human_bytes(std::uint64_t bytes);  // 1536 -> "1.50 KiB"
std::string fixed(double value, int decimals);

}  // namespace pgolf
