#include "config/config_loader.hpp"

#include <cctype>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/strings.hpp"

namespace pgolf::config {

namespace {

constexpr int kMaxExtendsDepth = 16;
constexpr std::size_t kMaxConfigBytes = 1 << 20;
const char* const kSetSource = "--set";

// Overlays `top` on `base`: objects merge key by key, anything else replaces. Every leaf
// taken from `top` is attributed to `source`.
void merge_into(json& base, const json& top, const std::string& prefix, const std::string& source,
                Provenance& provenance) {
  for (const auto& item : top.items()) {
    std::string path = join_key(prefix, item.key());
    if (item.value().is_object() && base.contains(item.key()) && base[item.key()].is_object()) {
      merge_into(base[item.key()], item.value(), path, source, provenance);
      continue;
    }
    // Replacing a subtree: forget where the old leaves under it came from.
    provenance.erase(path);
    for (auto it = provenance.lower_bound(path + "."); it != provenance.end() && it->first.rfind(path + ".", 0) == 0;)
      it = provenance.erase(it);
    base[item.key()] = item.value();
    if (item.value().is_object() && !item.value().empty()) {
      json fresh = json::object();
      merge_into(fresh, item.value(), path, source, provenance);
    } else {
      provenance[path] = source;
    }
  }
}

json load_layers(const std::filesystem::path& file, const FileReader& reader, Provenance& provenance,
                 std::vector<std::string>& layers, std::vector<std::filesystem::path>& chain,
                 const std::string& extended_by = "") {
  std::filesystem::path key = std::filesystem::weakly_canonical(std::filesystem::absolute(file));
  for (const auto& c : chain)
    if (c == key) {
      std::string cycle;
      for (const auto& p : chain) cycle += p.string() + " -> ";
      fail(ErrorKind::config, file.string(), ": \"extends\" cycle: ", cycle, key.string());
    }
  if (static_cast<int>(chain.size()) >= kMaxExtendsDepth)
    fail(ErrorKind::config, file.string(), ": \"extends\" nested more than ", kMaxExtendsDepth, " levels");
  chain.push_back(key);

  std::string text;
  try {
    text = reader(file);
  } catch (const Error& e) {
    if (!extended_by.empty()) fail(ErrorKind::config, extended_by, ": extends: cannot read the base config: ", e.what());
    fail(ErrorKind::config, "cannot read config: ", e.what());
  }
  json doc = parse_json_strict(text, file.string());
  if (!doc.is_object()) fail(ErrorKind::config, file.string(), ": a config must be a JSON object");

  json merged = json::object();
  if (auto it = doc.find("extends"); it != doc.end()) {
    if (!it->is_string() || it->get<std::string>().empty())
      fail(ErrorKind::config, file.string(), ": extends: expected the path of another config file");
    std::filesystem::path base = it->get<std::string>();
    if (base.is_relative()) base = file.parent_path() / base;
    merged = load_layers(base.lexically_normal(), reader, provenance, layers, chain, file.string());
    doc.erase(it);
  }
  merge_into(merged, doc, "", file.string(), provenance);
  layers.push_back(file.string());
  chain.pop_back();
  return merged;
}

// Relative paths written in a config file are relative to that file; others to the cwd.
PathResolver make_resolver(const Provenance& provenance) {
  return [&provenance](const std::string& json_path, const std::string& value) -> std::string {
    std::filesystem::path p = value;
    if (p.is_absolute()) return p.lexically_normal().string();
    auto it = provenance.find(json_path);
    std::filesystem::path base;
    if (it != provenance.end() && it->second.rfind(kSetSource, 0) != 0)
      base = std::filesystem::path(it->second).parent_path();
    return std::filesystem::absolute(base / p).lexically_normal().string();
  };
}

Config read_config(const json& doc, const Provenance& provenance) {
  Config c;
  read_json(doc, [&](Visitor& v) { describe(v, c); }, provenance, make_resolver(provenance));
  validate(c, provenance);
  return c;
}

}  // namespace

FileReader default_file_reader() {
  return [](const std::filesystem::path& p) { return read_file(p, kMaxConfigBytes); };
}

void apply_set(json& doc, Provenance& provenance, std::string_view assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string_view::npos || eq == 0)
    fail(ErrorKind::usage, "--set ", assignment, ": expected PATH=VALUE, e.g. model.num_layers=9");
  std::string path(trim(assignment.substr(0, eq)));
  std::string value_text(assignment.substr(eq + 1));
  std::vector<std::string> parts = split(path, '.');
  for (const auto& part : parts) {
    bool ok = !part.empty();
    for (char ch : part) ok = ok && (std::isalnum(static_cast<unsigned char>(ch)) || ch == '_');
    if (!ok)
      fail(ErrorKind::usage, "--set ", assignment, ": \"", path,
           "\" is not a key path (dot-separated keys such as eval.ttt.lr; list elements cannot be set one by one)");
  }
  if (!is_valid_utf8(value_text)) fail(ErrorKind::usage, "--set ", path, ": the value is not valid UTF-8");
  json value;
  try {
    value = parse_json_strict(value_text, "--set");
  } catch (const Error&) {
    value = value_text;  // not JSON: a bare string
  }
  json* node = &doc;
  std::string prefix;
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    prefix = join_key(prefix, parts[i]);
    if (!node->contains(parts[i])) (*node)[parts[i]] = json::object();
    json& child = (*node)[parts[i]];
    if (!child.is_object())
      fail(ErrorKind::config, prefix, ": is a value, not a section, so --set ", path, " cannot apply");
    node = &child;
  }
  json overlay = json::object();
  json* o = &overlay;
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) o = &((*o)[parts[i]] = json::object());
  (*o)[parts.back()] = value;
  merge_into(doc, overlay, "", cat(kSetSource, " ", path, "=", value_text), provenance);
}

LoadedConfig load_config(const std::optional<std::filesystem::path>& file, const std::vector<std::string>& sets,
                         const FileReader& reader) {
  LoadedConfig out;
  json doc = json::object();
  if (file) {
    std::vector<std::filesystem::path> chain;
    doc = load_layers(*file, reader, out.provenance, out.layers, chain);
  }
  for (const auto& s : sets) apply_set(doc, out.provenance, s);
  out.config = read_config(doc, out.provenance);
  return out;
}

Config parse_config_text(std::string_view text, const std::string& origin) {
  json doc = parse_json_strict(text, origin);
  if (!doc.is_object()) fail(ErrorKind::config, origin, ": a config must be a JSON object");
  if (doc.contains("extends")) fail(ErrorKind::config, origin, ": extends: not allowed here");
  Provenance provenance;
  json merged = json::object();
  merge_into(merged, doc, "", origin, provenance);
  return read_config(merged, provenance);
}

void save_resolved_config(const Config& c, const std::filesystem::path& file) {
  write_file_atomic(file, dump_json(to_json(c), 2) + "\n");
}

}  // namespace pgolf::config
