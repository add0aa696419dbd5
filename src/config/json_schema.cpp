#include "config/json_schema.hpp"

#include <cmath>
#include <limits>
#include <set>

#include "common/error.hpp"
#include "common/strings.hpp"

namespace pgolf::config {

namespace {

std::string format_number(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<std::int64_t>(v));
  return dump_json(json(v));
}

// A short rendering of a JSON value for error messages.
std::string show(const json& value) {
  std::string s = dump_json(value);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

const char* type_name(const json& value) {
  switch (value.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "a list";
    case json::value_t::object: return "an object";
    default: return "an unsupported value";
  }
}

class Reader final : public Visitor {
 public:
  Reader(const json& obj, std::string prefix, const Provenance& provenance, const PathResolver& resolve)
      : obj_(obj), prefix_(std::move(prefix)), provenance_(provenance), resolve_(resolve) {}

  void integer(const char* key, std::int64_t& value, Bounds bounds, const char* /*doc*/) override {
    if (const json* j = find(key)) value = to_integer(*j, join_key(prefix_, key), bounds);
  }

  void number(const char* key, double& value, Bounds bounds, const char* /*doc*/) override {
    if (const json* j = find(key)) value = to_number(*j, join_key(prefix_, key), bounds);
  }

  void boolean(const char* key, bool& value, const char* /*doc*/) override {
    const json* j = find(key);
    if (j == nullptr) return;
    if (!j->is_boolean()) bad(join_key(prefix_, key), cat("expected true or false, got ", type_name(*j), " ", show(*j)));
    value = j->get<bool>();
  }

  void string(const char* key, std::string& value, const char* /*doc*/) override {
    if (const json* j = find(key)) value = to_string(*j, join_key(prefix_, key));
  }

  void path(const char* key, std::string& value, const char* /*doc*/) override {
    const json* j = find(key);
    std::string p = join_key(prefix_, key);
    if (j != nullptr) {
      value = to_string(*j, p);
      if (value.empty()) bad(p, "must not be empty");
    }
    value = resolve_(p, value);
  }

  void choice(const char* key, std::string& value, const std::vector<std::string>& allowed,
              const char* /*doc*/) override {
    const json* j = find(key);
    if (j == nullptr) return;
    std::string p = join_key(prefix_, key);
    std::string s = to_string(*j, p);
    for (const auto& a : allowed)
      if (a == s) {
        value = s;
        return;
      }
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    std::string hint = closest_match(s, allowed);
    bad(p, cat(show(*j), " is not one of: ", list, hint.empty() ? "" : cat("; did you mean \"", hint, "\"?")));
  }

  void integer_list(const char* key, std::vector<std::int64_t>& value, Bounds element_bounds,
                    const char* /*doc*/) override {
    const json* j = find(key);
    if (j == nullptr) return;
    std::string p = join_key(prefix_, key);
    if (!j->is_array()) bad(p, cat("expected a list of integers, got ", type_name(*j), " ", show(*j)));
    value.clear();
    for (std::size_t i = 0; i < j->size(); ++i) value.push_back(to_integer((*j)[i], join_index(p, i), element_bounds));
  }

  void number_list(const char* key, std::vector<double>& value, Bounds element_bounds, const char* /*doc*/) override {
    const json* j = find(key);
    if (j == nullptr) return;
    std::string p = join_key(prefix_, key);
    if (!j->is_array()) bad(p, cat("expected a list of numbers, got ", type_name(*j), " ", show(*j)));
    value.clear();
    for (std::size_t i = 0; i < j->size(); ++i) value.push_back(to_number((*j)[i], join_index(p, i), element_bounds));
  }

  void section(const char* key, const char* /*doc*/, const std::function<void(Visitor&)>& body) override {
    const json* j = find(key);
    std::string p = join_key(prefix_, key);
    static const json empty = json::object();
    if (j != nullptr && !j->is_object()) bad(p, cat("expected an object (a section), got ", type_name(*j), " ", show(*j)));
    Reader sub(j != nullptr ? *j : empty, p, provenance_, resolve_);
    body(sub);
    sub.finish();
  }

  // Every key present in the object must have been claimed by a field.
  void finish() const {
    for (const auto& item : obj_.items()) {
      if (seen_.count(item.key())) continue;
      std::string hint = closest_match(item.key(), known_);
      bad(join_key(prefix_, item.key()),
          cat("unknown key", hint.empty() ? std::string() : cat("; did you mean \"", join_key(prefix_, hint), "\"?")));
    }
  }

 private:
  const json* find(const char* key) {
    known_.emplace_back(key);
    auto it = obj_.find(key);
    if (it == obj_.end()) return nullptr;
    seen_.insert(key);
    return &*it;
  }

  [[noreturn]] void bad(const std::string& path, const std::string& what) const { fail_at(provenance_, path, what); }

  void check_bounds(double v, const std::string& path, const Bounds& bounds, const json& j) const {
    if (!bounds.contains(v)) bad(path, cat(show(j), " is out of range: must be ", bounds.describe()));
  }

  std::int64_t to_integer(const json& j, const std::string& path, const Bounds& bounds) const {
    std::int64_t v = 0;
    if (j.is_number_integer() && !j.is_number_unsigned()) {
      v = j.get<std::int64_t>();
    } else if (j.is_number_unsigned()) {
      auto u = j.get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) bad(path, cat(show(j), " is too large"));
      v = static_cast<std::int64_t>(u);
    } else if (j.is_number_float()) {
      // Accept integral spellings such as 1e6; reject fractions.
      double d = j.get<double>();
      if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9.2e18)
        bad(path, cat("expected an integer, got ", show(j)));
      v = static_cast<std::int64_t>(d);
    } else {
      bad(path, cat("expected an integer, got ", type_name(j), " ", show(j)));
    }
    check_bounds(static_cast<double>(v), path, bounds, j);
    return v;
  }

  double to_number(const json& j, const std::string& path, const Bounds& bounds) const {
    if (!j.is_number()) bad(path, cat("expected a number, got ", type_name(j), " ", show(j)));
    double v = j.get<double>();
    if (!std::isfinite(v)) bad(path, cat("expected a finite number, got ", show(j)));
    check_bounds(v, path, bounds, j);
    return v;
  }

  std::string to_string(const json& j, const std::string& path) const {
    if (!j.is_string()) bad(path, cat("expected a string, got ", type_name(j), " ", show(j)));
    return j.get<std::string>();
  }

  const json& obj_;
  std::string prefix_;
  const Provenance& provenance_;
  const PathResolver& resolve_;
  std::set<std::string> seen_;
  std::vector<std::string> known_;
};

class Writer final : public Visitor {
 public:
  json out = json::object();
  void integer(const char* key, std::int64_t& value, Bounds, const char*) override { out[key] = value; }
  void number(const char* key, double& value, Bounds, const char*) override { out[key] = value; }
  void boolean(const char* key, bool& value, const char*) override { out[key] = value; }
  void string(const char* key, std::string& value, const char*) override { out[key] = value; }
  void path(const char* key, std::string& value, const char*) override { out[key] = value; }
  void choice(const char* key, std::string& value, const std::vector<std::string>&, const char*) override {
    out[key] = value;
  }
  void integer_list(const char* key, std::vector<std::int64_t>& value, Bounds, const char*) override {
    out[key] = value;
  }
  void number_list(const char* key, std::vector<double>& value, Bounds, const char*) override { out[key] = value; }
  void section(const char* key, const char*, const std::function<void(Visitor&)>& body) override {
    Writer sub;
    body(sub);
    out[key] = std::move(sub.out);
  }
};

class Documenter final : public Visitor {
 public:
  explicit Documenter(std::string prefix, std::vector<SchemaRow>& rows) : prefix_(std::move(prefix)), rows_(rows) {}
  void integer(const char* key, std::int64_t& value, Bounds b, const char* doc) override {
    add(key, "integer", std::to_string(value), b.describe(), doc);
  }
  void number(const char* key, double& value, Bounds b, const char* doc) override {
    add(key, "number", format_number(value), b.describe(), doc);
  }
  void boolean(const char* key, bool& value, const char* doc) override {
    add(key, "boolean", value ? "true" : "false", "", doc);
  }
  void string(const char* key, std::string& value, const char* doc) override {
    add(key, "string", dump_json(json(value)), "", doc);
  }
  void path(const char* key, std::string& value, const char* doc) override {
    add(key, "path", dump_json(json(value)), "", doc);
  }
  void choice(const char* key, std::string& value, const std::vector<std::string>& allowed, const char* doc) override {
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : "|") + a;
    add(key, "choice", dump_json(json(value)), "one of " + list, doc);
  }
  void integer_list(const char* key, std::vector<std::int64_t>& value, Bounds b, const char* doc) override {
    add(key, "integer list", dump_json(json(value)), b.describe().empty() ? "" : "each " + b.describe(), doc);
  }
  void number_list(const char* key, std::vector<double>& value, Bounds b, const char* doc) override {
    add(key, "number list", dump_json(json(value)), b.describe().empty() ? "" : "each " + b.describe(), doc);
  }
  void section(const char* key, const char* doc, const std::function<void(Visitor&)>& body) override {
    add(key, "section", "", "", doc);
    Documenter sub(join_key(prefix_, key), rows_);
    body(sub);
  }

 private:
  void add(const char* key, std::string type, std::string def, std::string constraint, const char* doc) {
    rows_.push_back({join_key(prefix_, key), std::move(type), std::move(def), std::move(constraint), doc});
  }
  std::string prefix_;
  std::vector<SchemaRow>& rows_;
};

}  // namespace

std::string Bounds::describe() const {
  if (min && max)
    return cat("in ", exclusive_min ? "(" : "[", format_number(*min), ", ", format_number(*max), exclusive_max ? ")" : "]");
  if (min) return cat(exclusive_min ? "> " : ">= ", format_number(*min));
  if (max) return cat(exclusive_max ? "< " : "<= ", format_number(*max));
  return "";
}

bool Bounds::contains(double v) const {
  if (min && (exclusive_min ? !(v > *min) : !(v >= *min))) return false;
  if (max && (exclusive_max ? !(v < *max) : !(v <= *max))) return false;
  return true;
}

std::string source_of(const Provenance& provenance, const std::string& path) {
  // Exact path, then ancestors ("model.ve.layers[1]" -> "model.ve.layers" -> "model.ve" ...).
  std::string p = path;
  while (!p.empty()) {
    auto it = provenance.find(p);
    if (it != provenance.end()) return it->second;
    auto cut = p.find_last_of(".[");
    if (cut == std::string::npos) break;
    p.resize(cut);
  }
  // A section error (e.g. "model" is not an object) is attributed to any leaf under it.
  auto it = provenance.lower_bound(path + ".");
  if (it != provenance.end() && it->first.rfind(path + ".", 0) == 0) return it->second;
  return "";
}

void fail_at(const Provenance& provenance, const std::string& path, const std::string& what) {
  std::string source = source_of(provenance, path);
  fail(ErrorKind::config, path, ": ", what, source.empty() ? "" : cat(" (from ", source, ")"));
}

void read_json(const json& doc, const std::function<void(Visitor&)>& body, const Provenance& provenance,
               const PathResolver& resolve_path) {
  if (!doc.is_object()) fail(ErrorKind::config, "<top level>: expected a JSON object, got ", type_name(doc));
  Reader reader(doc, "", provenance, resolve_path);
  body(reader);
  reader.finish();
}

json write_json(const std::function<void(Visitor&)>& body) {
  Writer writer;
  body(writer);
  return std::move(writer.out);
}

std::vector<SchemaRow> schema_rows(const std::function<void(Visitor&)>& body) {
  std::vector<SchemaRow> rows;
  Documenter doc("", rows);
  body(doc);
  return rows;
}

}  // namespace pgolf::config
