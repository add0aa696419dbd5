#include "data/prepare.hpp"

#include <sentencepiece_trainer.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>
#include <unordered_map>

#include <unistd.h>

#include "common/error.hpp"
#include "common/sha256.hpp"
#include "common/json.hpp"
#include "common/progress.hpp"
#include "common/strings.hpp"
#include "common/version.hpp"
#include "data/shard.hpp"
#include "data/tokenizer.hpp"

namespace pgolf::data {

namespace {

constexpr std::size_t kEncodeBatchDocs = 512;

int resolve_threads(int threads) {
  if (threads > 0) return threads;
  return std::max(1u, std::thread::hardware_concurrency());
}

// Feeds documents to the SentencePiece trainer as the official exporter does: NUL bytes
// become spaces, surrounding whitespace is stripped and empty documents are skipped.
class TrainingSentences final : public sentencepiece::SentenceIterator {
 public:
  TrainingSentences(const fs::path& input, TextFormat format, TxtDocuments txt_documents, std::int64_t max_docs)
      : reader_(input, format, txt_documents), max_docs_(max_docs) {
    advance();
  }
  bool done() const override { return done_; }
  void Next() override { advance(); }
  const std::string& value() const override { return value_; }
  sentencepiece::util::Status status() const override { return {}; }
  std::int64_t docs_read() const { return docs_; }

 private:
  void advance() {
    std::string text;
    while (true) {
      if ((max_docs_ > 0 && docs_ >= max_docs_) || !reader_.next(text)) {
        done_ = true;
        return;
      }
      ++docs_;
      std::replace(text.begin(), text.end(), '\0', ' ');
      std::string_view t = trim(text);
      if (!t.empty()) {
        value_.assign(t);
        return;
      }
    }
  }
  DocumentReader reader_;
  std::int64_t max_docs_;
  std::int64_t docs_ = 0;
  std::string value_;
  bool done_ = false;
};

// Accumulates one split's tokens and writes full shards as it goes.
class ShardSink {
 public:
  ShardSink(fs::path dir, std::string prefix, std::string split, std::int64_t shard_tokens, SplitStats& stats)
      : dir_(std::move(dir)), prefix_(std::move(prefix)), split_(std::move(split)), shard_tokens_(shard_tokens),
        stats_(stats) {
    buffer_.reserve(static_cast<std::size_t>(std::min<std::int64_t>(shard_tokens_, 1 << 26)));
  }

  void add_document(std::span<const int> ids, int bos) {
    ++stats_.docs;
    push(bos);
    for (int id : ids) push(id);
  }

  void flush() {
    if (buffer_.empty()) return;
    char index[16];
    std::snprintf(index, sizeof index, "%06d", index_);
    fs::path path = dir_ / cat(prefix_, "_", split_, "_", index, ".bin");
    write_shard(path, buffer_);
    stats_.files.push_back(path.string());
    stats_.tokens += static_cast<std::int64_t>(buffer_.size());
    buffer_.clear();
    ++index_;
  }

 private:
  void push(int id) {
    buffer_.push_back(static_cast<std::uint16_t>(id));
    if (static_cast<std::int64_t>(buffer_.size()) == shard_tokens_) flush();
  }
  fs::path dir_;
  std::string prefix_;
  std::string split_;
  std::int64_t shard_tokens_;
  SplitStats& stats_;
  std::vector<std::uint16_t> buffer_;
  int index_ = 0;
};

void encode_batch(const Tokenizer& tok, const std::vector<std::string>& docs, std::vector<std::vector<int>>& out,
                  int threads) {
  out.assign(docs.size(), {});
  const int n = std::min<int>(threads, static_cast<int>(docs.size()));
  if (n <= 1) {
    for (std::size_t i = 0; i < docs.size(); ++i) out[i] = tok.encode(docs[i]);
    return;
  }
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(n));
  for (int t = 0; t < n; ++t)
    pool.emplace_back([&, t] {
      try {
        for (std::size_t i = static_cast<std::size_t>(t); i < docs.size(); i += static_cast<std::size_t>(n))
          out[i] = tok.encode(docs[i]);
      } catch (...) {
        errors[static_cast<std::size_t>(t)] = std::current_exception();
      }
    });
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

std::vector<fs::path> existing_outputs(const PrepareOptions& o) {
  std::vector<fs::path> existing;
  for (const char* split : {"val", "train"}) {
    auto found = glob_sorted((o.out_dir / cat(o.prefix, "_", split, "_*.bin")).string());
    existing.insert(existing.end(), found.begin(), found.end());
  }
  return existing;
}

void refuse_existing_unless_forced(const PrepareOptions& o) {
  auto existing = existing_outputs(o);
  if (!existing.empty() && !o.force)
    fail(ErrorKind::usage, o.out_dir.string(), ": already holds ", existing.size(), " shard(s) named ", o.prefix,
         "_{val,train}_*.bin (e.g. ", existing.front().string(), "); pass --force to replace them");
}

// New shards are written to a staging directory inside the output directory and moved into
// place only when everything succeeded, so a failed or interrupted run leaves the previous
// output untouched (and no partial shards that a later run would mistake for a split).
class Staging {
 public:
  explicit Staging(const fs::path& out_dir) : dir_(out_dir / cat(".prepare-staging-", ::getpid())) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
    fs::create_directories(dir_, ec);
    if (ec) fail(ErrorKind::io, dir_.string(), ": cannot create directory: ", ec.message());
  }
  ~Staging() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;
  const fs::path& dir() const { return dir_; }

 private:
  fs::path dir_;
};

void remove_file(const fs::path& f) {
  std::error_code ec;
  fs::remove(f, ec);
  if (ec) fail(ErrorKind::io, f.string(), ": cannot remove: ", ec.message());
}

void rename_file(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::rename(from, to, ec);
  if (ec) fail(ErrorKind::io, to.string(), ": cannot move ", from.string(), " into place: ", ec.message());
}

// Replaces the previous output (shards with this prefix and the manifest) by the staged shards.
void publish(const PrepareOptions& o, const fs::path& staging, SplitStats& val, SplitStats& train) {
  for (const auto& f : existing_outputs(o)) remove_file(f);
  remove_file(o.out_dir / "manifest.json");
  for (SplitStats* split : {&val, &train})
    for (auto& f : split->files) {
      fs::path final_path = o.out_dir / fs::path(f).filename();
      rename_file(staging / fs::path(f).filename(), final_path);
      f = final_path.string();
    }
}

json split_json(const SplitStats& s) {
  return {{"docs", s.docs}, {"tokens", s.tokens}, {"files", s.files}};
}

}  // namespace

void train_tokenizer(const fs::path& input, TextFormat format, TxtDocuments txt_documents,
                     const TokenizerTraining& training, int threads) {
  if (training.vocab_size < 261)
    fail(ErrorKind::usage, "--train-tokenizer ", training.vocab_size,
         ": vocab size must exceed 260 (4 special ids + 256 byte-fallback pieces)");
  if (training.vocab_size > 65536)
    fail(ErrorKind::usage, "--train-tokenizer ", training.vocab_size, ": shards store ids as uint16 (<= 65536)");
  fs::path out = training.output;
  if (out.extension() != ".model") fail(ErrorKind::usage, out.string(), ": the tokenizer output must end in .model");
  std::error_code ec;
  fs::create_directories(out.parent_path().empty() ? fs::path(".") : out.parent_path(), ec);
  if (ec) fail(ErrorKind::io, out.parent_path().string(), ": cannot create directory: ", ec.message());
  fs::path tmp_prefix = out;
  tmp_prefix.replace_extension(cat(".tmp", ::getpid()));

  using C = ChallengeTokenizerSettings;
  auto flag = [](bool b) { return std::string(b ? "true" : "false"); };
  std::unordered_map<std::string, std::string> args = {
      {"model_prefix", tmp_prefix.string()},
      {"model_type", model_type_name(C::model_type)},
      {"vocab_size", std::to_string(training.vocab_size)},
      {"character_coverage", C::character_coverage},
      {"byte_fallback", flag(C::byte_fallback)},
      {"split_digits", flag(C::split_digits)},
      {"normalization_rule_name", C::normalizer},
      {"add_dummy_prefix", flag(C::add_dummy_prefix)},
      {"pad_id", std::to_string(C::pad_id)},
      {"bos_id", std::to_string(C::bos_id)},
      {"eos_id", std::to_string(C::eos_id)},
      {"unk_id", std::to_string(C::unk_id)},
      {"hard_vocab_limit", "false"},
      {"num_threads", std::to_string(resolve_threads(threads))},
      {"minloglevel", "1"},
  };
  TrainingSentences sentences(input, format, txt_documents, training.max_docs);
  std::fprintf(stderr, "prepare: training a %lld-piece BPE tokenizer on %s\n",
               static_cast<long long>(training.vocab_size), input.string().c_str());
  auto status = sentencepiece::SentencePieceTrainer::Train(args, &sentences);
  fs::path tmp_model = tmp_prefix.string() + ".model", tmp_vocab = tmp_prefix.string() + ".vocab";
  if (!status.ok()) {
    fs::remove(tmp_model, ec);
    fs::remove(tmp_vocab, ec);
    fail(ErrorKind::data, input.string(), ": tokenizer training failed: ", status.ToString());
  }
  fs::path vocab = out;
  vocab.replace_extension(".vocab");
  try {
    rename_file(tmp_model, out);
    rename_file(tmp_vocab, vocab);
  } catch (const Error&) {
    fs::remove(tmp_model, ec);
    fs::remove(tmp_vocab, ec);
    throw;
  }
  std::fprintf(stderr, "prepare: tokenizer written to %s (%lld documents)\n", out.string().c_str(),
               static_cast<long long>(sentences.docs_read()));
}

PrepareResult prepare(const PrepareOptions& o) {
  if (o.shard_tokens < 1) fail(ErrorKind::usage, "--shard-tokens ", o.shard_tokens, ": must be >= 1");
  if (o.val_docs < 0) fail(ErrorKind::usage, "--val-docs ", o.val_docs, ": must be >= 0");
  const auto start = std::chrono::steady_clock::now();
  const int threads = resolve_threads(o.threads);
  if (o.shard_tokens > INT32_MAX) fail(ErrorKind::usage, "--shard-tokens ", o.shard_tokens, ": the shard format holds at most ", INT32_MAX, " tokens");
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) fail(ErrorKind::io, o.out_dir.string(), ": cannot create directory: ", ec.message());
  refuse_existing_unless_forced(o);
  Staging staging(o.out_dir);

  PrepareResult result;
  result.tokenizer = o.tokenizer;
  if (o.training.vocab_size > 0) {
    train_tokenizer(o.input, o.format, o.txt_documents, o.training, threads);
    result.tokenizer = o.training.output;
  }
  if (result.tokenizer.empty()) fail(ErrorKind::usage, "prepare: pass --tokenizer MODEL or --train-tokenizer VOCAB");
  Tokenizer tok(result.tokenizer);
  if (tok.vocab_size() > 65536)
    fail(ErrorKind::data, result.tokenizer.string(), ": vocab size ", tok.vocab_size(), " does not fit uint16 shards");
  if (tok.bos_id() < 0) fail(ErrorKind::data, result.tokenizer.string(), ": the tokenizer has no BOS id");

  DocumentReader reader(o.input, o.format, o.txt_documents);
  ShardSink val(staging.dir(), o.prefix, "val", o.shard_tokens, result.val);
  ShardSink train(staging.dir(), o.prefix, "train", o.shard_tokens, result.train);
  Progress progress("prepare");
  std::int64_t docs = 0, tokens = 0;
  std::vector<std::string> batch;
  std::vector<std::vector<int>> encoded;
  bool more = true;
  while (more) {
    batch.clear();
    std::string text;
    while (batch.size() < kEncodeBatchDocs && (o.max_docs <= 0 || docs + static_cast<std::int64_t>(batch.size()) < o.max_docs)) {
      if (!reader.next(text)) {
        more = false;
        break;
      }
      batch.push_back(std::move(text));
    }
    if (batch.empty()) break;
    if (o.max_docs > 0 && docs + static_cast<std::int64_t>(batch.size()) >= o.max_docs) more = false;
    encode_batch(tok, batch, encoded, threads);
    for (const auto& ids : encoded) {
      if (docs < o.val_docs) {
        val.add_document(ids, tok.bos_id());
      } else {
        if (docs == o.val_docs) val.flush();
        train.add_document(ids, tok.bos_id());
      }
      ++docs;
      tokens += static_cast<std::int64_t>(ids.size()) + 1;
    }
    double s = progress.elapsed_s();
    progress.update(cat(with_commas(static_cast<std::uint64_t>(docs)), " docs, ", with_commas(static_cast<std::uint64_t>(tokens)),
                        " tokens, ", fixed(static_cast<double>(docs) / std::max(s, 1e-9), 0), " docs/s, ",
                        fixed(100.0 * static_cast<double>(reader.compressed_bytes_read()) /
                                  static_cast<double>(std::max<std::uint64_t>(reader.file_size(), 1)), 1),
                        "% of input"));
  }
  val.flush();
  train.flush();
  if (docs == 0) fail(ErrorKind::data, o.input.string(), ": no documents found");
  publish(o, staging.dir(), result.val, result.train);
  if (docs < o.val_docs)
    std::fprintf(stderr, "prepare: warning: only %lld documents, all in the val split (--val-docs %lld)\n",
                 static_cast<long long>(docs), static_cast<long long>(o.val_docs));
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  progress.finish(cat(with_commas(static_cast<std::uint64_t>(docs)), " docs -> val ", result.val.docs, " docs / ",
                      with_commas(static_cast<std::uint64_t>(result.val.tokens)), " tokens in ", result.val.files.size(),
                      " shard(s), train ", result.train.docs, " docs / ",
                      with_commas(static_cast<std::uint64_t>(result.train.tokens)), " tokens in ",
                      result.train.files.size(), " shard(s), ", fixed(result.seconds, 1), " s"));

  json manifest = {
      {"pgolf", {{"version", build_info().version}, {"git", build_info().git_hash}}},
      {"input", o.input.string()},
      {"tokenizer", result.tokenizer.string()},
      // The content hash ties the shards to their tokenizer wherever the files move
      // (data/manifest.hpp checks it before training or evaluation).
      {"tokenizer_sha256", sha256_file_hex(result.tokenizer)},
      {"vocab_size", tok.vocab_size()},
      {"bos_id", tok.bos_id()},
      {"append_eos", false},
      {"val_docs", o.val_docs},
      {"shard_tokens", o.shard_tokens},
      {"max_docs", o.max_docs},
      {"splits", {{"val", split_json(result.val)}, {"train", split_json(result.train)}}},
  };
  write_file_atomic(o.out_dir / "manifest.json", dump_json(manifest, 2) + "\n");
  return result;
}

}  // namespace pgolf::data
