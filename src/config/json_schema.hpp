#pragma once
// A tiny reflection layer for configs. Each config struct has one `describe(Visitor&, T&)`
// function listing its fields (key, bounds, documentation). Reading JSON strictly, writing
// the resolved JSON and printing the schema are all visitors over that one description,
// so a knob is declared exactly once.
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/json.hpp"

namespace pgolf::config {

using pgolf::json;

// Inclusive numeric bounds; absent ends are unbounded. `exclusive_min` turns min into '>',
// `exclusive_max` max into '<'.
struct Bounds {
  std::optional<double> min;
  std::optional<double> max;
  bool exclusive_min = false;
  bool exclusive_max = false;
  std::string describe() const;  // "in [0, 1]", ">= 1", "> 0", or ""
  bool contains(double v) const;
};
inline Bounds any() { return {}; }
inline Bounds at_least(double lo) { return {lo, std::nullopt, false}; }
inline Bounds positive() { return {0.0, std::nullopt, true}; }
inline Bounds in_range(double lo, double hi) { return {lo, hi, false}; }
inline Bounds in_range_below(double lo, double hi) { return {lo, hi, false, true}; }  // [lo, hi)

class Visitor {
 public:
  virtual ~Visitor() = default;
  virtual void integer(const char* key, std::int64_t& value, Bounds bounds, const char* doc) = 0;
  virtual void number(const char* key, double& value, Bounds bounds, const char* doc) = 0;
  virtual void boolean(const char* key, bool& value, const char* doc) = 0;
  virtual void string(const char* key, std::string& value, const char* doc) = 0;
  // A file path or glob. Relative paths written in a config file are resolved against
  // that file's directory; relative paths from defaults or --set against the working directory.
  virtual void path(const char* key, std::string& value, const char* doc) = 0;
  virtual void choice(const char* key, std::string& value, const std::vector<std::string>& allowed,
                      const char* doc) = 0;
  virtual void integer_list(const char* key, std::vector<std::int64_t>& value, Bounds element_bounds,
                            const char* doc) = 0;
  virtual void number_list(const char* key, std::vector<double>& value, Bounds element_bounds,
                           const char* doc) = 0;
  virtual void section(const char* key, const char* doc, const std::function<void(Visitor&)>& body) = 0;
};

// Enums are described by a specialisation of EnumNames<E> with a `values` array of
// {enumerator, "json_name"} pairs; configs spell them as strings.
template <class E>
struct EnumNames;

template <class E>
const char* enum_name(E value) {
  for (const auto& [e, name] : EnumNames<E>::values)
    if (e == value) return name;
  return "?";
}

template <class E>
std::optional<E> enum_from_name(std::string_view name) {
  for (const auto& [e, n] : EnumNames<E>::values)
    if (name == n) return e;
  return std::nullopt;
}

template <class E>
std::vector<std::string> enum_names() {
  std::vector<std::string> out;
  for (const auto& [e, n] : EnumNames<E>::values) out.emplace_back(n);
  return out;
}

template <class E>
void enumeration(Visitor& v, const char* key, E& value, const char* doc) {
  std::string name = enum_name(value);
  v.choice(key, name, enum_names<E>(), doc);
  if (auto e = enum_from_name<E>(name)) value = *e;  // readers have already rejected unknown names
}

// Where each JSON leaf came from ("configs/tiny.json", "--set"), keyed by JSON path
// ("model.num_layers"); errors use it to tell the user which file to fix.
using Provenance = std::map<std::string, std::string>;
// The source of `path` or of its nearest recorded ancestor or descendant; "" if none.
std::string source_of(const Provenance& provenance, const std::string& path);
// Throws Error(config) "<path>: <what> (from <source>)".
[[noreturn]] void fail_at(const Provenance& provenance, const std::string& path, const std::string& what);

// Reads `doc` into the fields described by `body`. Unknown keys, wrong types, out-of-range
// values and unknown enum names throw Error(config) naming the JSON path and the bad value.
// `resolve_path(json_path, value)` turns a path field into what the program should use.
using PathResolver = std::function<std::string(const std::string& json_path, const std::string& value)>;
void read_json(const json& doc, const std::function<void(Visitor&)>& body, const Provenance& provenance,
               const PathResolver& resolve_path);

// Writes the fields described by `body` as a JSON object, in declaration order.
json write_json(const std::function<void(Visitor&)>& body);

struct SchemaRow {
  std::string path;
  std::string type;
  std::string default_value;
  std::string constraint;
  std::string doc;
};
// Every field with its type, default (the current value), constraint and documentation.
std::vector<SchemaRow> schema_rows(const std::function<void(Visitor&)>& body);

// Strict parsing for config text: errors are Error(config).
inline json parse_json_strict(std::string_view text, const std::string& origin) {
  return pgolf::parse_json_strict(text, origin, ErrorKind::config);
}
using pgolf::join_index;
using pgolf::join_key;

}  // namespace pgolf::config
