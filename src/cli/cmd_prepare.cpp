// pgolf prepare: raw text -> challenge-format token shards.
#include <CLI/CLI.hpp>

#include <climits>
#include <cstdint>
#include <memory>

#include "cli/cli_checks.hpp"
#include "cli/commands.hpp"
#include "common/error.hpp"
#include "data/prepare.hpp"

namespace pgolf::cli {

void register_prepare(CLI::App& app) {
  auto opts = std::make_shared<data::PrepareOptions>();
  auto format = std::make_shared<std::string>("auto");
  auto txt_docs = std::make_shared<std::string>("line");
  auto train_out = std::make_shared<std::string>();

  CLI::App* cmd = app.add_subcommand("prepare", "Tokenize raw text into challenge-format token shards");
  cmd->footer(
      "Input: .jsonl with a \"text\" field (the challenge's docs_selected.jsonl) or .txt, optionally .xz-compressed.\n"
      "Output, as the challenge's exporter: [BOS] + ids per document, no EOS; the first --val-docs documents form the\n"
      "val split, the rest the train split; shards of at most --shard-tokens tokens named PREFIX_{val,train}_NNNNNN.bin\n"
      "(documents cross shard boundaries), plus manifest.json. Shards are written atomically.");
  cmd->add_option("-i,--input", opts->input, "Text to tokenize")->required()->check(CLI::ExistingFile);
  cmd->add_option("-o,--out", opts->out_dir, "Output directory for shards and manifest.json")->required();
  CLI::Option* tokenizer =
      cmd->add_option("-t,--tokenizer", opts->tokenizer, "SentencePiece .model to encode with")->check(CLI::ExistingFile);
  CLI::Option* train = cmd->add_option("--train-tokenizer", opts->training.vocab_size,
                                       "Train a BPE tokenizer of this vocab size on the input first (challenge settings, SPEC 2.2)")
                           ->check(whole_number(261, 65536))
                           ->excludes(tokenizer);
  cmd->add_option("--tokenizer-out", *train_out, "Where the trained .model goes (default OUT/tokenizer_VOCAB.model)")
      ->needs(train);
  cmd->add_option("--tokenizer-train-docs", opts->training.max_docs,
                  "Train the tokenizer on at most this many documents (0 = all)")
      ->check(whole_number(0, INT64_MAX))
      ->needs(train);
  cmd->add_option("--val-docs", opts->val_docs, "Documents in the val split (the challenge uses 50000)")
      ->capture_default_str()
      ->check(whole_number(0, INT64_MAX));
  cmd->add_option("--shard-tokens", opts->shard_tokens, "Maximum tokens per shard")
      ->capture_default_str()
      ->check(whole_number(1));
  cmd->add_option("--max-docs", opts->max_docs, "Stop after this many documents (0 = all)")
      ->capture_default_str()
      ->check(whole_number(0, INT64_MAX));
  cmd->add_option("--format", *format, "Input format")->capture_default_str()->check(CLI::IsMember({"auto", "jsonl", "txt"}));
  cmd->add_option("--txt-docs", *txt_docs,
                  "How .txt splits into documents: each non-empty line, blank-line-separated paragraphs, or the whole file")
      ->capture_default_str()
      ->check(CLI::IsMember({"line", "paragraph", "file"}));
  cmd->add_option("--prefix", opts->prefix, "Shard file name prefix")->capture_default_str();
  cmd->add_option("--threads", opts->threads, "Encoding threads (0 = all cores)")->capture_default_str()->check(whole_number(0));
  cmd->add_flag("--force", opts->force, "Replace shards with the same prefix already in the output directory");

  cmd->callback([opts, format, txt_docs, train_out] {
    data::PrepareOptions o = *opts;
    o.format = *format == "jsonl" ? data::TextFormat::jsonl
               : *format == "txt" ? data::TextFormat::txt
                                  : data::TextFormat::automatic;
    o.txt_documents = *txt_docs == "paragraph" ? data::TxtDocuments::paragraph
                      : *txt_docs == "file"    ? data::TxtDocuments::file
                                               : data::TxtDocuments::line;
    if (o.training.vocab_size > 0) {
      o.training.output = train_out->empty() ? o.out_dir / cat("tokenizer_", o.training.vocab_size, ".model")
                                             : fs::path(*train_out);
    } else if (o.tokenizer.empty()) {
      fail(ErrorKind::usage, "prepare: pass --tokenizer MODEL or --train-tokenizer VOCAB");
    }
    data::prepare(o);
  });
}

}  // namespace pgolf::cli
