#pragma once
// Strict JSON parsing shared by configs and binary-container headers.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/error.hpp"

namespace pgolf {

using json = nlohmann::ordered_json;

// Parses JSON text: syntax errors name `origin` with line and column, and duplicate keys
// (which JSON parsers usually resolve silently) are errors naming their path. Failures
// are Error(kind).
json parse_json_strict(std::string_view text, const std::string& origin, ErrorKind kind);

// Serialises JSON; bytes that are not valid UTF-8 (e.g. from file names) become U+FFFD
// instead of throwing.
std::string dump_json(const json& j, int indent = -1);

// An nlohmann exception's message without its "[json.exception.xxx.nnn] " prefix.
std::string json_error_text(const std::exception& e);

// The value of a non-negative integer, or nothing for any other JSON value (floats included:
// nlohmann's get<integer>() on an out-of-range float is undefined behaviour).
std::optional<std::uint64_t> json_unsigned(const json& j);

// "a.b" / "a[2]" path joins used in messages.
std::string join_key(const std::string& prefix, std::string_view key);
std::string join_index(const std::string& prefix, std::size_t index);

}  // namespace pgolf
