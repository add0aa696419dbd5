#pragma once
// Loading a config: a JSON file, optionally layered on others with "extends", then
// `--set path=value` overrides, then a strict read into Config and cross-field validation.
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace pgolf::config {

struct LoadedConfig {
  Config config;
  Provenance provenance;  // JSON path -> the file or --set that supplied it
  std::vector<std::string> layers;  // files read, base first
};

// How config files are read; tests and the fuzzer substitute their own.
using FileReader = std::function<std::string(const std::filesystem::path&)>;
FileReader default_file_reader();

// No file: the defaults (the #549 record) plus overrides.
LoadedConfig load_config(const std::optional<std::filesystem::path>& file, const std::vector<std::string>& sets,
                         const FileReader& reader = default_file_reader());

// Parses one JSON document as a complete config, without "extends" (used by the fuzzer).
Config parse_config_text(std::string_view text, const std::string& origin);

// Applies "a.b.c=value" to a JSON document. The value is parsed as JSON when it is valid
// JSON and taken as a string otherwise, so `name=tiny` and `model.num_layers=9` both work.
void apply_set(json& doc, Provenance& provenance, std::string_view assignment);

// Writes the fully resolved config as pretty JSON (atomically).
void save_resolved_config(const Config& c, const std::filesystem::path& file);

}  // namespace pgolf::config
