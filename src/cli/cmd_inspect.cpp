// pgolf inspect shard|tokenizer|config|checkpoint|artifact: look inside every file pgolf reads.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>

#include "cli/cli_checks.hpp"
#include "cli/commands.hpp"
#include "common/error.hpp"
#include "common/finite.hpp"
#include "common/json.hpp"
#include "common/strings.hpp"
#include "config/config_loader.hpp"
#include "data/bpb.hpp"
#include "data/shard.hpp"
#include "data/tokenizer.hpp"
#include "export/artifact.hpp"
#include "export/code_bundle.hpp"
#include "io/safetensors.hpp"

namespace pgolf::cli {

namespace {

void row(const char* label, const std::string& value) { std::printf("  %-18s %s\n", label, value.c_str()); }

std::string count(std::int64_t n) { return with_commas(static_cast<std::uint64_t>(n)); }

std::string format_double(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

// ----- shard ------------------------------------------------------------------------------
struct ShardOptions {
  std::vector<std::string> files;
  std::string tokenizer;
  std::int64_t vocab = 0;
  int head = 16;
  int preview_chars = 0;
};

void inspect_shards(const ShardOptions& o) {
  std::optional<data::Tokenizer> tok;
  std::optional<data::ByteTables> tables;
  std::int64_t vocab = o.vocab;
  if (!o.tokenizer.empty()) {
    tok.emplace(o.tokenizer);
    if (vocab == 0) vocab = tok->vocab_size();
    tables = data::build_byte_tables(*tok, vocab);
  }
  std::vector<fs::path> paths;
  for (const auto& f : o.files) {
    if (fs::exists(f)) {  // a literal name, even one containing glob characters
      paths.emplace_back(f);
      continue;
    }
    if (f.find_first_of("*?[") == std::string::npos) fail(ErrorKind::io, f, ": no such file");
    auto matched = glob_sorted(f);
    if (matched.empty()) fail(ErrorKind::data, f, ": no shards match this pattern");
    paths.insert(paths.end(), matched.begin(), matched.end());
  }
  std::int64_t total_tokens = 0, total_docs = 0, total_bytes = 0;
  for (const auto& p : paths) {
    data::Shard shard(p);
    auto t = shard.tokens();
    if (vocab > 0) data::check_token_ids(t, vocab, p.string());
    std::int64_t docs = 0;
    std::uint16_t lo = 0xffff, hi = 0;
    const int bos = tok ? tok->bos_id() : 1;
    for (auto id : t) {
      docs += id == bos;
      lo = std::min(lo, id);
      hi = std::max(hi, id);
    }
    std::printf("%s\n", p.string().c_str());
    row("tokens", count(static_cast<std::int64_t>(t.size())));
    row("file bytes", count(static_cast<std::int64_t>(data::kShardHeaderBytes + 2 * t.size())));
    row("documents", cat(count(docs), " (tokens equal to BOS id ", bos, ")"));
    if (!t.empty()) row("token ids", cat("min ", lo, ", max ", hi, vocab > 0 ? cat(", all < vocab ", vocab) : ""));
    std::string head;
    for (std::size_t i = 0; i < t.size() && i < static_cast<std::size_t>(o.head); ++i) head += cat(i ? " " : "", t[i]);
    if (!head.empty()) row("first tokens", head + (t.size() > static_cast<std::size_t>(o.head) ? " ..." : ""));
    if (tables) {
      std::int64_t bytes = data::count_target_bytes(t, *tables, p.string());
      total_bytes += bytes;
      row("target bytes", cat(count(bytes), " (SPEC 2.3, targets 1..n-1 of this shard)"));
      if (bytes > 0) row("tokens per byte", fixed(static_cast<double>(t.size() - 1) / static_cast<double>(bytes), 6));
      if (o.preview_chars > 0) {
        std::size_t n = std::min<std::size_t>(t.size(), static_cast<std::size_t>(o.preview_chars));
        std::string text = tok->decode(t.subspan(0, n));
        row("text", "\"" + std::string(utf8_prefix(text, static_cast<std::size_t>(o.preview_chars))) + "\"");
      }
    }
    total_tokens += static_cast<std::int64_t>(t.size());
    total_docs += docs;
  }
  if (paths.size() > 1) {
    std::printf("total over %zu shards\n", paths.size());
    row("tokens", count(total_tokens));
    row("documents", count(total_docs));
    if (tables) row("target bytes", count(total_bytes) + " (per-shard sums; shard boundaries not bridged)");
  }
}

// ----- tokenizer --------------------------------------------------------------------------
struct TokenizerOptions {
  std::string model;
  std::int64_t vocab = 0;
  bool tables = false;
};

void inspect_tokenizer(const TokenizerOptions& o) {
  data::Tokenizer tok(o.model);
  const auto& s = tok.settings();
  const int n = tok.vocab_size();
  data::ByteTables t = data::build_byte_tables(tok, std::max<std::int64_t>(o.vocab, n));
  if (o.tables) {
    std::printf("id,piece,base_bytes,leading_space,boundary\n");
    for (std::size_t id = 0; id < t.size(); ++id) {
      std::string piece = static_cast<int>(id) < n ? tok.piece(static_cast<int>(id)) : "";
      std::string quoted = "\"";
      for (char c : piece) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
      std::printf("%zu,%s\",%d,%d,%d\n", id, quoted.c_str(), t.base_bytes[id], t.leading_space[id], t.boundary[id]);
    }
    return;
  }
  int normal = 0, control = 0, unknown = 0, unused = 0, bytes = 0, first_byte = -1, last_byte = -1;
  for (int id = 0; id < n; ++id) {
    if (tok.is_control(id)) ++control;
    else if (tok.is_unknown(id)) ++unknown;
    else if (tok.is_unused(id)) ++unused;
    else if (tok.is_byte(id)) {
      ++bytes;
      if (first_byte < 0) first_byte = id;
      last_byte = id;
    } else ++normal;
  }
  std::int64_t boundary = 0, lead = 0, base_sum = 0, base_max = 0, zero_nonboundary = 0;
  for (std::size_t id = 0; id < t.size(); ++id) {
    boundary += t.boundary[id];
    lead += t.leading_space[id];
    base_sum += t.base_bytes[id];
    base_max = std::max<std::int64_t>(base_max, t.base_bytes[id]);
    zero_nonboundary += (t.boundary[id] == 0 && t.base_bytes[id] == 0);
  }
  std::printf("%s\n", o.model.c_str());
  row("model", cat(data::model_type_name(s.model_type), ", vocab size ", n, " (trainer asked for ",
                   s.trainer_vocab_size, "), character coverage ", s.character_coverage));
  row("normalizer", cat(s.normalizer_name, ", add_dummy_prefix ", s.add_dummy_prefix ? "true" : "false",
                        ", remove_extra_whitespaces ", s.remove_extra_whitespaces ? "true" : "false",
                        ", split_digits ", s.split_digits ? "true" : "false"));
  row("special ids", cat("pad ", tok.pad_id(), ", bos ", tok.bos_id(), ", eos ", tok.eos_id(), ", unk ", tok.unk_id()));
  row("byte fallback", bytes > 0 ? cat(bytes, " pieces, ids ", first_byte, "..", last_byte) : std::string("none"));
  row("pieces", cat(normal, " normal, ", control, " control, ", unknown, " unknown, ", unused, " unused, ", bytes, " byte"));
  row("byte tables", cat(t.size(), " entries: ", boundary, " boundary (0 bytes), ", lead, " with leading space, base bytes mean ",
                         fixed(static_cast<double>(base_sum) / static_cast<double>(t.size()), 3), " max ", base_max,
                         ", ", zero_nonboundary, " non-boundary pieces of 0 base bytes"));
  auto deviations = data::convention_deviations(tok);
  if (deviations.empty()) {
    row("conventions", "match the challenge's (SPEC 2.2)");
  } else {
    for (const auto& d : deviations) row("deviation", d);
  }
}

// ----- config -----------------------------------------------------------------------------
struct ConfigOptions {
  std::string file;
  std::vector<std::string> sets;
  bool schema = false;
  bool sources = false;
};

void inspect_config(const ConfigOptions& o) {
  if (o.schema) {
    for (const auto& r : config::schema()) {
      if (r.type == "section") {
        std::printf("\n[%s] %s\n", r.path.c_str(), r.doc.c_str());
        continue;
      }
      std::printf("%-42s %-13s %-22s %s%s\n", r.path.c_str(), r.type.c_str(), r.default_value.c_str(), r.doc.c_str(),
                  r.constraint.empty() ? "" : cat(" [", r.constraint, "]").c_str());
    }
    return;
  }
  std::optional<fs::path> file;
  if (!o.file.empty()) file = o.file;
  config::LoadedConfig loaded = config::load_config(file, o.sets);
  if (o.sources) {
    for (const auto& layer : loaded.layers) std::printf("# layer: %s\n", layer.c_str());
    for (const auto& [path, source] : loaded.provenance) std::printf("%-42s %s\n", path.c_str(), source.c_str());
    return;
  }
  std::printf("%s\n", dump_json(config::to_json(loaded.config), 2).c_str());
}

// ----- checkpoint -------------------------------------------------------------------------
struct CheckpointOptions {
  std::string file;
  bool stats = false;
};

void inspect_checkpoint(const CheckpointOptions& o) {
  auto st = io::SafetensorsFile::open(o.file);
  std::int64_t params = 0, stored = 0;
  for (const auto& t : st.tensors()) {
    params += t.numel();
    stored += static_cast<std::int64_t>(t.data.size());
  }
  std::printf("%s\n", o.file.c_str());
  row("format", cat("safetensors, ", count(static_cast<std::int64_t>(st.header_bytes())), "-byte header"));
  row("tensors", cat(st.tensors().size(), ", ", count(params), " elements, ", human_bytes(static_cast<std::uint64_t>(stored))));
  for (const auto& [k, v] : st.metadata()) row(("meta " + k).c_str(), v);
  // The loaders refuse NaN/Inf weights; inspecting is where a damaged checkpoint is diagnosed.
  const auto non_finite = io::non_finite_tensors(st);
  row("finite", non_finite.empty() ? std::string("every floating-point value")
                                   : cat("NO: ", non_finite.size(), " tensor(s) hold NaN/Inf (pgolf eval, pack and resume "
                                         "refuse this file); the first: \"", non_finite.front().first, "\" ",
                                         describe(non_finite.front().second)));
  std::printf("\n  %-44s %-5s %-18s %12s", "name", "dtype", "shape", "elements");
  if (o.stats) std::printf(" %12s %12s %12s %12s", "min", "max", "mean", "rms");
  std::printf("\n");
  for (const auto& t : st.tensors()) {
    std::printf("  %-44s %-5s %-18s %12s", t.name.c_str(), io::dtype_name(t.dtype), io::shape_text(t.shape).c_str(),
                count(t.numel()).c_str());
    if (o.stats && io::is_floating(t.dtype) && t.numel() > 0) {
      auto v = st.to_float32(t);
      double lo = v[0], hi = v[0], sum = 0, sq = 0;
      for (float x : v) {
        lo = std::min<double>(lo, x);
        hi = std::max<double>(hi, x);
        sum += x;
        sq += static_cast<double>(x) * x;
      }
      const double nv = static_cast<double>(v.size());
      std::printf(" %12.5g %12.5g %12.5g %12.5g", lo, hi, sum / nv, std::sqrt(sq / nv));
    }
    std::printf("\n");
  }
}

// ----- artifact ---------------------------------------------------------------------------
struct ArtifactOptions {
  std::string file;
  bool code = false;
  std::string extract_code;
  bool force = false;
};

void inspect_artifact(const ArtifactOptions& o) {
  const exporter::Artifact a = exporter::read_artifact_file(o.file);
  const auto total = static_cast<std::int64_t>(a.sizes.total());
  std::printf("%s\n", o.file.c_str());
  row("format", cat("pgolf artifact, ", a.compressor, a.shuffle_stride > 1 ? cat(" after a stride-", a.shuffle_stride, " byte shuffle") : std::string()));
  row("model blob", cat(count(static_cast<std::int64_t>(a.sizes.model)), " bytes (container ",
                        count(static_cast<std::int64_t>(a.sizes.container_raw)), " bytes before compression)"));
  row("code bundle", a.sizes.code > 0 ? cat(count(static_cast<std::int64_t>(a.sizes.code)), " bytes")
                                      : std::string("not counted (export.count_code = false)"));
  row("total", cat(count(total), " bytes = model + code + ", a.sizes.header, "-byte header; ",
                   total <= exporter::kChallengeBudget ? "within" : "OVER", " the challenge's ",
                   count(exporter::kChallengeBudget)));
  const json& m = a.container.metadata;
  if (m.is_object())
    for (const auto& [k, v] : m.items())
      if (k != "model" && k != "export") row(("meta " + k).c_str(), v.is_string() ? v.get<std::string>() : v.dump());
  std::int64_t values = 0, zeros = 0, ones = 0;
  std::printf("\n  %-44s %-6s %-18s %12s %9s %8s\n", "name", "scheme", "shape", "elements", "clip p", "zeros");
  for (const auto& t : a.container.tensors) {
    std::int64_t z = 0;
    for (auto q : t.q) {
      z += q == 0;
      ones += q == 1 || q == -1;
    }
    values += t.numel();
    zeros += z;
    std::printf("  %-44s %-6s %-18s %12s %9s %8s\n", t.name.c_str(), exporter::scheme_name(t.scheme),
                io::shape_text(t.shape).c_str(), count(t.numel()).c_str(),
                t.quantized() ? format_double(t.clip_percentile, 8).c_str() : "", t.quantized() ? count(z).c_str() : "");
  }
  std::printf("\n  %zu tensors, %s values; quantised entries: %s zero, %s equal to +-1\n", a.container.tensors.size(),
              count(values).c_str(), count(zeros).c_str(), count(ones).c_str());
  if (a.sizes.code == 0) {
    if (o.code || !o.extract_code.empty()) fail(ErrorKind::usage, o.file, ": the artifact has no code bundle");
    return;
  }
  const auto members = exporter::read_code_bundle(a.code_bundle, o.file);
  std::uint64_t source_bytes = 0;
  for (const auto& f : members) source_bytes += f.contents.size();
  std::printf("  code bundle: %zu source files, %s bytes of source\n", members.size(),
              count(static_cast<std::int64_t>(source_bytes)).c_str());
  if (o.code)
    for (const auto& f : members) std::printf("    %-60s %10s\n", f.path.c_str(), count(static_cast<std::int64_t>(f.contents.size())).c_str());
  if (!o.extract_code.empty()) {
    const fs::path dir(o.extract_code);
    if (fs::is_directory(dir) && !fs::is_empty(dir) && !o.force)
      fail(ErrorKind::usage, "--extract-code ", dir.string(), ": the directory is not empty (pass --force to write into it)");
    check_output_dir("--extract-code", dir);
    for (const auto& f : members) {
      const fs::path target = dir / f.path;
      std::error_code ec;
      fs::create_directories(target.parent_path(), ec);
      if (ec) fail(ErrorKind::io, "--extract-code ", target.parent_path().string(), ": cannot create directory: ", ec.message());
      write_file_atomic(target, std::string_view(f.contents));
    }
    std::printf("  extracted %zu files into %s (build them with cmake -S %s -B build)\n", members.size(),
                dir.string().c_str(), (dir / "pgolf").string().c_str());
  }
}

}  // namespace

void register_inspect(CLI::App& app) {
  CLI::App* inspect = app.add_subcommand("inspect", "Look inside shards, tokenizers, configs, checkpoints and artifacts");
  inspect->require_subcommand(1);

  auto so = std::make_shared<ShardOptions>();
  CLI::App* shard = inspect->add_subcommand("shard", "Validate token shards (SPEC 2.1) and summarise them");
  shard->add_option("files", so->files, "Shard files or quoted globs")->required();
  CLI::Option* shard_tok =
      shard->add_option("-t,--tokenizer", so->tokenizer, "Tokenizer: checks ids, counts bytes (SPEC 2.3), decodes")
          ->check(CLI::ExistingFile);
  shard->add_option("--vocab", so->vocab, "Check that every token id is below this vocab size")->check(whole_number(1));
  shard->add_option("--head", so->head, "Token ids to show from the start")->capture_default_str()->check(whole_number(0));
  shard->add_option("--preview", so->preview_chars, "Show this many bytes of the decoded text (needs --tokenizer)")
      ->check(whole_number(0))
      ->needs(shard_tok);
  shard->callback([so] { inspect_shards(*so); });

  auto to = std::make_shared<TokenizerOptions>();
  CLI::App* tokenizer = inspect->add_subcommand(
      "tokenizer", "Show a SentencePiece model's settings, special ids, byte-fallback range and byte tables (SPEC 2.2-2.3)");
  tokenizer->add_option("model", to->model, "SentencePiece .model file")->required()->check(CLI::ExistingFile);
  tokenizer->add_option("--vocab", to->vocab, "Size the byte tables for this model vocab (default: the tokenizer's)")
      ->check(whole_number(1));
  tokenizer->add_flag("--tables", to->tables, "Print the per-id byte tables as CSV instead of the summary");
  tokenizer->callback([to] { inspect_tokenizer(*to); });

  auto co = std::make_shared<ConfigOptions>();
  CLI::App* cfg = inspect->add_subcommand(
      "config", "Print the fully resolved config (defaults: the #549 record) after extends and --set overrides");
  cfg->add_option("config", co->file, "Config JSON (omit for the defaults)")->check(CLI::ExistingFile);
  cfg->add_option("--set", co->sets, "Override a value: PATH=VALUE, e.g. --set model.num_layers=9 (repeatable)")
      ->allow_extra_args(false);  // one value per --set, so a config file may follow it
  cfg->add_flag("--schema", co->schema, "List every knob with its type, default, range and meaning");
  cfg->add_flag("--sources", co->sources, "Show which file or --set supplied each value");
  cfg->callback([co] { inspect_config(*co); });

  auto ko = std::make_shared<CheckpointOptions>();
  CLI::App* ckpt = inspect->add_subcommand("checkpoint", "List the tensors of a safetensors checkpoint (SPEC 5.4)");
  ckpt->add_option("file", ko->file, "A .safetensors file")->required()->check(CLI::ExistingFile);
  ckpt->add_flag("--stats", ko->stats, "Add min / max / mean / rms of every floating-point tensor");
  ckpt->callback([ko] { inspect_checkpoint(*ko); });

  auto ao = std::make_shared<ArtifactOptions>();
  CLI::App* art = inspect->add_subcommand(
      "artifact", "Check an artifact (checksums, sizes against the 16,000,000-byte budget) and list its tensors (SPEC 5.3)");
  art->add_option("file", ao->file, "An artifact written by pgolf pack / pgolf run")->required()->check(CLI::ExistingFile);
  art->add_flag("--code", ao->code, "List the files of the code bundle");
  art->add_option("--extract-code", ao->extract_code, "Unpack the code bundle into this directory");
  art->add_flag("--force", ao->force, "Let --extract-code write into a non-empty directory");
  art->callback([ao] { inspect_artifact(*ao); });
}

}  // namespace pgolf::cli
